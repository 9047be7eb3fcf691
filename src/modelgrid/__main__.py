from modelgrid.cli import main

main()
