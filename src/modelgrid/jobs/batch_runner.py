"""The batch runner: batch lines on capacity online traffic leaves idle, each answered and
billed exactly once, resumable after a crash.

One runner per gateway (``app.py`` starts it). Every ``poll_interval_s`` it claims the
batches it may run — a lease in the ``batches`` row (``lease_owner``, ``lease_until``), taken
with a conditional UPDATE, renewed while it runs them — so with several gateways on one
database each batch has one runner, and a dead gateway's batches are resumed by another (or
by itself after a restart) once the lease runs out. For each batch it holds:

- ``validating``: streams the input file once (bounded memory) checking every line (JSON,
  ``custom_id`` unique, ``url`` the batch's endpoint, one model); a bad file fails the batch
  with errors naming the line; else ``in_progress`` with ``request_counts.total``.
- ``in_progress``: lines run through ``serving.batch_lines`` at the lowest priority. Every
  ``tick_s`` the scheduler looks at each model's online load (``Capacity``): while online
  requests run on the model no batch line starts, and running lines are **preempted**
  (cancelled: free, and run again later); otherwise up to ``concurrency`` lines run, taken
  round-robin across workspaces, then across each workspace's batches, so one huge batch
  never starves another tenant's.
- A finished line's result (its output or error line) and its ledger row (``batch_id``,
  ``custom_id``, the batch price; a failed line's at zero cost) are written in ONE
  transaction, keyed by (batch, line) and by request id: after a ``kill -9`` every line has
  at most one of each, and the lines without a result run again. The lines finished within
  ``COMMIT_WINDOW_S`` share that transaction (one disk sync for many lines).
- ``cancelling`` (the API's cancel) and a passed ``expires_at``: lines in flight are stopped
  and every line without a result gets an error line (``batch_cancelled`` /
  ``batch_expired``); then, as when every line is done, ``finalizing``: the output and error
  files are written from the stored results, in line order, and the batch ends
  ``completed`` / ``cancelled`` / ``expired``.

Files' bytes live under ``batch.files_dir``; gateways that share a database on several
machines must share that folder too (a network file system). A gateway that takes the lease
of a batch whose input file is live in the database but whose bytes it cannot read fails the
batch at once with ``input_file_unreadable`` and logs the folder it looked in (never a loop
of leases, never an error per line).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from modelgrid.config import BatchSettings
from modelgrid.core.errors import ModelgridError
from modelgrid.protocol.openai.batch_input import BatchLine, parse_batch_line
from modelgrid.protocol.openai.batches import FINAL
from modelgrid.serving.batch_lines import BatchLines, LineResult
from modelgrid.storage import repositories as repo
from modelgrid.storage.filestore import FileStore
from modelgrid.storage.models import Batch, BatchResult, StoredFile
from modelgrid.tenancy.events import UsageEvent, as_row
from modelgrid.tenancy.lookup import Sessions
from modelgrid.tenancy.service import Principal

log = logging.getLogger("modelgrid.batch")

RETRYABLE = frozenset({429, 500, 502, 503, 504})
MAX_ATTEMPTS = 3
PAGE = 500
IDLE_POLL_S = 2.0  # an idle runner's look for batches (created elsewhere, or to resume)
COMMIT_WINDOW_S = 0.01  # finished lines gathered into one transaction


class OutputFiles(Protocol):
    """Where a batch's output and error files go (``control.files.Files``)."""

    async def write_output(
        self,
        workspace_id: str,
        region: str,
        purpose: Literal["batch_output"],
        filename: str,
        chunks: Iterator[bytes],
        ttl_s: int,
    ) -> StoredFile: ...


class Capacity(Protocol):
    def online_busy(self, model: str, batch_running: int) -> bool:
        """Whether online requests are using ``model`` now (``batch_running``: this
        runner's own lines of it in flight, to tell them apart)."""
        ...


def _aware(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Active:
    """A batch this runner holds, in memory."""

    id: str
    workspace_id: str
    api_key_id: str
    model: str
    endpoint: str
    input_path: str
    expires_at: datetime
    status: str = "validating"
    principal: Principal | None = None
    done: set[int] = field(default_factory=set)
    retry: deque[tuple[int, BatchLine, int]] = field(default_factory=deque)
    running: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    recording: set[int] = field(default_factory=set)  # answered, waiting for their commit
    reader: Iterator[BatchLine] | None = None
    exhausted: bool = False
    stopping: bool = False


class BatchRunner:
    """Runs the batches of one gateway (see the module docstring).

    Args:
        sessions: The database.
        store: Input files' bytes.
        outputs: Stores output and error files.
        lines: Runs one line (over a ``BatchMeter``).
        principal_of_key: The principal a batch runs as (its creator's key, as it is now).
        capacity: Online load per model.
        settings: Concurrency, leases, output lifetime.
        region: Where this gateway stores files.
        tick_s: How often the scheduler looks at online load (preemption latency).
    """

    def __init__(
        self,
        sessions: Sessions,
        store: FileStore,
        outputs: OutputFiles,
        lines: BatchLines,
        principal_of_key: Callable[[str], Awaitable[Principal]],
        capacity: Capacity,
        settings: BatchSettings,
        *,
        region: str,
        tick_s: float = 0.02,
    ) -> None:
        self._sessions = sessions
        self._store = store
        self._outputs = outputs
        self._lines = lines
        self._principal_of_key = principal_of_key
        self._capacity = capacity
        self._settings = settings
        self._region = region
        self._tick_s = tick_s
        self.owner = f"gw-{secrets.token_hex(6)}"
        self.active: dict[str, Active] = {}
        self._next_poll = 0.0
        self._turn = 0  # round-robin start over workspaces
        self.lines_started = 0  # attempts, preempted ones included
        self._finished: list[_Finished] = []
        self._commit_task: asyncio.Task[None] | None = None
        self._stopped = False
        self._wake: asyncio.Event | None = None

    # --- the loop ------------------------------------------------------------------------

    async def run_forever(self) -> None:
        """Rounds every ``tick_s`` while it holds batches; when it holds none, it looks for
        work every ``IDLE_POLL_S`` (or at once when ``wake`` says a batch was created), so
        an idle runner costs the gateway's requests nothing."""
        self._wake = asyncio.Event()
        while not self._stopped:
            try:
                await self.tick()
            except Exception:
                log.exception("batch runner round failed")
            if self.active:
                await asyncio.sleep(self._tick_s)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), IDLE_POLL_S)
            self._wake.clear()
            self._next_poll = 0.0  # look for work now

    def wake(self) -> None:
        """A batch was created: look for work now, not at the next idle poll."""
        if self._wake is not None:
            self._wake.set()

    async def aclose(self) -> None:
        """Stop: the loop ends after its current round (never cut inside a database call),
        lines in flight are cancelled (free; they run again under the next lease) and the
        answers already in hand are committed."""
        self._stopped = True
        if self._wake is not None:
            self._wake.set()
        tasks = [t for a in self.active.values() for t in a.running.values()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._commit_task is not None:
            await asyncio.gather(self._commit_task, return_exceptions=True)

    async def tick(self) -> None:
        """One round: claim and advance batches (every ``poll_interval_s``), then schedule."""
        if time.monotonic() >= self._next_poll:
            self._next_poll = time.monotonic() + self._settings.poll_interval_s
            await self._claim()
            for a in list(self.active.values()):
                await self._advance(a)
        self._schedule()

    def running(self, model: str) -> int:
        return sum(len(a.running) for a in self.active.values() if a.model == model)

    # --- leases ----------------------------------------------------------------------------

    async def _claim(self) -> None:
        """Take or renew the lease of every unfinished batch that is free or ours."""
        now = _now()
        until = now + timedelta(seconds=self._settings.lease_s)
        unfinished = Batch.status.not_in(FINAL)
        async with self._sessions() as session, session.begin():
            # One conditional UPDATE takes every free, expired or own lease at once (a row
            # another runner holds is left alone), then the ones now ours are read back.
            await session.execute(
                update(Batch)
                .where(
                    unfinished,
                    (Batch.lease_owner.is_(None))
                    | (Batch.lease_owner == self.owner)
                    | (Batch.lease_until < now),
                )
                .values(lease_owner=self.owner, lease_until=until)
            )
            mine = select(Batch.id).where(unfinished, Batch.lease_owner == self.owner)
            held = set((await session.execute(mine)).scalars())
        for lost in [b for b in self.active if b not in held]:
            await self._drop(self.active.pop(lost))
        for batch_id in held - set(self.active):
            b = await self._load(batch_id)
            if b is None:
                continue
            file = await self._file(b.input_file_id)
            if file is not None and file.deleted_at is None and not self._store.exists(file.path):
                await self._unreadable(batch_id, file.id)
                continue
            self.active[batch_id] = Active(
                id=b.id,
                workspace_id=b.workspace_id,
                api_key_id=b.api_key_id,
                model=b.model,
                endpoint=b.endpoint,
                input_path=file.path if file is not None else "",
                expires_at=_aware(b.expires_at),
                status=b.status,
                done=await self._done_lines(b.id),
            )

    async def _unreadable(self, batch_id: str, file_id: str) -> None:
        """Fail a batch whose live input file's bytes are not in this gateway's files folder
        (the gateways do not share ``batch.files_dir``, or the bytes were lost)."""
        log.error(
            "batch %s: the bytes of its input file %s are not under this gateway's files"
            " directory %s; every gateway sharing the database must share batch.files_dir"
            " (docs/gateways.md). The batch fails.",
            batch_id,
            file_id,
            self._store.root,
        )
        async with self._sessions() as session, session.begin():
            row = await session.get(Batch, batch_id)
            if row is None or row.status in FINAL or row.lease_owner != self.owner:
                return
            row.status, row.failed_at = "failed", _now()
            row.lease_owner, row.lease_until = None, None
            row.errors = [
                {
                    "code": "input_file_unreadable",
                    "message": f"The input file {file_id} cannot be read by the gateway that"
                    " took this batch: the gateways do not share their files directory.",
                    "param": "input_file_id",
                    "line": None,
                }
            ]

    async def _drop(self, a: Active) -> None:
        tasks = list(a.running.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        a.running.clear()

    async def _file(self, file_id: str) -> StoredFile | None:
        async with self._sessions() as session:
            f: StoredFile | None = await session.get(StoredFile, file_id)
            return f

    async def _done_lines(self, batch_id: str) -> set[int]:
        async with self._sessions() as session:
            q = select(BatchResult.line).where(BatchResult.batch_id == batch_id)
            return set((await session.execute(q)).scalars())

    async def _load(self, batch_id: str) -> Batch | None:
        async with self._sessions() as session:
            b: Batch | None = await session.get(Batch, batch_id)
            return b

    # --- a batch's life ----------------------------------------------------------------------

    async def _advance(self, a: Active) -> None:
        """Move a held batch along: validate, notice a cancel or the deadline, finish."""
        b = await self._load(a.id)
        if b is None or b.status in FINAL:
            self.active.pop(a.id, None)
            return
        a.status = b.status
        if b.status == "validating":
            await self._validate(a, b)
            return
        if b.status == "cancelling":
            await self._stop(a, "cancelled", "batch_cancelled", "The batch was cancelled.")
            return
        if b.status == "in_progress" and _now() >= a.expires_at:
            await self._stop(
                a, "expired", "batch_expired", "The batch did not finish in its completion window."
            )
            return
        if b.status == "finalizing" or (
            b.status == "in_progress" and a.exhausted and not a.running and not a.retry
        ):
            await self._finalize(a, "completed")

    async def _validate(self, a: Active, b: Batch) -> None:
        """Start a new batch (its input was checked whole when it was created): ``in_progress``,
        or ``failed`` if the input file's bytes are gone."""
        gone = not a.input_path or not self._store.exists(a.input_path)
        now = _now()
        async with self._sessions() as session, session.begin():
            row = await session.get(Batch, a.id)
            if row is None or row.status != "validating":
                return
            if gone:
                row.status, row.failed_at, row.lease_owner = "failed", now, None
                row.errors = [
                    {
                        "code": "input_file_gone",
                        "message": f"The input file {b.input_file_id} no longer exists.",
                        "param": "input_file_id",
                        "line": None,
                    }
                ]
            else:
                row.status, row.in_progress_at = "in_progress", now
                a.status = "in_progress"
        if gone:
            self.active.pop(a.id, None)

    async def _stop(self, a: Active, status: str, code: str, message: str) -> None:
        """Stop the lines in flight; every line without a result gets an error line."""
        a.stopping = True
        await self._drop(a)
        if self._commit_task is not None:  # lines answered before the stop keep their answer
            await asyncio.shield(self._commit_task)
        a.retry.clear()
        a.done = await self._done_lines(a.id)
        pending: list[BatchResult] = []
        for line in _lines(self._store, a.input_path):
            no = line.line
            if no in a.done:
                continue
            out = _output_line(f"{a.id}-{no}", line.custom_id, None, code, message)
            pending.append(
                BatchResult(
                    batch_id=a.id,
                    line=no,
                    custom_id=line.custom_id,
                    ok=False,
                    output=out,
                )
            )
            if len(pending) >= PAGE:
                await self._add_results(pending)
                pending = []
        await self._add_results(pending)
        await self._finalize(a, status)

    async def _add_results(self, rows: list[BatchResult]) -> None:
        if not rows:
            return
        async with self._sessions() as session, session.begin():
            session.add_all(rows)

    async def _finalize(self, a: Active, status: str) -> None:
        """Write the output and error files from the stored results, then end the batch."""
        async with self._sessions() as session, session.begin():
            row = await session.get(Batch, a.id)
            if row is None or row.status in FINAL:
                self.active.pop(a.id, None)
                return
            if row.status != "finalizing":
                row.status, row.finalizing_at = "finalizing", _now()
        output_id = await self._write_file(a, ok=True)
        error_id = await self._write_file(a, ok=False)
        now = _now()
        async with self._sessions() as session, session.begin():
            row = await session.get(Batch, a.id)
            if row is None:
                return
            row.output_file_id, row.error_file_id = output_id, error_id
            row.status = status
            setattr(row, f"{status}_at", now)
            row.lease_owner, row.lease_until = None, None
        self.active.pop(a.id, None)
        log.info("batch %s %s", a.id, status)

    async def _write_file(self, a: Active, *, ok: bool) -> str | None:
        """The batch's output (``ok``) or error file from its results, page by page; ``None``
        when there is no such line."""
        async with self._sessions() as session:
            count = select(func.count()).where(BatchResult.batch_id == a.id, BatchResult.ok.is_(ok))
            if not (await session.execute(count)).scalar():
                return None

        # The results are paged from the database into a spool file first, and the store reads
        # that in its thread: a thread that had to come back to the event loop for each page
        # deadlocked a shutdown that cancelled it (the loop waits for its threads).
        spool = tempfile.TemporaryFile()  # noqa: SIM115 (closed below, after the write)
        try:
            after = 0
            while True:
                async with self._sessions() as session:
                    q = (
                        select(BatchResult.line, BatchResult.output)
                        .where(
                            BatchResult.batch_id == a.id,
                            BatchResult.ok.is_(ok),
                            BatchResult.line > after,
                        )
                        .order_by(BatchResult.line)
                        .limit(PAGE)
                    )
                    page = list((await session.execute(q)).all())
                if not page:
                    break
                after = page[-1][0]
                spool.write(b"".join(output.encode() + b"\n" for _, output in page))
            spool.seek(0)
            name = f"{a.id}_{'output' if ok else 'error'}.jsonl"
            row = await self._outputs.write_output(
                a.workspace_id,
                self._region,
                "batch_output",
                name,
                iter(lambda: spool.read(1 << 20), b""),
                self._settings.output_ttl_s,
            )
        finally:
            spool.close()
        return row.id

    # --- scheduling --------------------------------------------------------------------------

    def _schedule(self) -> None:
        """Preempt where online traffic runs; start lines where capacity is idle, fairly."""
        if self._stopped:
            return
        runnable = [a for a in self.active.values() if not a.stopping and a.status == "in_progress"]
        by_model: dict[str, list[Active]] = {}
        for a in runnable:
            by_model.setdefault(a.model, []).append(a)
        for model, batches in by_model.items():
            running = sum(len(a.running) for a in batches)
            if self._preempt(model, batches, running):
                continue
            free = self._settings.concurrency - running
            if free > 0:
                self._start(batches, free)

    def _preempt(self, model: str, batches: list[Active], running: int) -> bool:
        """Stop the running lines of ``model`` if online requests use it; whether they do."""
        if not self._capacity.online_busy(model, running):
            return False
        for a in batches:
            for no, task in list(a.running.items()):
                if no not in a.recording:  # answered lines are only being written
                    task.cancel()  # back to ``retry`` (its task's finally)
        return True

    def attempt_started(self, model: str) -> None:
        """A request attempt started on ``model`` (``Router.on_begin``): if it is online
        traffic, stop this runner's lines of the model now rather than at the next tick."""
        batches = [a for a in self.active.values() if a.model == model and a.running]
        if batches:
            self._preempt(model, batches, sum(len(a.running) for a in batches))

    def _start(self, batches: list[Active], free: int) -> None:
        """Start up to ``free`` lines, one per workspace in turn, then per batch in turn."""
        by_ws: dict[str, deque[Active]] = {}
        for a in sorted(batches, key=lambda a: a.id):
            by_ws.setdefault(a.workspace_id, deque()).append(a)
        order = sorted(by_ws)
        self._turn = (self._turn + 1) % max(len(order), 1)
        order = order[self._turn :] + order[: self._turn]
        while free > 0 and order:
            for ws in list(order):
                queue = by_ws[ws]
                started = False
                for _ in range(len(queue)):
                    a = queue[0]
                    queue.rotate(-1)
                    nxt = self._next_line(a)
                    if nxt is not None:
                        self._launch(a, *nxt)
                        started = True
                        break
                if not started:
                    order.remove(ws)
                    continue
                free -= 1
                if free == 0:
                    return

    def _next_line(self, a: Active) -> tuple[int, BatchLine, int] | None:
        if a.retry:
            return a.retry.popleft()
        if a.exhausted:
            return None
        if a.reader is None:
            a.reader = _lines(self._store, a.input_path)
        for line in a.reader:
            if line.line not in a.done and line.line not in a.running:
                return line.line, line, 1
        a.exhausted = True
        return None

    def _launch(self, a: Active, no: int, line: BatchLine, attempt: int) -> None:
        task = asyncio.get_running_loop().create_task(
            self._run_line(a, no, line, attempt), name=f"{a.id}:{no}"
        )
        a.running[no] = task
        self.lines_started += 1

    async def _run_line(self, a: Active, no: int, line: BatchLine, attempt: int) -> None:
        requeue = True
        try:
            if a.principal is None:
                a.principal = await self._principal_of_key(a.api_key_id)
            request_id = f"{a.id}-{no}"
            result = await self._lines.run(a.principal, a.endpoint, line.body, request_id)
            if not result.ok and result.status_code in RETRYABLE and attempt < MAX_ATTEMPTS:
                await asyncio.sleep(0.5 * attempt)
                a.retry.append((no, line, attempt + 1))
                requeue = False
                return
            await self._record(a, no, line, result)
            requeue = False
        except ModelgridError as exc:  # the key was revoked or expired meanwhile
            await self._record(a, no, line, _refused(exc))
            requeue = False
        except Exception:  # a fault of ours: tried again, then an error line (never a loop)
            log.exception("batch %s line %d failed (attempt %d)", a.id, no, attempt)
            if attempt < MAX_ATTEMPTS:
                a.retry.append((no, line, attempt + 1))
            else:
                fault = ModelgridError(
                    "The server had an error while processing this line.", code="internal_error"
                )
                await self._record(a, no, line, _refused(fault))
            requeue = False
        finally:
            a.running.pop(no, None)
            if requeue and not a.stopping:
                a.retry.appendleft((no, line, attempt))  # preempted: runs again, free

    async def _record(self, a: Active, no: int, line: BatchLine, r: LineResult) -> None:
        """Queue the line's result, ledger row and counters for the next group commit and wait
        for it (``_commit``): one transaction holds them all, or none."""
        request_id = f"{a.id}-{no}"
        usage = r.usage
        if usage is not None:
            usage = replace(usage, batch_id=a.id, custom_id=line.custom_id)
            if not r.ok:
                usage = replace(usage, cost_micros=0)  # failed lines are free
        out = _output_line(request_id, line.custom_id, r, None, None)
        a.recording.add(no)
        self._finished.append(_Finished(a.id, no, line.custom_id, r.ok, out, usage))
        if self._commit_task is None:
            self._commit_task = asyncio.get_running_loop().create_task(self._commit())
        try:
            await asyncio.shield(self._commit_task)
        finally:
            a.recording.discard(no)
        a.done.add(no)

    async def _commit(self) -> None:
        """Write the finished lines gathered over ``COMMIT_WINDOW_S`` in one transaction (one
        fsync for many lines); a line already answered (another runner's, before a lost lease)
        makes the group fall back to one transaction a line, where it alone is dropped."""
        await asyncio.sleep(COMMIT_WINDOW_S)
        group, self._finished, self._commit_task = self._finished, [], None
        try:
            await self._write(group)
        except IntegrityError:
            for item in group:
                try:
                    await self._write([item])
                except IntegrityError:
                    log.warning(
                        "batch %s line %d was answered already; this answer is dropped",
                        item.batch_id,
                        item.line,
                    )

    async def _write(self, group: list[_Finished]) -> None:
        totals: dict[str, list[int]] = {}
        for f in group:
            t = totals.setdefault(f.batch_id, [0, 0, 0, 0, 0])
            u = f.usage
            t[0 if f.ok else 1] += 1
            if u is not None:
                t[2] += u.prompt_tokens
                t[3] += u.completion_tokens
                t[4] += u.cost_micros
        async with self._sessions() as session, session.begin():
            session.add_all(
                BatchResult(
                    batch_id=f.batch_id,
                    line=f.line,
                    custom_id=f.custom_id,
                    ok=f.ok,
                    output=f.output,
                )
                for f in group
            )
            await session.flush()
            await repo.insert_usage(session, [as_row(f.usage) for f in group if f.usage])
            for batch_id, (ok, failed, prompt, completion, cost) in totals.items():
                await session.execute(
                    update(Batch)
                    .where(Batch.id == batch_id)
                    .values(
                        completed=Batch.completed + ok,
                        failed=Batch.failed + failed,
                        prompt_tokens=Batch.prompt_tokens + prompt,
                        completion_tokens=Batch.completion_tokens + completion,
                        cost_micros=Batch.cost_micros + cost,
                    )
                )


@dataclass(frozen=True, slots=True)
class _Finished:
    batch_id: str
    line: int
    custom_id: str
    ok: bool
    output: str
    usage: UsageEvent | None


def _lines(store: FileStore, path: str) -> Iterator[BatchLine]:
    """The input file's request lines (numbered as in the file, blank lines skipped),
    parsed and checked as at upload (``protocol.openai.batch_input``)."""
    for no, raw in enumerate(store.lines(path), start=1):
        if raw.strip():
            yield parse_batch_line(raw.rstrip(b"\r\n"), no)


def _output_line(
    request_id: str,
    custom_id: str,
    result: LineResult | None,
    code: str | None,
    message: str | None,
) -> str:
    """One line of the output or error file (OpenAI's Batch output format)."""
    obj = {
        "id": f"batch_req_{request_id}",
        "custom_id": custom_id,
        "response": None
        if result is None
        else {"status_code": result.status_code, "request_id": request_id, "body": result.body},
        "error": None if code is None else {"code": code, "message": message},
    }
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _refused(exc: ModelgridError) -> LineResult:
    from modelgrid.protocol.openai.errors import error_body

    return LineResult(exc.status, error_body(exc.message, exc.type, exc.param, exc.code), None)


__all__ = ["Active", "BatchRunner", "Capacity"]
