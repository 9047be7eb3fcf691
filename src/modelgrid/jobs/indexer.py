"""The indexer: documents of knowledge bases chunked, embedded and written, in the background.

A document added through the control plane waits ``pending`` with its extracted sections.
The indexer takes it under a lease in its row (``lease_owner``, ``lease_until``; renewed as it
goes, so a gateway that died leaves it to another, or to itself once restarted: its owner id
is stable across restarts of the same gateway, so it re-picks its own unfinished documents at
once) and:

1. marks it ``indexing``;
2. chunks each section (``knowledge.chunking``) with token counts from the knowledge base's
   embedding model (the routed replica's tokenizer), within what the model reads;
3. embeds the chunks ``embed_batch`` at a time through the metered, routed call
   (``serving.knowledge.KnowledgeEmbedder``: billed to the key that added the document,
   residency-checked), recording progress (``chunks_done`` of ``chunks_total``) after each;
4. writes every chunk, its text entry and vector and marks the document ``ready`` in one
   transaction of the index (``KnowledgeIndex.write_document``).

A failure the document causes (too many chunks, a region or model the key may not use, a
budget spent, the key gone) marks it ``failed`` with the reason; a passing one (no replica,
a rate limit, an engine error) leaves it ``pending`` for another try after ``RETRY_S``.
Nothing is written for a document until step 4, so a failed, deleted or interrupted one has
no chunk. ``aclose`` stops the loop between steps: the step in flight (one count, one embed,
one transaction) finishes; the document is re-picked later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence, Set
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update

from modelgrid.config import KnowledgeSettings
from modelgrid.core.errors import (
    AuthenticationError,
    DocumentError,
    LeaseLostError,
    ModelgridError,
    ModelNotFoundError,
    QuotaExceededError,
    RateLimitError,
    ServiceUnavailableError,
)
from modelgrid.knowledge.chunking import Chunk, ChunkPlan, chunk_sections
from modelgrid.knowledge.index import KnowledgeIndex
from modelgrid.serving.knowledge import KnowledgeEmbedder
from modelgrid.storage.models import KnowledgeBase, KnowledgeDocument
from modelgrid.tenancy.lookup import Sessions
from modelgrid.tenancy.service import Principal

log = logging.getLogger("modelgrid.indexer")

RETRY_S = 10.0
COUNT_BATCH = 512
UNFINISHED = ("pending", "indexing")


def _now() -> datetime:
    return datetime.now(UTC)


class Indexer:
    """See the module docstring.

    Args:
        sessions: The database.
        index: Where chunks go.
        embedder: Counts and metered embeddings (over an ``IndexingMeter``).
        principal_of_key: The principal indexing is billed to (the key that added the
            document, as it is now).
        settings: Batch size, poll interval, lease, limits.
        owner: This gateway's lease owner id (stable across its restarts).
    """

    def __init__(
        self,
        sessions: Sessions,
        index: KnowledgeIndex,
        embedder: KnowledgeEmbedder,
        principal_of_key: Callable[[str], Awaitable[Principal]],
        settings: KnowledgeSettings,
        *,
        owner: str,
    ) -> None:
        self._sessions = sessions
        self._store = index
        self._embedder = embedder
        self._principal_of_key = principal_of_key
        self.settings = settings
        self.owner = owner[:64]
        self._stopped = False
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look for work now (a document was added)."""
        self._wake.set()

    async def run_forever(self) -> None:
        """Index until ``aclose``: up to ``settings.indexing_concurrency`` documents at once,
        each slot going to the oldest unfinished document of a workspace that has none being
        indexed here, else to the oldest one; no workspace holds more than all slots but one
        (so a workspace's large documents share the replicas with the others' documents,
        which find a slot free, instead of holding them up for their whole length).
        Returns once every document in flight has stopped between two steps."""
        running: dict[asyncio.Task[None], tuple[str, str]] = {}  # document, workspace
        try:
            while not self._stopped:
                try:
                    while not self._stopped and len(running) < self.settings.indexing_concurrency:
                        held = Counter(ws for _, ws in running.values())
                        most = max(1, self.settings.indexing_concurrency - 1)
                        full = {ws for ws, n in held.items() if n >= most}
                        claimed = await self._claim(
                            set(held), {doc for doc, _ in running.values()}, full
                        )
                        if claimed is None:
                            break
                        task = asyncio.create_task(
                            self._index_one(claimed[0]), name=f"index-{claimed[0]}"
                        )
                        running[task] = claimed
                except Exception:
                    log.exception("indexing round failed; trying again")
                if self._stopped:
                    return
                woken = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait(
                    [*running, woken],
                    timeout=self.settings.poll_interval_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                woken.cancel()
                self._wake.clear()
                for task in [t for t in running if t.done()]:
                    doc_id, _ = running.pop(task)
                    if not task.cancelled() and task.exception() is not None:
                        log.error("indexing %s failed", doc_id, exc_info=task.exception())
                        with contextlib.suppress(Exception):  # retried after RETRY_S, not now
                            await self._release(doc_id, waiting="An internal error; retrying.")
        finally:
            await asyncio.gather(*running, return_exceptions=True)  # each stops between steps

    async def aclose(self) -> None:
        """Stop after the step in flight (``run_forever`` returns)."""
        self._stopped = True
        self._wake.set()

    async def tick(self) -> bool:
        """Index one unfinished document if one is free. Returns whether one was taken."""
        claimed = await self._claim()
        if claimed is None:
            return False
        await self._index_one(claimed[0])
        return True

    # --- leases ------------------------------------------------------------------------------

    async def _claim(
        self,
        busy: Set[str] = frozenset(),
        running: Set[str] = frozenset(),
        full: Set[str] = frozenset(),
    ) -> tuple[str, str] | None:
        """Lease the oldest free unfinished document, one of a workspace not in ``busy`` if
        there is one, never one of ``running`` (indexed here now) nor of a workspace in
        ``full`` (holding its share of the slots): ``(document, workspace)``."""
        now = _now()
        free = or_(  # a pending document of ours waits for its retry time (``_release``)
            KnowledgeDocument.lease_owner.is_(None),
            KnowledgeDocument.lease_until < now,
            (KnowledgeDocument.lease_owner == self.owner)
            & (KnowledgeDocument.status == "indexing"),
        )
        conds = [KnowledgeDocument.status.in_(UNFINISHED), free]
        if running:
            conds.append(KnowledgeDocument.id.not_in(sorted(running)))
        if full:
            conds.append(KnowledgeDocument.workspace_id.not_in(sorted(full)))
        rounds = [[KnowledgeDocument.workspace_id.not_in(sorted(busy))], []] if busy else [[]]
        async with self._sessions() as session, session.begin():
            for extra in rounds:
                candidates = (
                    await session.execute(
                        select(KnowledgeDocument.id, KnowledgeDocument.workspace_id)
                        .where(*conds, *extra)
                        .order_by(KnowledgeDocument.created_at)
                        .limit(5)
                    )
                ).all()
                for doc_id, workspace_id in candidates:
                    taken = await session.execute(
                        update(KnowledgeDocument)
                        .where(KnowledgeDocument.id == doc_id, *conds)
                        .values(
                            lease_owner=self.owner,
                            lease_until=now + timedelta(seconds=self.settings.lease_s),
                            status="indexing",
                            error=None,
                        )
                    )
                    if taken.rowcount:
                        return str(doc_id), str(workspace_id)
        return None

    async def _progress(self, doc_id: str, **values: Any) -> None:
        """Record progress and renew the lease; ``LeaseLostError`` if the document is gone or no
        longer ours (deleted meanwhile)."""
        now = _now()
        async with self._sessions() as session, session.begin():
            done = await session.execute(
                update(KnowledgeDocument)
                .where(
                    KnowledgeDocument.id == doc_id,
                    KnowledgeDocument.lease_owner == self.owner,
                    KnowledgeDocument.status == "indexing",
                )
                .values(lease_until=now + timedelta(seconds=self.settings.lease_s), **values)
            )
        if not done.rowcount:
            raise LeaseLostError("The document was deleted, or another indexer holds it.")

    async def _release(
        self, doc_id: str, *, failed: str | None = None, waiting: str | None = None
    ) -> None:
        """Mark the document ``failed`` with the reason, or ``pending`` again for another
        try in ``RETRY_S`` (``waiting``: why, shown as its ``error`` meanwhile)."""
        values: dict[str, Any]
        if failed is not None:
            values = {
                "status": "failed",
                "error": failed[:2000],
                "lease_owner": None,
                "lease_until": None,
                "sections": None,
            }
        else:  # try again after RETRY_S (the lease keeps others off until then)
            values = {
                "status": "pending",
                "error": waiting[:2000] if waiting else None,
                "lease_until": _now() + timedelta(seconds=RETRY_S),
            }
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(KnowledgeDocument)
                .where(KnowledgeDocument.id == doc_id, KnowledgeDocument.lease_owner == self.owner)
                .values(**values)
            )

    # --- one document ------------------------------------------------------------------------

    async def _index_one(self, doc_id: str) -> None:
        async with self._sessions() as session:
            doc: KnowledgeDocument | None = await session.get(KnowledgeDocument, doc_id)
            kb: KnowledgeBase | None = (
                await session.get(KnowledgeBase, doc.knowledge_base_id) if doc else None
            )
        if doc is None or kb is None:
            return
        try:
            await self._index(doc, kb)
        except LeaseLostError:
            return
        except DocumentError as exc:
            await self._release(doc_id, failed=str(exc))
        except (QuotaExceededError, AuthenticationError) as exc:
            await self._release(doc_id, failed=exc.message)
        except (RateLimitError, ModelNotFoundError, ServiceUnavailableError) as exc:
            # a limit, or the model not (yet) served: while a gateway starts, its models load
            # after the indexer's first round
            await self._release(doc_id, waiting=exc.message)
        except ModelgridError as exc:
            if 400 <= exc.status < 500:
                await self._release(doc_id, failed=exc.message)
            else:
                log.warning("indexing %s waits: %s", doc_id, exc.message)
                await self._release(doc_id, waiting=exc.message)

    async def _index(self, doc: KnowledgeDocument, kb: KnowledgeBase) -> None:
        principal = await self._principal_of_key(doc.api_key_id)
        model = kb.embedding_model
        max_input, dims = self._embedder.limits(model)
        if max_input <= 0 or dims <= 0:
            raise ServiceUnavailableError(f"The model '{model}' is still loading.")
        plan = (  # a vector store's file may have its own chunking
            ChunkPlan(doc.chunk_tokens, doc.chunk_overlap or 0)
            if doc.chunk_tokens
            else ChunkPlan(kb.chunk_tokens, kb.chunk_overlap)
        ).fitted(max_input)
        chunks = await self._chunk(principal, model, doc.sections or [], plan)
        if not chunks:
            raise DocumentError("The document holds no text to index.")
        if len(chunks) > self.settings.max_document_chunks:
            raise DocumentError(
                f"The document gives {len(chunks)} chunks; the most allowed is "
                f"{self.settings.max_document_chunks}."
            )
        await self._progress(doc.id, chunks_total=len(chunks), chunks_done=0, tokens=0)
        vectors: list[bytes] = []
        tokens = 0
        step = self.settings.embed_batch
        for i in range(0, len(chunks), step):
            if self._stopped:
                raise LeaseLostError("The indexer is stopping.")
            part = chunks[i : i + step]
            got, used = await self._embedder.embed(principal, model, [_embedded(c) for c in part])
            vectors.extend(got)
            tokens += used
            await self._progress(doc.id, chunks_done=len(vectors), tokens=tokens)
        if not await self._store.write_document(
            doc.workspace_id, kb.id, doc.id, chunks, vectors, dims
        ):
            raise LeaseLostError("The document was deleted meanwhile.")
        log.info("indexed %s: %d chunks, %d tokens", doc.id, len(chunks), tokens)

    async def _chunk(
        self, principal: Principal, model: str, sections: Sequence[Any], plan: ChunkPlan
    ) -> list[Chunk]:
        overhead = (await self._embedder.count(principal, model, [""]))[0]

        async def count(texts: list[str]) -> list[int]:
            if self._stopped:
                raise LeaseLostError("The indexer is stopping.")
            counts: list[int] = []
            for i in range(0, len(texts), COUNT_BATCH):
                got = await self._embedder.count(principal, model, texts[i : i + COUNT_BATCH])
                counts.extend(max(0, n - overhead) for n in got)
            return counts

        pairs = [(str(s.get("heading", "")), str(s.get("text", ""))) for s in sections]
        return await chunk_sections(pairs, count, plan, overhead)  # DocumentError: unfit


def _embedded(chunk: Chunk) -> str:
    """What is embedded for a chunk: its heading path, then its text."""
    return f"{chunk.heading}\n{chunk.text}" if chunk.heading else chunk.text


__all__ = ["Indexer"]
