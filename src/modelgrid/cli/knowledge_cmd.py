"""``modelgrid knowledge list|documents|delete``: a workspace's knowledge bases, for operators.

They read the configured database (SQLite: the index is in the same file). Tenants use
``/v1/knowledge_bases`` (``docs/knowledge.md``); adding documents and searching need the
gateway's embedding model, so they are the API's only.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer
from rich.table import Table

from modelgrid.cli.common import console, print_json, run_or_exit

app = typer.Typer(help="Knowledge bases: list them, their documents, delete.", no_args_is_help=True)
WORKSPACE = typer.Option(..., "--workspace", help="The workspace (its id or name).")
T = TypeVar("T")


def _run(fn: Callable[[Any, str], Awaitable[T]], workspace: str) -> T:
    """``fn(knowledge_bases, workspace_id)`` over the configured database and its index."""
    from modelgrid.config import Settings
    from modelgrid.control.inventory import Inventory
    from modelgrid.control.knowledge import KnowledgeBases
    from modelgrid.core.errors import ServiceUnavailableError
    from modelgrid.knowledge.index import KnowledgeIndex
    from modelgrid.knowledge.pg_index import PgIndex
    from modelgrid.knowledge.sqlite_index import SqliteIndex, sqlite_path
    from modelgrid.routing import topology as topo
    from modelgrid.storage import db
    from modelgrid.tenancy.lookup import find_workspace

    async def go(s: Settings) -> T:
        path = sqlite_path(s.database_url)
        if path is None and not s.database_url.startswith("postgresql"):
            raise ServiceUnavailableError("Knowledge bases need a SQLite or PostgreSQL database.")
        engine = db.create_engine(s.database_url)
        sessions = db.sessionmaker(engine)
        index: KnowledgeIndex = SqliteIndex(path) if path is not None else PgIndex(engine)
        inventory = Inventory.of(topo.default_topology())
        try:
            async with sessions() as session:
                ws = await find_workspace(session, workspace)
            bases = KnowledgeBases(sessions, lambda: inventory, index, s.knowledge)
            return await fn(bases, ws.id)
        finally:
            await index.aclose()
            await engine.dispose()

    return run_or_exit(go)


def _when(ts: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts)) if ts else ""


@app.command("list")
def list_bases(
    workspace: str = WORKSPACE,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The workspace's knowledge bases, oldest first, with their documents per status."""
    page = _run(lambda kb, ws: kb.list(ws, limit=1000), workspace)
    if as_json:
        print_json(page.data)
        return
    table = Table("name", "model", "chunking", "documents", "created")
    table.add_column("id", no_wrap=True)
    for k in page.data:
        docs = ", ".join(f"{n} {status}" for status, n in sorted(k.documents.items()))
        chunking = f"{k.chunking.max_tokens}/{k.chunking.overlap_tokens}"
        table.add_row(k.name, k.embedding_model, chunking, docs, _when(k.created_at), k.id)
    console.print(table)


@app.command("documents")
def documents(
    knowledge_base_id: str = typer.Argument(..., help="Knowledge base id (kb-…)."),
    workspace: str = WORKSPACE,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """A knowledge base's documents and their indexing status."""
    page = _run(lambda kb, ws: kb.list_documents(ws, knowledge_base_id, limit=1000), workspace)
    if as_json:
        print_json(page.data)
        return
    table = Table("file", "format", "status", "chunks", "error")
    table.add_column("id", no_wrap=True)
    for d in page.data:
        chunks = f"{d.chunks_done}/{d.chunks_total}"
        table.add_row(d.filename, d.format, d.status, chunks, d.error or "", d.id)
    console.print(table)


@app.command("delete")
def delete(
    knowledge_base_id: str = typer.Argument(..., help="Knowledge base id (kb-…)."),
    workspace: str = WORKSPACE,
    document: str = typer.Option(None, "--document", help="Delete only this document."),
) -> None:
    """Delete a knowledge base (or one document) with every chunk and vector of it."""
    import getpass

    from modelgrid.tenancy import audit

    actor = audit.cli_actor(getpass.getuser())
    if document:
        _run(
            lambda kb, ws: kb.delete_document(ws, knowledge_base_id, document, actor=actor),
            workspace,
        )
        console.print(f"deleted document {document}")
    else:
        _run(lambda kb, ws: kb.delete(ws, knowledge_base_id, actor=actor), workspace)
        console.print(f"deleted knowledge base {knowledge_base_id}")


__all__ = ["app"]
