"""``modelgrid serve``: migrate, create the first keys, prepare the model, serve."""

from __future__ import annotations

import os
from typing import Any

import typer

from modelgrid.cli.common import console, control_run, err_console, sealer_or_exit, settings

EXAMPLE = """\
from openai import OpenAI

client = OpenAI(base_url="{base_url}", api_key="{key}")
reply = client.chat.completions.create(
    model="{model}",
    messages=[{{"role": "user", "content": "What is the capital of France?"}}],
)
print(reply.choices[0].message.content)"""


def serve(
    host: str = typer.Option(None, help="Bind address (default from settings: 127.0.0.1)."),
    port: int = typer.Option(None, min=1, max=65535, help="Port (default from settings: 8000)."),
    workers: int = typer.Option(
        None,
        min=1,
        help="Gateway processes on the port (default from settings: 1). Above 1, the models "
        "must be upstreams (MODELGRID_ENGINE__MODELS=[]): see docs/gateways.md.",
    ),
) -> None:
    """Run the API server with the embedded model(s)."""
    import uvicorn

    from modelgrid.api.logs import log_config
    from modelgrid.app import create_app
    from modelgrid.cli.models_cmd import prepare_or_exit
    from modelgrid.cli.topology_cmd import topology_or_exit
    from modelgrid.storage import migrate

    s = settings()
    if host:
        s.server.host = host
    if port:
        s.server.port = port
    if workers:
        s.server.workers = workers
    if s.server.workers > 1:
        _refuse_embedded_with_workers(s)
    topology_or_exit(s)  # a bad topology file: one line, before anything starts
    sealer_or_exit(s)  # a bad secret key too; the key file is made before any worker starts
    err_console.print(f"database: {s.masked()['database']['url']}")
    migrate.upgrade(s.database_url)
    if s.bootstrap_keys:
        _bootstrap(s)
    prepare_or_exit(s.engine.models, s.models_dir)
    err_console.print(f"serving on http://{s.server.host}:{s.server.port} (Ctrl-C to stop)")
    err_console.print(
        f"web console: http://{s.server.host}:{s.server.port}/console (sign in with a key)"
    )
    options: dict[str, Any] = {
        "host": s.server.host,
        "port": s.server.port,
        "log_level": s.server.log_level,
        "log_config": log_config(),
        "timeout_graceful_shutdown": 10,
    }
    if s.server.workers == 1:
        uvicorn.run(create_app(s), **options)
        return
    # Each worker is a fresh process that builds its own gateway from the environment:
    # the command line's choices go there too.
    os.environ["MODELGRID_SERVER__WORKERS"] = str(s.server.workers)
    os.environ["MODELGRID_SERVER__HOST"] = s.server.host
    os.environ["MODELGRID_SERVER__PORT"] = str(s.server.port)
    err_console.print(f"{s.server.workers} workers")
    uvicorn.run(
        "modelgrid.app:app_from_environment", factory=True, workers=s.server.workers, **options
    )


def _refuse_embedded_with_workers(s: Any) -> None:
    """Several workers and an embedded model: each worker would start its own engine process
    per model (the model's memory and cores N times over, and N engines that know nothing of
    each other's load). One ``modelgrid engine`` per model, reached as an upstream, is the
    shape that shares it; say so and stop (status 2)."""
    embedded = [*s.engine.models, *s.engine.embedding_models]
    if not embedded:
        return
    err_console.print(
        f"[red]--workers {s.server.workers} serves upstream models only, and these are "
        f"embedded: {', '.join(embedded)}. Each worker would load its own copy. Run each as "
        "`modelgrid engine --model <id> --port <p>`, declare it an upstream "
        "(MODELGRID_UPSTREAMS or the topology), and set MODELGRID_ENGINE__MODELS=[] and "
        "MODELGRID_ENGINE__EMBEDDING_MODELS=[] (docs/gateways.md).[/]",
        highlight=False,
    )
    raise typer.Exit(2)


def _first_model(s: Any) -> str:
    """The model for the printed example: the first embedded one, else the first upstream's."""
    names = [*s.engine.models, *(u.model for u in s.all_upstreams())]
    return names[0] if names else "<model>"


def _bootstrap(s: Any) -> None:
    created = control_run(lambda c: c.keys.first_keys())
    if created is None:  # keys were shown at the first start, once; say how to get another
        err_console.print(
            "keys: this database has them already (shown once, at its first start); a new "
            "one: `modelgrid keys create --workspace default`, an admin one: `modelgrid keys "
            "create --admin --workspace admin` (with the same settings as this server: "
            f"MODELGRID_DATA_DIR={s.data_dir})",
            highlight=False,
        )
        return
    admin, first = created
    base_url = f"http://{s.server.host}:{s.server.port}/v1"
    console.rule("[bold]First start: your keys (shown once, only their hashes are stored)")
    print(f"admin key : {admin.key}")
    print(f"API key   : {first.key}", flush=True)
    console.rule("[bold]Try it with the openai SDK")
    console.print(
        EXAMPLE.format(base_url=base_url, key=first.key, model=_first_model(s)),
        markup=False,
        highlight=False,
    )
    console.rule()
