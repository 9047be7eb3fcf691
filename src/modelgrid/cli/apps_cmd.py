"""``modelgrid apps create|list|show|set|delete``: a workspace's apps (assistants), audited as
``cli:<os user>``, through the control plane as ``/v1/apps`` (``docs/applications.md``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer
from rich.table import Table

from modelgrid.cli.common import actor, build, console, control_run, print_json, split_list
from modelgrid.cli.limit_options import JSON

app = typer.Typer(
    help="Apps (assistants): model, instructions, knowledge bases.", no_args_is_help=True
)
WORKSPACE = typer.Option(..., "--workspace", help="The workspace (its id or name).")
INSTRUCTIONS = typer.Option(None, "--instructions", help="The system prompt.")
KNOWLEDGE = typer.Option(
    None, "--knowledge-bases", help="Comma-separated knowledge base ids (DashScope's pipeline_ids)."
)
TOP_K = typer.Option(None, "--top-k", help="Chunks retrieved per answer (1..20, default 5).")
MODE = typer.Option(None, "--mode", help="Retrieval: hybrid (default), dense or lexical.")
MAX_TOKENS = typer.Option(None, "--max-tokens", help="Default answer length, in tokens.")
QUERY_REWRITE = typer.Option(
    None,
    "--query-rewrite",
    help="Retrieval query: concat (default: earlier user turns + the new one) or model.",
)
RERANK = typer.Option(
    None,
    "--rerank/--no-rerank",
    help="Re-rank the retrieved chunks by the app's model (default off: one model call per "
    "chunk, slower and no better on the packaged 0.5B model, docs/applications.md).",
)
MEMORY_EXTRACTION = typer.Option(
    None, "--memory-extraction", help="Memory facts taken by rules (default) or by the model."
)
TOOLS_FILE = typer.Option(
    None,
    "--tools-file",
    help="A JSON file holding the app's tools (plugins): an array of tool objects "
    "(docs/applications.md, 'Tools (plugins)'); it replaces the app's whole list.",
)
TOOL_CHOICE = typer.Option(None, "--tool-choice", help="auto (default) or required.")
MAX_TOOL_ROUNDS = typer.Option(
    None, "--max-tool-rounds", help="Rounds of plugin calls per answer (1..8, default 4)."
)
T = TypeVar("T")


def _tools(path: str | None) -> list[Any] | None:
    """The tools in the JSON file at ``path`` (``None``: no file given); a file that cannot be
    read or is no JSON array of objects exits with status 2."""
    import json
    from pathlib import Path

    from rich.markup import escape

    from modelgrid.cli.common import err_console

    if path is None:
        return None
    try:
        tools = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        err_console.print(f"[red]cannot read the tools file {escape(path)}: {escape(str(exc))}[/]")
        raise typer.Exit(2) from None
    if not isinstance(tools, list):
        err_console.print(f"[red]the tools file {escape(path)} must hold a JSON array of tools[/]")
        raise typer.Exit(2)
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            err_console.print(
                f"[red]the tools file {escape(path)}: tools[{i}] must be a JSON object "
                f"(a tool), not {escape(json.dumps(tool)[:40])}[/]"
            )
            raise typer.Exit(2)
    return tools


def _run(workspace: str, fn: Callable[[Any, str], Awaitable[T]]) -> T:
    """``fn(apps, workspace_id)`` over the control plane."""

    async def go(c: Any) -> T:
        ws = await c.workspaces.get(workspace)
        return await fn(c.apps, ws.id)

    return control_run(go)


def _retrieval(
    top_k: int | None,
    mode: str | None,
    rewrite: str | None,
    rerank: bool | None,
    current: Any = None,
) -> Any:
    from modelgrid.protocol.apps import RetrievalSettings

    if top_k is None and mode is None and rewrite is None and rerank is None:
        return current
    base = current or RetrievalSettings()
    return build(
        RetrievalSettings,
        top_k=base.top_k if top_k is None else top_k,
        mode=base.mode if mode is None else mode,
        query_rewrite=base.query_rewrite if rewrite is None else rewrite,
        rerank=base.rerank if rerank is None else rerank,
    )


def _show(a: Any, as_json: bool) -> None:
    if as_json:
        print_json(a)
        return
    kbs = ",".join(a.knowledge_base_ids) or "-"
    console.print(
        f"[bold]{a.name}[/] ({a.id}) model {a.model}, knowledge bases {kbs}, "
        f"top_k {a.retrieval.top_k} {a.retrieval.mode}, query rewrite "
        f"{a.retrieval.query_rewrite}, rerank {'on' if a.retrieval.rerank else 'off'}, "
        f"memory extraction {a.memory_extraction}, "
        f"max_tokens {a.max_tokens or '-'}, "
        f"tools {','.join(t.name for t in a.tools) or '-'}"
        + (f" ({a.tool_choice}, {a.max_tool_rounds} rounds)" if a.tools else "")
    )
    if a.instructions:
        console.print(f"instructions: {a.instructions}", markup=False)


@app.command("create")
def create(
    name: str = typer.Argument(..., help="The app's name."),
    workspace: str = WORKSPACE,
    model: str = typer.Option(..., "--model", help="A served generation model."),
    instructions: str = INSTRUCTIONS,
    knowledge_bases: str = KNOWLEDGE,
    top_k: int = TOP_K,
    mode: str = MODE,
    query_rewrite: str = QUERY_REWRITE,
    rerank: bool = RERANK,
    memory_extraction: str = MEMORY_EXTRACTION,
    max_tokens: int = MAX_TOKENS,
    tools_file: str = TOOLS_FILE,
    tool_choice: str = TOOL_CHOICE,
    max_tool_rounds: int = MAX_TOOL_ROUNDS,
    as_json: bool = JSON,
) -> None:
    """Create an app in a workspace."""
    from modelgrid.protocol.apps import AppCreate, RetrievalSettings

    fields: dict[str, Any] = {
        "name": name,
        "model": model,
        "instructions": instructions or "",
        "knowledge_base_ids": split_list(knowledge_bases) or [],
        "retrieval": _retrieval(top_k, mode, query_rewrite, rerank) or RetrievalSettings(),
        "max_tokens": max_tokens,
    }
    if memory_extraction is not None:
        fields["memory_extraction"] = memory_extraction
    optional = {
        "tools": _tools(tools_file),
        "tool_choice": tool_choice,
        "max_tool_rounds": max_tool_rounds,
    }
    fields.update({k: v for k, v in optional.items() if v is not None})
    body = build(AppCreate, **fields)
    _show(_run(workspace, lambda apps, ws: apps.create(ws, body, actor=actor())), as_json)


@app.command("list")
def list_apps(workspace: str = WORKSPACE, as_json: bool = JSON) -> None:
    """List a workspace's apps."""
    page = _run(workspace, lambda apps, ws: apps.list(ws, limit=1000))
    if as_json:
        print_json(page.data)
        return
    table = Table("id", "name", "model", "knowledge bases", "retrieval")
    for a in page.data:
        table.add_row(
            a.id,
            a.name,
            a.model,
            ",".join(a.knowledge_base_ids) or "-",
            f"{a.retrieval.top_k} {a.retrieval.mode} {a.retrieval.query_rewrite}"
            + (" rerank" if a.retrieval.rerank else ""),
        )
    console.print(table)


@app.command("show")
def show(app_id: str, workspace: str = WORKSPACE, as_json: bool = JSON) -> None:
    """Show one app."""
    _show(_run(workspace, lambda apps, ws: apps.get(ws, app_id)), as_json)


@app.command("set")
def set_app(
    app_id: str,
    workspace: str = WORKSPACE,
    name: str = typer.Option(None, "--name"),
    model: str = typer.Option(None, "--model"),
    instructions: str = INSTRUCTIONS,
    knowledge_bases: str = KNOWLEDGE,
    top_k: int = TOP_K,
    mode: str = MODE,
    query_rewrite: str = QUERY_REWRITE,
    rerank: bool = RERANK,
    memory_extraction: str = MEMORY_EXTRACTION,
    max_tokens: int = MAX_TOKENS,
    tools_file: str = TOOLS_FILE,
    tool_choice: str = TOOL_CHOICE,
    max_tool_rounds: int = MAX_TOOL_ROUNDS,
    as_json: bool = JSON,
) -> None:
    """Change an app (the options given; ``--knowledge-bases ''`` removes them all)."""
    from modelgrid.protocol.apps import AppUpdate

    tools = _tools(tools_file)

    async def go(apps: Any, ws: str) -> Any:
        current = await apps.get(ws, app_id)
        fields: dict[str, Any] = {
            k: v
            for k, v in {
                "name": name,
                "model": model,
                "instructions": instructions,
                "retrieval": _retrieval(top_k, mode, query_rewrite, rerank, current.retrieval),
                "max_tokens": max_tokens,
                "memory_extraction": memory_extraction,
                "tools": tools,
                "tool_choice": tool_choice,
                "max_tool_rounds": max_tool_rounds,
            }.items()
            if v is not None
        }
        if knowledge_bases is not None:
            fields["knowledge_base_ids"] = split_list(knowledge_bases) or []
        return await apps.update(ws, app_id, build(AppUpdate, **fields), actor=actor())

    _show(_run(workspace, go), as_json)


@app.command("delete")
def delete(app_id: str, workspace: str = WORKSPACE, as_json: bool = JSON) -> None:
    """Delete an app with its end users' sessions."""
    gone = _run(workspace, lambda apps, ws: apps.delete(ws, app_id, actor=actor()))
    if as_json:
        print_json(gone)
        return
    console.print(f"deleted {gone.id} and {gone.sessions} session(s)")
