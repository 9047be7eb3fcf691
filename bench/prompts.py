"""The prompts the engine benchmarks generate from (``engine_overhead.py``,
``llama_build.py``): chat requests of the kinds a coding model answers. The first four are
the sequential rounds' prompts; all eight are the parallel check's (eight different prompts:
a prompt identical to the one before it would be served from the prefix cache but for its
last token, whose logits then come from a batch of one instead of the whole prompt, and
greedy decoding may tip another way)."""

PROMPTS = [
    "Write a Python function that checks whether a string is a palindrome, with a docstring.",
    "Explain the difference between a process and a thread in about 150 words.",
    "Write a SQL query returning the ten customers with the highest total order value.",
    "Implement binary search in JavaScript and explain its time complexity.",
    "Write a Go HTTP handler that returns the server's current time as JSON.",
    "Explain what a database index is and when it slows writes down.",
    "Write a Bash script that counts the lines of every .py file under a folder.",
    "Describe the CAP theorem with one example of each trade-off.",
]
