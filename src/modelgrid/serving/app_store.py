"""What calling an app reads and writes in the database: the app, its knowledge bases, the
documents' names (and metadata and tags, for ``rag_options``' filters), and end users'
sessions with their turns.

Every read takes the workspace: another workspace's app, knowledge base, document or session
is the same as an unknown one. Sessions are stored in this gateway's database, in this
gateway's region: a key that may not keep data there is refused (403 ``region_not_allowed``)
before anything runs. A session expires ``session_ttl_s`` after its last turn: naming it then
is the same 404 as an unknown id (``control.apps`` sweeps it away). A turn is stored only when the answer completed; two requests on one
session each append their own turn (append-only rows, no lost update).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from modelgrid.core.errors import NotFoundError, PermissionDeniedError
from modelgrid.core.types import RoutingHints
from modelgrid.protocol.app_tools import AppTool
from modelgrid.storage.models import App, AppSession, AppTurn, KnowledgeBase, KnowledgeDocument
from modelgrid.storage.sealing import Sealer
from modelgrid.tenancy.audit import aware
from modelgrid.tenancy.lookup import Sessions
from modelgrid.tenancy.service import Principal


def _shown(ident: str) -> str:
    return ident if len(ident) <= 64 else ident[:63] + "…"


@dataclass(frozen=True, slots=True)
class Turn:
    user: str
    assistant: str


class AppStore:
    """Apps' rows for the data plane.

    Args:
        sessions: The database.
        home: This gateway's region and its jurisdiction code, as the topology says now.
        sealer: Opens the plugins' header values (``storage.sealing``).
        session_ttl_s: How long a session lives after its last turn (``apps.session_ttl_s``).
        clock: The current time (aware).
    """

    def __init__(
        self,
        sessions: Sessions,
        home: Callable[[], tuple[str, str]],
        sealer: Sealer,
        session_ttl_s: float = 3600.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._sessions = sessions
        self._sealer = sealer
        self.sessions = sessions
        self._home = home
        self.session_ttl_s = session_ttl_s
        self.clock = clock

    def tools(self, app: App) -> list[AppTool]:
        """``app``'s plugins, their header values opened to be sent.

        Raises:
            SealedSecretError: a value sealed with another key (a 503 naming the setting).
        """
        return [AppTool.model_validate(self._sealer.open_headers(t)) for t in app.tools or ()]

    async def app(self, workspace_id: str, app_id: str) -> App:
        """The workspace's app. Raises ``NotFoundError`` (``app_not_found``)."""
        async with self._sessions() as session:
            row: App | None = await session.get(App, app_id)
        if row is None or row.workspace_id != workspace_id:
            raise NotFoundError(
                f"No such app: '{_shown(app_id)}'.", param="app_id", code="app_not_found"
            )
        return row

    async def knowledge_bases(
        self, workspace_id: str, ids: Sequence[str]
    ) -> dict[str, KnowledgeBase]:
        """The workspace's knowledge bases among ``ids``, by id."""
        if not ids:
            return {}
        stmt = select(KnowledgeBase).where(
            KnowledgeBase.workspace_id == workspace_id, KnowledgeBase.id.in_(list(ids))
        )
        async with self._sessions() as session:
            return {kb.id: kb for kb in (await session.execute(stmt)).scalars()}

    async def document_names(self, workspace_id: str, ids: Sequence[str]) -> dict[str, str]:
        """The file names of the workspace's documents among ``ids``."""
        if not ids:
            return {}
        stmt = select(KnowledgeDocument.id, KnowledgeDocument.filename).where(
            KnowledgeDocument.workspace_id == workspace_id,
            KnowledgeDocument.id.in_(list(set(ids))),
        )
        async with self._sessions() as session:
            return {i: name for i, name in (await session.execute(stmt)).all()}

    async def documents_of(
        self, workspace_id: str, knowledge_base_ids: Sequence[str], ids: Sequence[str]
    ) -> set[str]:
        """Those of ``ids`` that are documents of the workspace's ``knowledge_base_ids``."""
        if not ids or not knowledge_base_ids:
            return set()
        stmt = select(KnowledgeDocument.id).where(
            KnowledgeDocument.workspace_id == workspace_id,
            KnowledgeDocument.knowledge_base_id.in_(list(knowledge_base_ids)),
            KnowledgeDocument.id.in_(list(set(ids))),
        )
        async with self._sessions() as session:
            return set((await session.execute(stmt)).scalars())

    async def document_labels(
        self,
        workspace_id: str,
        knowledge_base_ids: Sequence[str],
        ids: Sequence[str] | None = None,
    ) -> dict[str, tuple[dict[str, Any] | None, list[str] | None]]:
        """The ``(metadata, tags)`` of the workspace's documents of ``knowledge_base_ids``
        (only those among ``ids`` when given), by document id."""
        if not knowledge_base_ids or (ids is not None and not ids):
            return {}
        stmt = select(
            KnowledgeDocument.id, KnowledgeDocument.attributes, KnowledgeDocument.tags
        ).where(
            KnowledgeDocument.workspace_id == workspace_id,
            KnowledgeDocument.knowledge_base_id.in_(list(knowledge_base_ids)),
        )
        if ids is not None:
            stmt = stmt.where(KnowledgeDocument.id.in_(list(set(ids))))
        async with self._sessions() as session:
            return {i: (meta, tags) for i, meta, tags in (await session.execute(stmt)).all()}

    def check_residency(self, principal: Principal) -> None:
        """Raises: PermissionDeniedError (``region_not_allowed``): the key may not keep data
        (the session) in this gateway's region."""
        region, jurisdiction = self._home()
        hints = RoutingHints(
            allowed_regions=principal.allowed_regions,
            allowed_jurisdictions=principal.allowed_jurisdictions,
        )
        if not hints.allows(region, jurisdiction):
            raise PermissionDeniedError(
                f"App sessions are stored in this gateway's region '{region}', which this API "
                "key may not use.",
                code="region_not_allowed",
            )

    async def check_session(self, workspace_id: str, app_id: str, session_id: str) -> None:
        """Raises: NotFoundError (``session_not_found``): not a session of this app in the
        workspace (unknown, another app's or another workspace's), or expired: its last turn
        ``session_ttl_s`` or more ago (the sweep deletes it soon after)."""
        async with self._sessions() as session:
            row: AppSession | None = await session.get(AppSession, session_id)
        expired = (
            row is not None
            and aware(row.updated_at) + timedelta(seconds=self.session_ttl_s) <= self.clock()
        )
        if row is None or row.workspace_id != workspace_id or row.app_id != app_id or expired:
            raise NotFoundError(
                f"No such session of this app: '{_shown(session_id)}'.",
                param="input.session_id",
                code="session_not_found",
            )

    async def new_session(self, workspace_id: str, app_id: str) -> str:
        """A new session of the app (32 hex characters, as DashScope's)."""
        now = datetime.now(UTC)
        row = AppSession(
            id=uuid.uuid4().hex,
            workspace_id=workspace_id,
            app_id=app_id,
            created_at=now,
            updated_at=now,
        )
        async with self._sessions() as session, session.begin():
            session.add(row)
        return row.id

    async def turns(self, workspace_id: str, session_id: str, last: int) -> list[Turn]:
        """The session's ``last`` turns, oldest first."""
        stmt = (
            select(AppTurn.user_text, AppTurn.assistant_text)
            .where(AppTurn.session_id == session_id, AppTurn.workspace_id == workspace_id)
            .order_by(AppTurn.id.desc())
            .limit(last)
        )
        async with self._sessions() as session:
            rows = (await session.execute(stmt)).all()
        return [Turn(u, a) for u, a in reversed(rows)]

    async def add_turn(
        self, workspace_id: str, session_id: str, user: str, assistant: str, request_id: str
    ) -> None:
        """Append a completed turn to the session."""
        now = datetime.now(UTC)
        async with self._sessions() as session, session.begin():
            session.add(
                AppTurn(
                    session_id=session_id,
                    workspace_id=workspace_id,
                    user_text=user,
                    assistant_text=assistant,
                    request_id=request_id,
                    created_at=now,
                )
            )
            await session.execute(
                update(AppSession).where(AppSession.id == session_id).values(updated_at=now)
            )


__all__ = ["AppStore", "Turn"]
