"""``modelgrid models`` (list the packaged models) and ``modelgrid models prepare``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from modelgrid.cli.common import console, err_console, settings

app = typer.Typer(help="Packaged models.", invoke_without_command=True)


@app.callback()
def models(ctx: typer.Context) -> None:
    """List the packaged models — chat models (llama.cpp) and embedding models — and
    whether each is installed and prepared (an embedding model is served from its package,
    with nothing to prepare)."""
    if ctx.invoked_subcommand:
        return
    from modelgrid.engines import embedding
    from modelgrid.engines.artifacts import part_paths
    from modelgrid.engines.catalog import CATALOG

    s = settings()
    table = Table("model", "kind", "installed", "prepared file", "pip extra")
    for spec in CATALOG.values():
        try:
            part_paths(spec)
            installed = "yes"
        except Exception:
            installed = "no"
        path = s.models_dir / spec.filename
        table.add_row(
            spec.model_id, "chat", installed, str(path) if path.exists() else "-", spec.extra
        )
    for emb in embedding.EMBEDDING_CATALOG.values():
        found = "yes" if embedding.installed(emb.model_id) else "no"
        table.add_row(emb.model_id, "embeddings", found, "- (its package)", emb.extra)
    console.print(table)


def prepare_with_progress(model_id: str, models_dir: Path) -> Path:
    """Join and verify one packaged model, showing a progress bar on stderr."""
    from modelgrid.engines.artifacts import prepare
    from modelgrid.engines.catalog import CATALOG

    spec = CATALOG[model_id]
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task(f"joining {model_id}", total=spec.size_bytes)

        def cb(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        path = prepare(spec, models_dir, cb)
    err_console.print(f"model {model_id}: {path} (sha256 verified)")
    return path


def prepare_or_exit(model_ids: list[str], models_dir: Path) -> None:
    """``prepare_with_progress`` for each model; a ``ModelgridError`` (slices missing, a hash
    mismatch) is printed in one line and ends the command with status 1."""
    from rich.markup import escape

    from modelgrid.core.errors import ModelgridError
    from modelgrid.engines.catalog import CATALOG

    unknown = [m for m in model_ids if m not in CATALOG]
    if unknown:
        err_console.print(
            f"[red]unknown model {escape(unknown[0])!r}: the packaged models are "
            f"{escape(', '.join(sorted(CATALOG)))}[/]",
            highlight=False,
        )
        raise typer.Exit(1)
    try:
        for model_id in model_ids:
            prepare_with_progress(model_id, models_dir)
    except ModelgridError as exc:
        err_console.print(f"[red]{escape(exc.message)}[/]", highlight=False)
        raise typer.Exit(1) from None


@app.command("prepare")
def prepare_cmd(
    model_id: list[str] = typer.Argument(None, help="Model ids (default: configured)."),
) -> None:
    """Join the model's slices into the data directory and verify the SHA-256."""
    s = settings()
    prepare_or_exit(list(model_id or s.engine.models), s.models_dir)


@app.command("check")
def check_cmd(
    model_id: str = typer.Argument(None, help="Model id (default: the first configured)."),
) -> None:
    """Generate one token in a child process: does the installed llama.cpp build run here?

    Exit status 0 when it does; 3 when the child died by a signal (the build does not fit
    this machine: ``scripts/bootstrap.sh`` then rebuilds with the safest instruction set);
    1 for any other failure.
    """
    from modelgrid.engines.check import cpu_library, run_check

    s = settings()
    model = model_id or (s.engine.models[0] if s.engine.models else None)
    if model is None:
        err_console.print("[red]no embedded model is configured (MODELGRID_ENGINE__MODELS)[/]")
        raise typer.Exit(1)
    from modelgrid.engines.catalog import CATALOG

    if model not in CATALOG:
        known = ", ".join(sorted(CATALOG))
        err_console.print(
            f"[red]{model!r} is not a packaged llama.cpp model (known: {known})[/]",
            highlight=False,
        )
        raise typer.Exit(2)
    prepare_or_exit([model], s.models_dir)
    result = run_check(model, s.models_dir)
    if result.ok:
        err_console.print(f"llama.cpp check: {model} generated a token")
        return
    if result.returncode < 0:
        line = (
            f"llama.cpp check failed: a one-token generation of {model} died with "
            f"{result.detail}, in {cpu_library()}; fix: python scripts/llama_build.py ensure "
            "--level avx2 (the safest build; scripts/bootstrap.sh does it)"
        )
    else:
        line = f"llama.cpp check failed for {model}: {result.detail}"
    err_console.print(f"[red]{line}[/]", highlight=False)
    raise typer.Exit(3 if result.returncode < 0 else 1)
