"""Files: a workspace's uploaded batch inputs and its batches' outputs (OpenAI's Files API).

Every file belongs to one workspace: another workspace's id, a deleted or an expired file is
the same 404 as an unknown id. The bytes live in the file store (``storage.filestore``) of
this gateway, so in its region (``Inventory.gateway_region``): an upload whose key or
workspace may not use that region (or its jurisdiction) is refused with 403
``region_not_allowed`` before a byte is read. A workspace keeps at most
``batch.storage_quota_bytes`` in live files (uploads and outputs): an upload that would pass
it is refused with 429 ``insufficient_quota``. A file expires ``expires_after`` seconds after
its upload (else ``batch.file_ttl_s``; outputs ``ttl_s``): it disappears from list and get at
once, and ``purge_expired`` (called by the batch runner) deletes its bytes; ``sweep_orphans``
removes what a killed process left half-way.

An upload of ``purpose=assistants`` (a document for a vector store,
``control.vector_store_files``) is stored as it is, up to ``batch.max_file_bytes``; its text
is extracted when a vector store takes it. An upload (``purpose=batch``) is checked line by line as it streams (``protocol.openai.batch_input``)
into a temporary file renamed into place only once the whole file is valid; its row (with its
request ``lines`` and ``model``) and audit entry are written only then. A refused upload
leaves neither row nor bytes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from modelgrid.config import BatchSettings
from modelgrid.control.inventory import Inventory
from modelgrid.core.errors import (
    BatchInputError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    ServiceUnavailableError,
)
from modelgrid.core.ids import completion_id
from modelgrid.core.types import RoutingHints
from modelgrid.protocol.openai.batch_input import (
    BatchLine,
    InputCheck,
    InputSummary,
    parse_batch_line,
)
from modelgrid.protocol.openai.files import (
    EXPIRES_AFTER_MAX_S,
    EXPIRES_AFTER_MIN_S,
    UPLOAD_PURPOSES,
    FileDeleted,
    FileList,
    FileObject,
    Purpose,
)
from modelgrid.protocol.text import label
from modelgrid.storage import file_rows as rows
from modelgrid.storage.filestore import FileStore
from modelgrid.storage.models import StoredFile
from modelgrid.tenancy import audit
from modelgrid.tenancy.audit import aware
from modelgrid.tenancy.lookup import Sessions
from modelgrid.tenancy.service import Principal

Chunks = Iterable[bytes] | AsyncIterable[bytes]
READ_CHUNK_BYTES = 256 * 1024
FILENAME_MAX = 512
LIST_LIMIT_MAX = 10_000
PURGE_PAGE = 500


def file_object(row: StoredFile) -> FileObject:
    """The wire object of a ``files`` row (times in unix seconds)."""
    expires = aware(row.expires_at) if row.expires_at else None
    return FileObject(
        id=row.id,
        bytes=row.bytes,
        created_at=int(aware(row.created_at).timestamp()),
        expires_at=int(expires.timestamp()) if expires else None,
        filename=row.filename,
        purpose=row.purpose,  # type: ignore[arg-type]  # written from ``Purpose`` only
    )


def _not_found(file_id: str) -> NotFoundError:
    shown = file_id if len(file_id) <= 64 else file_id[:63] + "…"
    return NotFoundError(f"No such file: '{shown}'.", param="file_id", code="file_not_found")


def _quota_error(quota: int, used: int) -> QuotaExceededError:
    return QuotaExceededError(
        f"Storing this file would pass the workspace's storage quota of {quota} bytes "
        f"({used} in use): delete files, or wait for them to expire.",
        param="file",
        headers={"x-should-retry": "false"},  # the openai SDK would send it again
    )


def _blocking(chunks: AsyncIterable[bytes], loop: asyncio.AbstractEventLoop) -> Iterator[bytes]:
    """An async stream read from a worker thread: each chunk awaited on ``loop``."""
    it = aiter(chunks)

    async def step() -> bytes:
        return await anext(it)

    while True:
        try:
            yield asyncio.run_coroutine_threadsafe(step(), loop).result()
        except StopAsyncIteration:
            return


class Files:
    """A workspace's files: upload, list, get, content, delete; outputs and expiry for the
    batch runner.

    Args:
        sessions: The database.
        inventory: What exists now (the gateway's region, the served models).
        store: Where the bytes go (``<data_dir>/files``); ``None`` in a process that keeps
            no files (every operation on bytes then answers 503).
        limits: ``settings.batch``: quota, lifetimes, input limits.
        clock: The time now (UTC); tests pass their own.
    """

    def __init__(
        self,
        sessions: Sessions,
        inventory: Callable[[], Inventory],
        store: FileStore | None,
        limits: BatchSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._sessions = sessions
        self._inventory = inventory
        self._store = store
        self.limits = limits
        self._clock = clock

    # --- the tenant API ----------------------------------------------------------------------

    async def create(
        self,
        principal: Principal,
        *,
        filename: str,
        purpose: str,
        chunks: Chunks,
        expires_after_s: int | None = None,
    ) -> FileObject:
        """Store an upload once it is all read and valid.

        Args:
            principal: The caller (its workspace owns the file; its scope is checked).
            filename: The upload's name (1..512 characters, no control character).
            purpose: ``batch`` or ``assistants`` (``batch_output`` is written by batches).
            chunks: The file's bytes, in chunks of any size (read once, never all at once).
            expires_after_s: Lifetime from now, 3600..2592000 s (default ``file_ttl_s``).

        Raises:
            InvalidRequestError: another purpose, a bad lifetime or filename (its length, or a
                control character: ``protocol.text``).
            BatchInputError: the file breaks the Batch input contract (400 naming the line
                and field: see ``protocol.openai.batch_input``), or is over ``max_file_bytes``.
            PermissionDeniedError: the caller may not store in this gateway's region
                (``region_not_allowed``).
            QuotaExceededError: the workspace's storage quota would be passed (429).
        """
        if purpose not in UPLOAD_PURPOSES:
            raise InvalidRequestError(
                f"Uploads take purpose {', '.join(map(repr, UPLOAD_PURPOSES))}, not "
                f"{purpose[:64]!r}.",
                param="purpose",
                code="invalid_value",
            )
        ttl_s = self._upload_ttl(expires_after_s)
        if not 1 <= len(filename) <= FILENAME_MAX:
            raise InvalidRequestError(
                f"The file's name must have 1 to {FILENAME_MAX} characters.", param="file"
            )
        try:
            label(filename)
        except ValueError as e:
            raise InvalidRequestError(f"The file's name {e}.", param="file") from None
        inv = self._inventory()
        region = _residency(principal, inv)
        store = self._require_store()
        ws = principal.workspace_id
        quota = self.limits.storage_quota_bytes
        async with self._sessions() as session:
            used = await rows.live_bytes(session, ws, self._clock())
        if used >= quota:
            raise _quota_error(quota, used)

        def within_quota(source: Iterable[bytes]) -> Iterator[bytes]:
            size = 0
            for chunk in source:
                size += len(chunk)
                if used + size > quota:
                    raise _quota_error(quota, used)
                yield chunk

        def check_model(model: str, line: int) -> None:
            _check_model(inv, principal, model, line)

        check: InputCheck | _Sized = (
            InputCheck(self.limits, check_model)
            if purpose == "batch"
            else _Sized(self.limits.max_file_bytes)
        )
        file_id = completion_id("file")
        relative = store.relative_path(region, ws, file_id)
        await self._write(store, relative, chunks, lambda c: check.passing(within_quota(c)))
        summary = check.summary()
        now = self._clock()
        try:
            async with self._sessions() as session, session.begin():
                in_use = await rows.live_bytes(session, ws, now)
                if in_use + summary.bytes > quota:  # another upload won the race
                    raise _quota_error(quota, in_use)
                row = await rows.add_file(
                    session,
                    StoredFile(
                        id=file_id,
                        workspace_id=ws,
                        region=region,
                        purpose=purpose,
                        filename=filename,
                        bytes=summary.bytes,
                        lines=summary.lines,
                        model=summary.model or None,
                        path=relative,
                        created_at=now,
                        expires_at=now + timedelta(seconds=ttl_s),
                    ),
                )
                await audit.record(
                    session,
                    actor=audit.api_actor(principal.key_id),
                    action="file.create",
                    target=f"file:{file_id}",
                    details={
                        "workspace_id": ws,
                        "purpose": purpose,
                        "bytes": summary.bytes,
                        "lines": summary.lines,
                        "region": region,
                    },
                )
        except BaseException:
            await asyncio.to_thread(store.delete, relative)
            raise
        return file_object(row)

    async def list(
        self,
        workspace_id: str,
        *,
        purpose: str | None = None,
        after: str | None = None,
        limit: int = LIST_LIMIT_MAX,
        order: Literal["asc", "desc"] = "desc",
    ) -> FileList:
        """The workspace's live files by creation time (``order``), at most ``limit``
        (1..10000), after the file ``after`` (a cursor: the last id of the previous page).

        Raises:
            InvalidRequestError: ``limit`` out of range.
            NotFoundError: ``after`` is no file of this workspace.
        """
        if not 1 <= limit <= LIST_LIMIT_MAX:
            raise InvalidRequestError(
                f"'limit' must lie in 1..{LIST_LIMIT_MAX}.", param="limit", code="invalid_value"
            )
        async with self._sessions() as session:
            cursor = None
            if after is not None:
                cursor = await rows.any_file(session, workspace_id, after)
                if cursor is None:
                    raise _not_found(after).at("after")
            found = await rows.list_live_files(
                session,
                workspace_id,
                self._clock(),
                purpose=purpose,
                after=cursor,
                limit=limit + 1,
                order=order,
            )
        data = [file_object(r) for r in found[:limit]]
        return FileList(
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            has_more=len(found) > limit,
        )

    async def get(self, workspace_id: str, file_id: str) -> FileObject:
        """The workspace's live file ``file_id``. Raises ``NotFoundError``."""
        return file_object(await self.row(workspace_id, file_id))

    async def content(self, workspace_id: str, file_id: str) -> Iterator[bytes]:
        """The file's bytes in chunks, read from disk as they are consumed (the file is opened
        now: a file deleted afterwards still reads whole). Close the iterator if not consumed
        to the end.

        Raises:
            NotFoundError: no such live file in the workspace (or its bytes are gone).
        """
        row = await self.row(workspace_id, file_id)
        store = self._require_store()
        try:
            f = await asyncio.to_thread(store.open, row.path)
        except FileNotFoundError:
            raise _not_found(file_id) from None

        def chunks() -> Iterator[bytes]:
            with f:
                while chunk := f.read(READ_CHUNK_BYTES):
                    yield chunk

        return chunks()

    async def delete(self, workspace_id: str, file_id: str, *, actor: str) -> FileDeleted:
        """Delete the workspace's file: gone from list and get at once, its bytes removed.

        Args:
            actor: Who asks (``mg-<key id>``), for the audit entry.

        Raises:
            NotFoundError: no such live file in the workspace.
        """
        now = self._clock()
        async with self._sessions() as session, session.begin():
            row = await rows.live_file(session, workspace_id, file_id, now)
            if row is None or not await rows.mark_deleted(session, row.id, now):
                raise _not_found(file_id)
            await audit.record(
                session,
                actor=actor,
                action="file.delete",
                target=f"file:{row.id}",
                details={"workspace_id": workspace_id, "purpose": row.purpose},
            )
        if self._store is not None:
            await asyncio.to_thread(self._store.delete, row.path)
        return FileDeleted(id=row.id)

    # --- for batches -------------------------------------------------------------------------

    async def row(self, workspace_id: str, file_id: str) -> StoredFile:
        """The workspace's live file's row. Raises ``NotFoundError``."""
        async with self._sessions() as session:
            row = await rows.live_file(session, workspace_id, file_id, self._clock())
        if row is None:
            raise _not_found(file_id)
        return row

    async def input_file(self, workspace_id: str, file_id: str) -> StoredFile:
        """The row of a batch's input file (``input_file_id``): live, the workspace's, of
        purpose ``batch`` (its ``lines`` and ``model`` were checked at upload).

        Raises:
            NotFoundError: no such live file in the workspace (``param="input_file_id"``).
            InvalidRequestError: the file's purpose is not ``batch``.
        """
        try:
            row = await self.row(workspace_id, file_id)
        except NotFoundError as exc:
            raise exc.at("input_file_id") from None
        if row.purpose != "batch":
            raise InvalidRequestError(
                f"File '{file_id}' has purpose '{row.purpose}'; a batch reads a file of "
                "purpose 'batch'.",
                param="input_file_id",
                code="invalid_value",
            )
        return row

    async def check_input(self, principal: Principal, row: StoredFile) -> InputSummary:
        """Check a stored input file again, whole, against the contract and ``principal``'s
        scope now (its model may have been withdrawn since the upload); streamed in a worker
        thread.

        Raises:
            BatchInputError: the first broken rule (see ``protocol.openai.batch_input``).
            NotFoundError: its bytes are gone.
        """
        store = self._require_store()
        inv = self._inventory()

        def check_model(model: str, line: int) -> None:
            _check_model(inv, principal, model, line)

        def run() -> InputSummary:
            check = InputCheck(self.limits, check_model)
            with store.open(row.path) as f:
                for _ in check.passing(iter(lambda: f.read(READ_CHUNK_BYTES), b"")):
                    pass
            return check.summary()

        try:
            return await asyncio.to_thread(run)
        except FileNotFoundError:
            raise _not_found(row.id) from None

    def read_lines(self, row: StoredFile) -> Iterator[BatchLine]:
        """The request lines of a stored input file, parsed and checked one by one (line
        numbers as in the file, blank lines skipped); blocking reads: iterate in a worker
        thread. A line that fails its check raises ``BatchInputError`` (a file checked at
        upload has none).

        Raises:
            FileNotFoundError: its bytes are gone.
        """
        store = self._require_store()
        for number, raw in enumerate(store.lines(row.path), start=1):
            if raw.strip():
                yield parse_batch_line(raw.rstrip(b"\r\n"), number)

    async def write_output(
        self,
        workspace_id: str,
        region: str,
        purpose: Purpose,
        filename: str,
        chunks: Chunks,
        ttl_s: int,
    ) -> StoredFile:
        """Store a file a batch wrote (``batch_output``: its output or error file) and its
        row. No line checks and no quota refusal (the batch's results are kept), but its
        bytes count against the workspace's quota for later uploads.

        Args:
            region: The batch's region (recorded on the row; the bytes are on this gateway).
            chunks: The bytes (sync or async chunks; ``[]`` for an empty file).
            ttl_s: Lifetime from now (``batch.output_ttl_s``).

        Returns:
            The new row (``id`` is the file id to put on the batch).
        """
        store = self._require_store()
        file_id = completion_id("file")
        relative = store.relative_path(region, workspace_id, file_id)
        size = await self._write(store, relative, chunks, lambda c: c)
        now = self._clock()
        lines = 0  # outputs are counted by their batch, not here
        try:
            async with self._sessions() as session, session.begin():
                row = await rows.add_file(
                    session,
                    StoredFile(
                        id=file_id,
                        workspace_id=workspace_id,
                        region=region,
                        purpose=purpose,
                        filename=filename[:FILENAME_MAX],
                        bytes=size,
                        lines=lines,
                        model=None,
                        path=relative,
                        created_at=now,
                        expires_at=now + timedelta(seconds=ttl_s),
                    ),
                )
        except BaseException:
            await asyncio.to_thread(store.delete, relative)
            raise
        return row

    async def purge_expired(self, now: datetime | None = None) -> int:
        """Mark every expired file deleted and remove its bytes; the number purged. (Expired
        files are already invisible; this frees their disk and keeps the table honest.)"""
        now = now or self._clock()
        purged = 0
        while True:
            async with self._sessions() as session, session.begin():
                found = await rows.expired_files(session, now, PURGE_PAGE)
                gone = [r for r in found if await rows.mark_deleted(session, r.id, now)]
            if self._store is not None:
                for r in gone:
                    await asyncio.to_thread(self._store.delete, r.path)
            purged += len(gone)
            if len(found) < PURGE_PAGE:
                return purged

    async def sweep_orphans(self, older_than_s: float = 3600.0) -> int:
        """Remove what a killed process left in the store, untouched for ``older_than_s``: a
        temporary ``.part`` file (an upload cut short), a file whose row was never written
        (killed between the rename and the row) or is marked deleted (killed before its bytes
        went); the number removed. For an occasional clean-up (it walks the store), not every
        poll.
        """
        if self._store is None or not self._store.root.exists():
            return 0
        root = self._store.root
        cutoff = time.time() - older_than_s  # file times are the machine's

        def candidates() -> list[Path]:
            return [p for p in root.glob("*/*/*") if p.is_file() and p.stat().st_mtime < cutoff]

        found = await asyncio.to_thread(candidates)
        parts = [p for p in found if p.name.endswith(".part")]
        named = {p.name.removesuffix(".jsonl"): p for p in found if p.suffix == ".jsonl"}
        async with self._sessions() as session:
            known = await rows.undeleted_ids(session, list(named))
        doomed = parts + [p for ident, p in named.items() if ident not in known]
        for p in doomed:
            await asyncio.to_thread(p.unlink, True)
        return len(doomed)

    # --- helpers -----------------------------------------------------------------------------

    def _upload_ttl(self, expires_after_s: int | None) -> int:
        if expires_after_s is None:
            return self.limits.file_ttl_s
        if not EXPIRES_AFTER_MIN_S <= expires_after_s <= EXPIRES_AFTER_MAX_S:
            raise InvalidRequestError(
                f"'expires_after[seconds]' must lie in {EXPIRES_AFTER_MIN_S}..."
                f"{EXPIRES_AFTER_MAX_S} (1 hour to 30 days).",
                param="expires_after[seconds]",
                code="invalid_value",
            )
        return expires_after_s

    def _require_store(self) -> FileStore:
        if self._store is None:
            raise ServiceUnavailableError("This process keeps no files.", code="no_file_store")
        return self._store

    async def _write(
        self,
        store: FileStore,
        relative: str,
        chunks: Chunks,
        through: Callable[[Iterable[bytes]], Iterable[bytes]],
    ) -> int:
        """``store.write`` of ``through(chunks)`` in a worker thread (checks included)."""
        if isinstance(chunks, AsyncIterable):
            source = _blocking(chunks, asyncio.get_running_loop())
            try:
                return await asyncio.to_thread(store.write, relative, through(source))
            finally:
                aclose = getattr(chunks, "aclose", None)
                if aclose is not None:
                    await aclose()
        return await asyncio.to_thread(store.write, relative, through(chunks))


class _Sized:
    """The check of an upload stored as it is (``assistants``): its size only."""

    def __init__(self, limit_bytes: int) -> None:
        self._limit = limit_bytes
        self._bytes = 0

    def passing(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self._bytes += len(chunk)
            if self._bytes > self._limit:
                raise BatchInputError(
                    f"The file is larger than {self._limit} bytes.",
                    code="file_too_large",
                    field="file",
                )
            yield chunk
        if self._bytes == 0:
            raise BatchInputError("The file is empty.", code="empty_file", field="file")

    def summary(self) -> InputSummary:
        return InputSummary(url="", model="", lines=0, bytes=self._bytes)


def _residency(principal: Principal, inv: Inventory) -> str:
    """This gateway's region, where the caller's files are stored, if its scope allows it.

    Raises:
        PermissionDeniedError: the region (or its jurisdiction) is outside the caller's
            allowed regions or jurisdictions (``region_not_allowed``).
    """
    hints = RoutingHints(
        allowed_regions=principal.allowed_regions,
        allowed_jurisdictions=principal.allowed_jurisdictions,
    )
    region = inv.gateway_region
    if not hints.allows(region, inv.gateway_jurisdiction):
        raise PermissionDeniedError(
            f"Files are stored in this gateway's region '{region}', which this API key may "
            "not use.",
            code="region_not_allowed",
        )
    return region


def _check_model(inv: Inventory, principal: Principal, model: str, line: int) -> None:
    shown = model if len(model) <= 64 else model[:63] + "…"
    if model not in inv.models:
        raise BatchInputError(
            f"Line {line}: 'body.model' '{shown}' is not served here.",
            code="model_not_found",
            line=line,
            field="body.model",
        )
    if not principal.may_use_model(model):
        raise BatchInputError(
            f"Line {line}: this API key may not use the model '{shown}'.",
            code="model_not_allowed",
            line=line,
            field="body.model",
        )


__all__ = ["Chunks", "Files", "file_object"]
