"""Prompt-prefix fingerprints and the table of which replica served which prefix.

A prompt's first ``max_chars`` characters are cut into blocks of ``block_chars``; block ``i``
gets a hash chained over blocks ``0..i`` (so equal hashes mean equal prefixes, as in vLLM's
and llm-d's KV-block hashing). Only whole blocks count: a prompt shorter than one block has
no fingerprint, as there is little cache to reuse. ``PrefixTable`` remembers, for each block
hash, the replicas that served it most recently; the longest matched prefix names the
replicas most likely to still hold the prompt's KV cache. The table is bounded (LRU).
Characters stand in for tokens, so no tokenizer is needed to route.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence

from modelgrid.core.types import InferenceRequest


def prompt_text(request: InferenceRequest) -> str:
    """The request's prompt as one string (chat: role and content of each message)."""
    if request.prompt is not None:
        return request.prompt
    parts = []
    for m in request.messages or ():
        parts.append(f"{m.role}\n{m.content or ''}\n\x00")
    return "".join(parts)


def fingerprint(text: str, *, block_chars: int = 256, max_chars: int = 4096) -> tuple[int, ...]:
    """Chained hashes of the whole ``block_chars`` blocks within the first ``max_chars``."""
    out: list[int] = []
    h = hashlib.blake2b(digest_size=8)
    limit = min(len(text), max_chars)
    for start in range(0, limit - block_chars + 1, block_chars):
        h.update(text[start : start + block_chars].encode("utf-8", "surrogatepass"))
        out.append(int.from_bytes(h.copy().digest(), "big"))
    return tuple(out)


class PrefixTable:
    """Block hash → the replicas that served it, most recent first (bounded LRU).

    Args:
        max_entries: Block hashes kept (the least recently used go first).
        owners_per_prefix: Replicas remembered per block.
    """

    def __init__(self, max_entries: int = 65536, owners_per_prefix: int = 2) -> None:
        self.max_entries = max_entries
        self.owners_per_prefix = owners_per_prefix
        self._table: OrderedDict[int, tuple[str, ...]] = OrderedDict()
        self._owned: dict[str, int] = {}  # blocks each replica served last

    def owned(self, replica_id: str) -> int:
        """Blocks whose most recent server is ``replica_id`` (a proxy for the size of its
        prefix cache, as SGLang's per-worker radix tree size)."""
        return self._owned.get(replica_id, 0)

    def _count(self, replica_id: str, delta: int) -> None:
        n = self._owned.get(replica_id, 0) + delta
        if n > 0:
            self._owned[replica_id] = n
        else:
            self._owned.pop(replica_id, None)

    def __len__(self) -> int:
        return len(self._table)

    def owners(self, blocks: Sequence[int]) -> tuple[tuple[str, ...], int]:
        """The owners of the longest prefix of ``blocks`` that has any, and its length in
        blocks (``((), 0)`` when none)."""
        for i in range(len(blocks) - 1, -1, -1):
            found = self._table.get(blocks[i])
            if found:
                self._table.move_to_end(blocks[i])
                return found, i + 1
        return (), 0

    def record(self, blocks: Sequence[int], replica_id: str) -> None:
        """``replica_id`` has just served a prompt with these blocks."""
        for b in blocks:
            old = self._table.pop(b, ())
            if not old or old[0] != replica_id:
                if old:
                    self._count(old[0], -1)
                self._count(replica_id, 1)
            self._table[b] = (replica_id, *(o for o in old if o != replica_id))[
                : self.owners_per_prefix
            ]
        while len(self._table) > self.max_entries:
            _, evicted = self._table.popitem(last=False)
            self._count(evicted[0], -1)

    def forget(self, replica_id: str) -> None:
        """Drop a replica (removed from the topology, or restarted with an empty cache)."""
        for b in list(self._table):
            owners = self._table[b]
            if replica_id not in owners:
                continue
            kept = tuple(o for o in owners if o != replica_id)
            if kept:
                self._table[b] = kept
                if owners[0] == replica_id:
                    self._count(kept[0], 1)
            else:
                del self._table[b]
        self._owned.pop(replica_id, None)


__all__ = ["PrefixTable", "fingerprint", "prompt_text"]
