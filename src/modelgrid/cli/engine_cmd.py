"""``modelgrid engine``: serve ONE model replica over the OpenAI chat API (``modelgrid.worker``).

A region runs replicas on other machines this way; gateways reach them as upstreams
(``MODELGRID_UPSTREAMS__0__BASE_URL=http://host:port/v1``). No database, no keys: an
optional shared ``--token`` is all the authentication there is, so bind to a private address.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import typer

from modelgrid.cli.common import err_console, settings


class EngineKind(StrEnum):
    llamacpp = "llamacpp"
    embedding = "embedding"
    fake = "fake"  # the scripted engine: for tests of process supervision only (not in --help)


def engine(
    model: str = typer.Option(..., "--model", help="Model id: a packaged model."),
    port: int = typer.Option(8001, "--port", help="Port."),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address."),
    kind: EngineKind = typer.Option(
        EngineKind.llamacpp,
        "--engine",
        help="llamacpp (a chat model) or embedding.",
        metavar="KIND",
        show_choices=False,  # "fake" is accepted for tests, never offered
    ),
    region: str = typer.Option("local", "--region", help="Region label (logs, /health/ready)."),
    token: str = typer.Option(
        None,
        "--token",
        envvar="MODELGRID_WORKER_TOKEN",
        show_envvar=True,
        help="Bearer token callers must send (default: none required).",
    ),
    fake_token_delay_s: float = typer.Option(
        0.0,
        "--fake-token-delay-s",
        hidden=True,
        help="For tests only (with --engine fake): the scripted engine's delay per token, s.",
    ),
    log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level."),
    parent_pid: int = typer.Option(
        None, "--parent-pid", hidden=True, help="Exit when this process (the gateway) dies."
    ),
) -> None:
    """Serve one model replica (OpenAI chat API, /health, /metrics) for a gateway to use."""
    import uvicorn

    from modelgrid.worker import create_worker_app

    s = settings()
    e = s.engine
    if kind is EngineKind.llamacpp:
        from modelgrid.cli.models_cmd import prepare_or_exit
        from modelgrid.engines.catalog import CATALOG

        if model not in CATALOG:
            err_console.print(f"[red]unknown packaged model {model!r}; see `modelgrid models`[/]")
            raise typer.Exit(2)
        prepare_or_exit([model], s.models_dir)

    if kind is EngineKind.embedding:
        from modelgrid.engines.embedding import EMBEDDING_CATALOG, installed

        if model not in EMBEDDING_CATALOG or not installed(model):
            err_console.print(f"[red]embedding model {model!r} is not installed[/]")
            raise typer.Exit(2)

    def build() -> Any:
        from modelgrid.engines.registry import build_engine

        return build_engine(
            kind.value, model, s.models_dir, e, fake_token_delay_s=fake_token_delay_s
        )

    app = create_worker_app(
        build,
        region=region,
        token=token,
        parent_pid=parent_pid,
        observability=s.observability,
    )
    err_console.print(
        f"engine worker: {model} ({kind.value}), region {region}, "
        f"on http://{host}:{port}/v1{' (token required)' if token else ''}"
    )
    from modelgrid.api.logs import log_config

    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=log_config(),
        timeout_graceful_shutdown=10,
    )
