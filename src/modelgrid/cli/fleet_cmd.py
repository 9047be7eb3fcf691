"""``modelgrid fleet``: model replicas on a Ray Serve cluster (``modelgrid.fleet``).

``up`` deploys each model as its own Serve application (route ``/<model>``) on a running Ray
cluster, ``status`` lists them, ``down`` removes them, ``config`` writes the equivalent Serve
config file (for ``serve deploy``). Ray is imported only here, lazily, and only with the
``fleet`` extra installed: ``modelgrid serve`` never needs it.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape

from modelgrid.cli.common import console, err_console

app = typer.Typer(help="Model replicas on a Ray Serve cluster (see docs/fleet.md).")

_ADDRESS = typer.Option(
    "auto", "--address", help="The Ray cluster (auto: the one started on this machine)."
)


def _models(models: list[str], **fields: Any) -> list[Any]:
    from pydantic import ValidationError

    from modelgrid.core.validation import first_problem
    from modelgrid.fleet.spec import FleetModel

    try:
        return [FleetModel(model=m, **fields) for m in models]
    except ValidationError as exc:
        where, why = first_problem(exc)
        err_console.print(f"[red]{escape(where or 'model')}: {escape(why)}[/]")
        raise typer.Exit(2) from None


def _need_ray() -> None:
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        err_console.print(
            "[red]"
            + escape("Ray is not installed: pip install 'modelgrid[fleet]' (ray[serve]==2.60.0)")
            + "[/]"
        )
        raise typer.Exit(2)


_MODELS = typer.Argument(..., help="Packaged model ids (modelgrid models).")
_MIN = typer.Option(1, "--min-replicas", help="Replicas kept at the least load.")
_MAX = typer.Option(1, "--max-replicas", help="Replicas at the most load (autoscaled).")
_SLOTS = typer.Option(
    None, "--slots", help="Requests a replica runs at once (default: the engine's; llama.cpp 1)."
)
_CPUS = typer.Option(1.0, "--num-cpus", help="CPUs Ray reserves per replica.")
_RESOURCE = typer.Option(
    "modelgrid_engine",
    "--resource",
    help="Custom resource a replica needs (nodes started with it run replicas); '' for none.",
)
_THREADS = typer.Option(0, "--threads", help="llama.cpp threads per replica (0: the node's).")
_AFFINITY = typer.Option(
    True, "--prefix-affinity/--no-prefix-affinity", help="Route by the gateway's prefix header."
)
_PORT = typer.Option(8000, "--port", help="Port of Serve's HTTP proxy (head node).")
_HOST = typer.Option("0.0.0.0", "--host", help="Bind address of Serve's HTTP proxy.")


@app.command("up")
def up(
    models: list[str] = _MODELS,
    min_replicas: int = _MIN,
    max_replicas: int = _MAX,
    slots: int = _SLOTS,
    num_cpus: float = _CPUS,
    resource: str = _RESOURCE,
    threads: int = _THREADS,
    prefix_affinity: bool = _AFFINITY,
    address: str = _ADDRESS,
    host: str = _HOST,
    port: int = _PORT,
    upscale_delay_s: float = typer.Option(
        2.0, "--upscale-delay-s", help="Load above target this long before a replica is added."
    ),
    downscale_delay_s: float = typer.Option(
        30.0, "--downscale-delay-s", help="Load below target this long before one is removed."
    ),
    look_back_period_s: float = typer.Option(
        10.0, "--look-back-period-s", help="Window the ongoing requests are averaged over."
    ),
    engine: str = typer.Option("llamacpp", "--engine", hidden=True, help="fake: tests only."),
    fake_token_delay_s: float = typer.Option(0.0, "--fake-token-delay-s", hidden=True),
    fake_fail_after_tokens: int = typer.Option(None, "--fake-fail-after-tokens", hidden=True),
) -> None:
    """Deploy each MODEL as a Serve application on the Ray cluster at --address."""
    specs = _models(
        models,
        engine=engine,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        slots=slots,
        num_cpus=num_cpus,
        resource=resource or None,
        n_threads=threads,
        prefix_affinity=prefix_affinity,
        fake_token_delay_s=fake_token_delay_s,
        fake_fail_after_tokens=fake_fail_after_tokens,
        upscale_delay_s=upscale_delay_s,
        downscale_delay_s=downscale_delay_s,
        look_back_period_s=look_back_period_s,
    )
    _need_ray()
    from modelgrid.fleet import cluster
    from modelgrid.fleet.spec import SESSION_HEADER, upstream_url

    try:
        cluster.up(specs, address=address, host=host, port=port)
    except (ConnectionError, RuntimeError) as exc:
        err_console.print(f"[red]fleet up failed: {exc}[/]")
        raise typer.Exit(1) from None
    proxy = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"
    for m in specs:
        console.print(f"{m.model}: {upstream_url(proxy, m.model)}")
    console.print(
        "Point a gateway at it (the head node's address for 127.0.0.1):\n"
        f"  modelgrid deployments put {specs[0].model} REGION "
        f"--upstream {upstream_url(proxy, specs[0].model)} --attempts 3 "
        f"--prefix-header {SESSION_HEADER}"
    )


@app.command("status")
def status(address: str = _ADDRESS) -> None:
    """The Serve applications on the cluster and their replicas."""
    _need_ray()
    from rich.table import Table

    from modelgrid.fleet import cluster

    try:
        apps = cluster.status(address)
    except ConnectionError as exc:
        err_console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    table = Table("application", "status", "replicas", "message")
    for a in apps:
        counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(a.replicas.items()))
        table.add_row(a.name, a.status, counts, a.message)
    console.print(table)


@app.command("down")
def down(
    models: list[str] = typer.Argument(None, help="Applications to delete (none: all of Serve)."),
    address: str = _ADDRESS,
) -> None:
    """Delete the named applications, or shut Serve down (the Ray cluster stays)."""
    _need_ray()
    from modelgrid.fleet import cluster

    try:
        cluster.down(list(models or ()), address=address)
    except ConnectionError as exc:
        err_console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    console.print("removed " + (", ".join(models) if models else "every Serve application"))


@app.command("config")
def config(
    models: list[str] = _MODELS,
    min_replicas: int = _MIN,
    max_replicas: int = _MAX,
    slots: int = _SLOTS,
    num_cpus: float = _CPUS,
    resource: str = _RESOURCE,
    threads: int = _THREADS,
    prefix_affinity: bool = _AFFINITY,
    host: str = _HOST,
    port: int = _PORT,
) -> None:
    """Print the Serve config file (YAML) that deploys each MODEL (`serve deploy FILE`)."""
    import json

    from modelgrid.fleet.spec import serve_config

    specs = _models(
        models,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        slots=slots,
        num_cpus=num_cpus,
        resource=resource or None,
        n_threads=threads,
        prefix_affinity=prefix_affinity,
    )
    doc = serve_config(specs, host=host, port=port)
    try:
        import yaml  # type: ignore[import-untyped]  # comes with Ray (the fleet extra)
    except ImportError:  # JSON is YAML too
        typer.echo(json.dumps(doc, indent=2))
        return
    typer.echo(yaml.safe_dump(doc, sort_keys=False), nl=False)


__all__ = ["app"]
