"""Apps (assistants, DashScope's "applications"): create, list, get, change, delete; an end
user's session: read (its turns), delete; expired sessions swept (``sweep_expired_sessions``,
a background loop of the gateway: ``apps.session_ttl_s`` after its last turn).

An app belongs to one workspace: another workspace's app id is the same 404 as an unknown
one. Its model must be served (``control.inventory``), its knowledge bases must be the
workspace's (a 400 naming every one that is not). Every change is one transaction with its
audit entry; deleting an app deletes its end users' sessions and their turns with it. The
tenant API (``/v1/apps``) and the CLI (``modelgrid apps``) both call this; calling an app is
``serving.apps``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select

from modelgrid.control.app_tools import check_tools, restore_masked
from modelgrid.control.inventory import Inventory
from modelgrid.core.errors import InvalidRequestError, NotFoundError
from modelgrid.core.ids import completion_id
from modelgrid.protocol.app_tools import MASK, AppTool
from modelgrid.protocol.apps import (
    AppCreate,
    AppDeleted,
    AppList,
    AppObject,
    AppSessionDeleted,
    AppSessionObject,
    AppUpdate,
    RetrievalSettings,
    SessionTurn,
)
from modelgrid.serving.plugin_addresses import Network
from modelgrid.storage.models import App, AppSession, AppTurn, KnowledgeBase
from modelgrid.storage.sealing import Sealer
from modelgrid.tenancy import audit
from modelgrid.tenancy.audit import aware
from modelgrid.tenancy.lookup import Sessions

LIST_LIMIT_MAX = 1000
SWEEP_BATCH = 500  # expired sessions deleted per transaction


def _shown(ident: str) -> str:
    return ident if len(ident) <= 64 else ident[:63] + "…"


def _unix(at: datetime) -> int:
    return int(aware(at).timestamp())


def app_not_found(app_id: str) -> NotFoundError:
    return NotFoundError(f"No such app: '{_shown(app_id)}'.", param="app_id", code="app_not_found")


def stored_tools(row: App, sealer: Sealer) -> list[AppTool]:
    """The app's tools with their header values opened (``storage.sealing``).

    Raises:
        SealedSecretError: a value sealed with another key.
    """
    return [AppTool.model_validate(sealer.open_headers(t)) for t in row.tools or ()]


def _shown_tools(row: App) -> list[AppTool]:
    """The app's tools as responses show them: header values ``MASK``, never opened."""
    return [
        AppTool.model_validate({**t, "headers": dict.fromkeys(t.get("headers") or {}, MASK)})
        for t in row.tools or ()
    ]


def app_object(row: App) -> AppObject:
    """The app as responses show it (tools' header values masked)."""
    return AppObject(
        id=row.id,
        name=row.name,
        description=row.description,
        model=row.model,
        instructions=row.instructions,
        knowledge_base_ids=list(row.knowledge_base_ids),
        retrieval=RetrievalSettings(
            top_k=row.top_k,
            mode=row.retrieval_mode,  # type: ignore[arg-type]  # written from ``RetrievalMode`` only
            query_rewrite=row.query_rewrite,  # type: ignore[arg-type]  # from ``QueryRewrite`` only
            rerank=row.rerank,
        ),
        max_tokens=row.max_tokens,
        memory_extraction=row.memory_extraction,  # type: ignore[arg-type]  # ``MemoryExtraction``
        tools=_shown_tools(row),
        tool_choice=row.tool_choice,  # type: ignore[arg-type]  # ``ToolChoiceSetting`` only
        max_tool_rounds=row.max_tool_rounds,
        created_at=int(aware(row.created_at).timestamp()),
        updated_at=int(aware(row.updated_at).timestamp()),
    )


async def unknown_knowledge_bases(
    sessions: Sessions, workspace_id: str, ids: Sequence[str]
) -> list[str]:
    """The ids among ``ids`` that are no knowledge base of the workspace, in their order."""
    if not ids:
        return []
    stmt = select(KnowledgeBase.id).where(
        KnowledgeBase.workspace_id == workspace_id, KnowledgeBase.id.in_(list(ids))
    )
    async with sessions() as session:
        found = set((await session.execute(stmt)).scalars())
    return [i for i in dict.fromkeys(ids) if i not in found]


def unknown_knowledge_bases_error(unknown: Sequence[str], param: str) -> InvalidRequestError:
    names = ", ".join(f"'{_shown(i)}'" for i in unknown)
    plural = "s" if len(unknown) > 1 else ""
    return InvalidRequestError(
        f"Unknown knowledge base{plural} {names} (none of this workspace has that id).",
        param=param,
        code="knowledge_base_not_found",
    )


class Apps:
    """A workspace's apps (see the module docstring).

    Args:
        sessions: The database.
        inventory: What exists now (the served models).
        sealer: Seals the plugins' header values as they are stored (``storage.sealing``).
        embedding_models: The served models that only embed (not an app's model).
        plugin_allowed_networks: The operator's networks plugins may be called in anyway
            (``apps.plugin_allowed_networks``; ``serving.plugin_addresses``).
    """

    def __init__(
        self,
        sessions: Sessions,
        inventory: Callable[[], Inventory],
        sealer: Sealer,
        embedding_models: Callable[[], Iterable[str]] = lambda: (),
        plugin_allowed_networks: Sequence[Network] = (),
    ) -> None:
        self._sessions = sessions
        self._sealer = sealer
        self._inventory = inventory
        self._embedding_models = embedding_models
        self._allowed = tuple(plugin_allowed_networks)

    async def _check(self, workspace_id: str, model: str | None, kb_ids: list[str] | None) -> None:
        if model is not None:
            self._inventory().check_models([model], "model")
            if model in set(self._embedding_models()):
                raise InvalidRequestError(
                    f"The model '{model}' is an embedding model: an app's model must generate "
                    "text.",
                    param="model",
                    code="model_not_chat",
                )
        if kb_ids:
            unknown = await unknown_knowledge_bases(self._sessions, workspace_id, kb_ids)
            if unknown:
                raise unknown_knowledge_bases_error(unknown, "knowledge_base_ids")

    async def create(self, workspace_id: str, body: AppCreate, *, actor: str) -> AppObject:
        """Create an app in the workspace.

        Raises:
            InvalidRequestError: a model nobody serves (``unknown_model``) or one that only
                embeds (``model_not_chat``); a knowledge base
                that is not the workspace's (``knowledge_base_not_found``); a bad tool
                (``control.app_tools.check_tools``, naming ``tools[i]…``).
        """
        kb_ids = list(dict.fromkeys(body.knowledge_base_ids))
        restore_masked(body.tools, ())  # a '****' value has nothing to keep: a 400
        check_tools(body.tools, body.tool_choice, self._allowed)
        await self._check(workspace_id, body.model, kb_ids)
        now = datetime.now(UTC)
        row = App(
            id=completion_id("app"),
            workspace_id=workspace_id,
            name=body.name,
            description=body.description,
            model=body.model,
            instructions=body.instructions,
            knowledge_base_ids=kb_ids,
            top_k=body.retrieval.top_k,
            retrieval_mode=body.retrieval.mode,
            query_rewrite=body.retrieval.query_rewrite,
            rerank=body.retrieval.rerank,
            memory_extraction=body.memory_extraction,
            max_tokens=body.max_tokens,
            tools=[self._sealer.seal_headers(t.model_dump()) for t in body.tools],
            tool_choice=body.tool_choice,
            max_tool_rounds=body.max_tool_rounds,
            created_at=now,
            updated_at=now,
        )
        async with self._sessions() as session, session.begin():
            session.add(row)
            await audit.record(
                session,
                actor=actor,
                action="app.create",
                target=f"app:{row.id}",
                details={
                    "workspace_id": workspace_id,
                    "name": row.name,
                    "model": row.model,
                    "tools": [t.name for t in body.tools],  # names only: headers are secrets
                },
            )
        return app_object(row)

    async def row(self, workspace_id: str, app_id: str) -> App:
        """The workspace's app. Raises ``NotFoundError`` (``app_not_found``)."""
        async with self._sessions() as session:
            row: App | None = await session.get(App, app_id)
        if row is None or row.workspace_id != workspace_id:
            raise app_not_found(app_id)
        return row

    async def get(self, workspace_id: str, app_id: str) -> AppObject:
        return app_object(await self.row(workspace_id, app_id))

    async def list(
        self, workspace_id: str, *, after: str | None = None, limit: int = 100
    ) -> AppList:
        """The workspace's apps, oldest first, ``limit`` after ``after``."""
        limit = max(1, min(limit, LIST_LIMIT_MAX))
        stmt = select(App).where(App.workspace_id == workspace_id)
        async with self._sessions() as session:
            if after is not None:
                anchor = await session.get(App, after)
                if anchor is None or anchor.workspace_id != workspace_id:
                    raise app_not_found(after).at("after")
                stmt = stmt.where(
                    (App.created_at > anchor.created_at)
                    | ((App.created_at == anchor.created_at) & (App.id > anchor.id))
                )
            stmt = stmt.order_by(App.created_at, App.id).limit(limit + 1)
            rows = list((await session.execute(stmt)).scalars())
        more, rows = len(rows) > limit, rows[:limit]
        data = [app_object(r) for r in rows]
        return AppList(
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            has_more=more,
        )

    async def update(
        self, workspace_id: str, app_id: str, body: AppUpdate, *, actor: str
    ) -> AppObject:
        """Change the fields ``body`` sets (``max_tokens: null`` clears it). ``tools`` replaces
        the whole list; a header value sent as the mask ``****`` keeps the stored value of that
        header of the tool of the same name (``control.app_tools.restore_masked``).

        Raises:
            NotFoundError: no such app in the workspace.
            InvalidRequestError: as ``create``; ``tools: null`` (``tools``: send ``[]`` to
                remove every tool); a ``****`` header value with no stored value
                (``tools[i].headers.<name>``).
        """
        current = await self.row(workspace_id, app_id)
        given = body.model_fields_set
        if "tools" in given and body.tools is None:
            raise InvalidRequestError(
                "'tools' may not be null: send [] to remove every tool.", param="tools"
            )
        kept = stored_tools(current, self._sealer) if body.tools is not None else []
        tools = None if body.tools is None else restore_masked(body.tools, kept)
        if tools is not None or body.tool_choice is not None:
            check_tools(
                tools if tools is not None else stored_tools(current, self._sealer),
                body.tool_choice or current.tool_choice,
                self._allowed,
            )
        kb_ids = (
            list(dict.fromkeys(body.knowledge_base_ids))
            if body.knowledge_base_ids is not None
            else None
        )
        await self._check(workspace_id, body.model, kb_ids)
        async with self._sessions() as session, session.begin():
            row: App | None = await session.get(App, app_id)
            if row is None or row.workspace_id != workspace_id:
                raise app_not_found(app_id)
            if body.name is not None:
                row.name = body.name
            if body.description is not None:
                row.description = body.description
            if body.model is not None:
                row.model = body.model
            if body.instructions is not None:
                row.instructions = body.instructions
            if kb_ids is not None:
                row.knowledge_base_ids = kb_ids
            if body.retrieval is not None:
                r = body.retrieval
                row.top_k, row.retrieval_mode, row.query_rewrite = r.top_k, r.mode, r.query_rewrite
                row.rerank = r.rerank
            if body.memory_extraction is not None:
                row.memory_extraction = body.memory_extraction
            if "max_tokens" in given:
                row.max_tokens = body.max_tokens
            if tools is not None:
                row.tools = [self._sealer.seal_headers(t.model_dump()) for t in tools]
            if body.tool_choice is not None:
                row.tool_choice = body.tool_choice
            if body.max_tool_rounds is not None:
                row.max_tool_rounds = body.max_tool_rounds
            row.updated_at = datetime.now(UTC)
            await audit.record(
                session,
                actor=actor,
                action="app.update",
                target=f"app:{app_id}",
                details={"workspace_id": workspace_id, "fields": sorted(given)},
            )
            await session.flush()
            out = app_object(row)
        return out

    async def delete(self, workspace_id: str, app_id: str, *, actor: str) -> AppDeleted:
        """Delete the app with its sessions and their turns (one transaction)."""
        async with self._sessions() as session, session.begin():
            row: App | None = await session.get(App, app_id)
            if row is None or row.workspace_id != workspace_id:
                raise app_not_found(app_id)
            ids = select(AppSession.id).where(AppSession.app_id == app_id).scalar_subquery()
            await session.execute(delete(AppTurn).where(AppTurn.session_id.in_(ids)))
            gone = await session.execute(delete(AppSession).where(AppSession.app_id == app_id))
            await session.delete(row)
            await audit.record(
                session,
                actor=actor,
                action="app.delete",
                target=f"app:{app_id}",
                details={"workspace_id": workspace_id},
            )
        return AppDeleted(id=app_id, sessions=int(getattr(gone, "rowcount", 0) or 0))

    # --- end users' sessions -----------------------------------------------------------------

    async def _session(self, session: Any, workspace_id: str, app_id: str, sid: str) -> AppSession:
        row: AppSession | None = await session.get(AppSession, sid)
        if row is None or row.workspace_id != workspace_id or row.app_id != app_id:
            raise NotFoundError(
                f"No such session of this app: '{_shown(sid)}'.",
                param="session_id",
                code="session_not_found",
            )
        return row

    async def session(self, workspace_id: str, app_id: str, sid: str) -> AppSessionObject:
        """A session of the app with its turns (404 ``app_not_found`` /
        ``session_not_found``)."""
        await self.row(workspace_id, app_id)
        async with self._sessions() as session:
            row = await self._session(session, workspace_id, app_id, sid)
            stmt = select(AppTurn).where(AppTurn.session_id == sid).order_by(AppTurn.id)
            turns = list((await session.execute(stmt)).scalars())
        return AppSessionObject(
            id=row.id,
            app_id=app_id,
            created_at=_unix(row.created_at),
            updated_at=_unix(row.updated_at),
            turns=[
                SessionTurn(
                    user=t.user_text, assistant=t.assistant_text, created_at=_unix(t.created_at)
                )
                for t in turns
            ],
        )

    async def delete_session(
        self, workspace_id: str, app_id: str, sid: str, *, actor: str
    ) -> AppSessionDeleted:
        """Delete a session with its turns (one transaction, audited)."""
        await self.row(workspace_id, app_id)
        async with self._sessions() as session, session.begin():
            row = await self._session(session, workspace_id, app_id, sid)
            gone = await session.execute(delete(AppTurn).where(AppTurn.session_id == sid))
            await session.delete(row)
            await audit.record(
                session,
                actor=actor,
                action="app.session.delete",
                target=f"app_session:{sid}",
                details={"workspace_id": workspace_id, "app_id": app_id},
            )
        return AppSessionDeleted(id=sid, turns=int(getattr(gone, "rowcount", 0) or 0))

    async def sweep_expired_sessions(self, ttl_s: float, now: datetime | None = None) -> int:
        """Delete every session of every workspace whose last turn (or creation) is
        ``ttl_s`` seconds or more before ``now`` (default: the clock), with its turns, in
        transactions of ``SWEEP_BATCH`` sessions, each audited once
        (``app.session.expire``). Returns how many sessions were deleted."""
        cutoff = (now or datetime.now(UTC)) - timedelta(seconds=ttl_s)
        swept = 0
        while True:
            async with self._sessions() as session, session.begin():
                ids = list(
                    (
                        await session.execute(
                            select(AppSession.id)
                            .where(AppSession.updated_at <= cutoff)
                            .limit(SWEEP_BATCH)
                        )
                    ).scalars()
                )
                if not ids:
                    return swept
                await session.execute(delete(AppTurn).where(AppTurn.session_id.in_(ids)))
                await session.execute(delete(AppSession).where(AppSession.id.in_(ids)))
                await audit.record(
                    session,
                    actor="system:expiry",
                    action="app.session.expire",
                    target="app_sessions",
                    details={"sessions": len(ids), "ttl_s": ttl_s},
                )
            swept += len(ids)


__all__ = [
    "Apps",
    "app_not_found",
    "app_object",
    "stored_tools",
    "unknown_knowledge_bases",
    "unknown_knowledge_bases_error",
]
