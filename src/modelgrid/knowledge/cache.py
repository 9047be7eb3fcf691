"""The lifecycle shared by the process's per-knowledge-base indexes (``knowledge.ann``'s IVF
index, ``knowledge.lexical``'s BM25 postings): built lazily off the event loop, fresh across
processes by the knowledge base's revision, least-recently-used eviction under a cap.

**Freshness.** Every write and delete of a knowledge base's chunks bumps its row in the
store's revision table in the same transaction (``knowledge.revisions``; ``Source.state``: one
primary-key read per search, which also gives the knowledge base's chunk count). A search
whose held index is at another revision gets ``None`` from ``current`` (the caller answers
from the store) and starts an update in the background: ``_build`` from scratch, or
``_refresh`` of the held one (the subclass reads what changed). Several gateways on one
database each keep their own indexes and see each other's writes by the revision.

**Never blocking a search.** A knowledge base below ``min_items`` chunks is never indexed; a
build or refresh runs as a task (its heavy part in a worker thread); until it is done,
searches get ``None``. A failed build is logged and not retried for ``RETRY_S``.

**Memory.** At most ``max_items`` (the subclass's unit: vectors, chunks) are held over all of
one cache's indexes; the least recently searched are evicted to make room, and a knowledge
base larger than the cap is never indexed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Generic, Protocol, TypeVar

logger = logging.getLogger(__name__)

RETRY_S = 60.0  # after a failed build, the store answers for this long before trying again

Key = tuple[str, ...]  # workspace, knowledge base, then what else tells indexes apart
H = TypeVar("H")


class Source(Protocol):
    """The freshness read of a store."""

    async def state(self, knowledge_base_id: str) -> tuple[int, int] | None:
        """``(revision, chunks)`` of the knowledge base (``None``: never written)."""
        ...


S = TypeVar("S", bound=Source)


class RevisionCache(Generic[H, S]):
    """See the module docstring. One per process and kind; methods run on the event loop.

    A kind of index gives ``min_items`` (knowledge bases with fewer chunks are never indexed)
    and ``max_items`` (most items, in ``_size``'s unit, held over all its indexes).

    Args:
        name: What the logs and tasks call an index of this cache.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._graphs: OrderedDict[Key, H] = OrderedDict()
        self._busy: dict[Key, asyncio.Task[None]] = {}
        self._failed_until: dict[Key, float] = {}
        # counts, for tests and metrics: indexes built from scratch, refreshed, searches served
        self.builds = 0
        self.refreshes = 0
        self.served = 0

    # --- what a kind of index implements ----------------------------------------------------

    @property
    def min_items(self) -> int:
        raise NotImplementedError

    @property
    def max_items(self) -> int:
        raise NotImplementedError

    def _size(self, held: H) -> int:
        raise NotImplementedError

    def _revision(self, held: H) -> int:
        raise NotImplementedError

    async def _build(self, source: S, key: Key, revision: int) -> H | None:
        """A new index of the knowledge base at ``revision`` (``None``: over the cap)."""
        raise NotImplementedError

    async def _refresh(self, source: S, key: Key, held: H, revision: int) -> H | None:
        """``held`` brought to ``revision`` (or rebuilt; ``None``: over the cap)."""
        raise NotImplementedError

    # --- shared -------------------------------------------------------------------------------

    @property
    def items(self) -> int:
        """Items held over all indexes."""
        return sum(self._size(g) for g in self._graphs.values())

    @property
    def building(self) -> bool:
        """Whether a build or refresh is in progress."""
        return bool(self._busy)

    def _holds(self, key: Key) -> bool:
        return key in self._graphs

    async def current(self, source: S, key: Key) -> H | None:
        """The index of ``key`` (workspace, knowledge base, ...) at the knowledge base's
        current revision, counted as served — or ``None`` (the caller answers from the store),
        starting its build or refresh where one is due."""
        kb = key[1]
        state = await source.state(kb)
        if state is None or state[1] < self.min_items:
            self._graphs.pop(key, None)
            return None
        revision, chunks = state
        graph = self._graphs.get(key)
        if graph is not None and self._revision(graph) == revision:
            self._graphs.move_to_end(key)
            self.served += 1
            return graph
        if (
            key not in self._busy
            and chunks <= self.max_items
            and self._failed_until.get(key, 0.0) <= time.monotonic()
        ):
            task = asyncio.create_task(self._update(source, key), name=f"{self._name}-{kb}")
            self._busy[key] = task
            task.add_done_callback(lambda _t: self._busy.pop(key, None))
        return None

    async def wait(self) -> None:
        """Until every build and refresh in progress has ended (tests, shutdown)."""
        while self._busy:
            await asyncio.gather(*self._busy.values(), return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._busy.values()):
            task.cancel()
        await self.wait()
        self._graphs.clear()

    async def _update(self, source: S, key: Key) -> None:
        kb = key[1]
        try:
            state = await source.state(kb)  # before the chunks: they are at least this new
            if state is None:
                return
            old = self._graphs.get(key)
            if old is None:
                graph = await self._build(source, key, state[0])
            else:
                graph = await self._refresh(source, key, old, state[0])
            self._graphs.pop(key, None)
            if graph is None:
                return
            self._make_room(self._size(graph))
            self._graphs[key] = graph
        except Exception:
            logger.exception("%s index of knowledge base %s: build failed", self._name, kb)
            self._failed_until[key] = time.monotonic() + RETRY_S

    def _make_room(self, size: int) -> None:
        while self._graphs and self.items + size > self.max_items:
            evicted, _ = self._graphs.popitem(last=False)
            logger.info(
                "%s index of knowledge base %s evicted (memory cap)", self._name, evicted[1]
            )


__all__ = ["RETRY_S", "Key", "RevisionCache", "Source"]
