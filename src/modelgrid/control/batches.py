"""Batch jobs: create, list, show, cancel (the API's ``/v1/batches`` and the CLI call this).

A batch belongs to the workspace of the key that created it: another workspace's id is a
404, as an unknown one. Creating checks the input file again, whole and streamed
(``Files.check_input``: every line's contract, its model served and allowed to the key, as
at upload), that its lines call ``endpoint``, and that the batch's results may be stored
where this gateway runs (the key's allowed regions and jurisdictions). It is created
``validating``; the runner (``jobs.batch_runner``) takes it, runs its lines on idle capacity
and finishes it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from modelgrid.control.files import Files
from modelgrid.control.hooks import Hooks
from modelgrid.control.inventory import Inventory
from modelgrid.core.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from modelgrid.core.types import RoutingHints
from modelgrid.protocol.openai.batches import FINAL, BatchCreate, batch_object
from modelgrid.storage.models import Batch
from modelgrid.tenancy.lookup import Sessions
from modelgrid.tenancy.service import Principal

WINDOWS = {"24h": timedelta(hours=24)}
CANCELLABLE = frozenset({"validating", "in_progress"})
MAX_PAGE = 100


def new_batch_id() -> str:
    return f"batch_{secrets.token_hex(12)}"


def _aware(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


class Batches:
    """Batch administration for tenants.

    Args:
        sessions: The database.
        files: The files service (input files, results).
        inventory: What exists (the gateway's region, where results are stored).
        hooks: ``batch_created`` is told of each new batch.
    """

    def __init__(
        self,
        sessions: Sessions,
        files: Files,
        inventory: Callable[[], Inventory],
        hooks: Hooks | None = None,
    ) -> None:
        self._sessions = sessions
        self._files = files
        self._inventory = inventory
        self._hooks = hooks or Hooks()

    async def create(self, principal: Principal, body: BatchCreate) -> dict[str, Any]:
        """Create a batch (``validating``) over ``body.input_file_id``.

        Raises:
            NotFoundError: no such file in the workspace.
            InvalidRequestError: the file is not a batch input, or calls another endpoint.
            BatchInputError: a line breaks the input contract (or its model is no longer
                served or allowed to the key).
            PermissionDeniedError: the key may not keep results in this gateway's region.
        """
        inv = self._inventory()
        region = inv.gateway_region
        hints = RoutingHints(
            allowed_regions=principal.allowed_regions,
            allowed_jurisdictions=principal.allowed_jurisdictions,
        )
        if not hints.allows(region, inv.gateway_jurisdiction):
            raise PermissionDeniedError(
                f"This API key may not keep data in region '{region}', where this gateway "
                "stores batch results.",
                code="region_not_allowed",
            )
        file = await self._files.input_file(principal.workspace_id, body.input_file_id)
        summary = await self._files.check_input(principal, file)
        if summary.url != body.endpoint:
            raise InvalidRequestError(
                f"The file's lines call {summary.url}, not the batch's endpoint {body.endpoint}.",
                param="endpoint",
            )
        now = datetime.now(UTC)
        async with self._sessions() as session, session.begin():
            batch = Batch(
                id=new_batch_id(),
                workspace_id=principal.workspace_id,
                api_key_id=principal.key_id,
                endpoint=body.endpoint,
                model=summary.model,
                region=region,
                input_file_id=file.id,
                status="validating",
                completion_window=body.completion_window,
                metadata_=body.metadata,
                total=summary.lines,
                completed=0,
                failed=0,
                prompt_tokens=0,
                completion_tokens=0,
                cost_micros=0,
                created_at=now,
                expires_at=now + WINDOWS[body.completion_window],
            )
            session.add(batch)
        self._hooks.batch_created()
        return batch_object(_aware_row(batch))

    async def get(self, workspace_id: str | None, batch_id: str) -> dict[str, Any]:
        """The batch (``workspace_id`` ``None``: any workspace's, for operators).

        Raises: NotFoundError (unknown, or another workspace's)."""
        async with self._sessions() as session:
            return batch_object(_aware_row(await self._find(session, workspace_id, batch_id)))

    async def list(
        self, workspace_id: str | None, *, after: str | None = None, limit: int = 20
    ) -> dict[str, Any]:
        """The workspace's batches (``None``: every workspace's), newest first, ``limit``
        after the batch ``after``.

        Raises:
            InvalidRequestError: ``limit`` outside 1..100.
        """
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRequestError(f"limit must be 1 to {MAX_PAGE}.", param="limit")
        async with self._sessions() as session:
            q = select(Batch)
            if workspace_id is not None:
                q = q.where(Batch.workspace_id == workspace_id)
            if after is not None:
                cursor = await self._find(session, workspace_id, after, param="after")
                q = q.where(
                    (Batch.created_at < cursor.created_at)
                    | ((Batch.created_at == cursor.created_at) & (Batch.id < cursor.id))
                )
            q = q.order_by(Batch.created_at.desc(), Batch.id.desc()).limit(limit + 1)
            rows = list((await session.execute(q)).scalars())
        data = [batch_object(_aware_row(b)) for b in rows[:limit]]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": len(rows) > limit,
        }

    async def cancel(self, workspace_id: str | None, batch_id: str) -> dict[str, Any]:
        """Ask the runner to stop: ``cancelling`` now, ``cancelled`` once the lines in flight
        are stopped (finished lines stay billed; the rest go to the error file).

        Raises:
            NotFoundError; ConflictError: the batch has ended.
        """
        async with self._sessions() as session, session.begin():
            b = await self._find(session, workspace_id, batch_id)
            if b.status in CANCELLABLE:
                b.status = "cancelling"
                b.cancelling_at = datetime.now(UTC)
            elif b.status in FINAL:
                raise ConflictError(
                    f"Batch {batch_id} is {b.status}: it cannot be cancelled.",
                    code="batch_not_cancellable",
                )
        return batch_object(_aware_row(b))

    async def results(
        self, workspace_id: str | None, batch_id: str, *, errors: bool = False
    ) -> Any:
        """The lines of the batch's output file (or error file), streamed (bytes).

        Raises:
            NotFoundError: no such batch (``batch_not_found``), or it has no such file (yet):
                ``file_not_found`` naming ``output_file_id`` or ``error_file_id``, the field
                that is null on the batch object, with why (see ``_no_file``).
        """
        async with self._sessions() as session:
            b = await self._find(session, workspace_id, batch_id)
        file_id = b.error_file_id if errors else b.output_file_id
        if file_id is None:
            raise _no_file(b, errors=errors)
        return await self._files.content(b.workspace_id, file_id)

    async def _find(
        self, session: Any, workspace_id: str | None, batch_id: str, param: str = "batch_id"
    ) -> Batch:
        b = await session.get(Batch, batch_id)
        if b is None or (workspace_id is not None and b.workspace_id != workspace_id):
            raise NotFoundError(  # OpenAI's code for an unknown batch
                f"No batch found with id '{batch_id}'.", param=param, code="batch_not_found"
            )
        return b  # type: ignore[no-any-return]


def _no_file(b: Batch, *, errors: bool) -> NotFoundError:
    """The 404 for a batch whose output (or error) file does not exist: OpenAI's code for a
    missing file (``file_not_found``) and the batch object's null field as ``param``. The files
    are written when a batch ends (``jobs.batch_runner``), the output file only when a request
    succeeded and the error file only when one failed; a batch that failed before running
    (its input unreadable) has neither, and says why in its ``errors``."""
    which = "error" if errors else "output"
    if b.status not in FINAL:
        why = (
            f"it is {b.status}, and its files are written when it ends ({which}_file_id stays "
            "null until then)"
        )
    elif b.status == "failed":
        why = "it failed before running its requests (its 'errors' say why)"
    elif errors:
        why = f"it is {b.status} and none of its requests failed"
    else:
        why = f"it is {b.status} and none of its requests succeeded"
    return NotFoundError(
        f"Batch {b.id} has no {which} file: {why}.",
        param=f"{which}_file_id",
        code="file_not_found",
    )


_TIMES = (
    "created_at",
    "expires_at",
    "in_progress_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
)


def _aware_row(b: Batch) -> Batch:
    """SQLite hands back naive datetimes (stored in UTC): make them aware for rendering."""
    for name in _TIMES:
        at = getattr(b, name)
        if at is not None and at.tzinfo is None:
            setattr(b, name, at.replace(tzinfo=UTC))
    return b


__all__ = ["Batches", "new_batch_id"]
