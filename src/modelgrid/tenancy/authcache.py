"""An in-process cache of authenticated principals, so the hot path makes no database round
trip per request.

Entries are keyed by the SHA-256 of the presented key (a cache hit still compares the stored
hash in constant time) and are trusted for at most ``ttl_s``. Every change to keys or
workspaces clears the cache of the process that made it at once, and bumps an epoch file in
the data directory; every process checks that file's mtime (one ``stat``, about a
microsecond) before using its cache, so a revocation from the CLI or another gateway process
on the same machine takes effect on the very next request. Gateways on other machines re-read
every cached entry in one query when the change's counter moves in the database (``reread``,
``control.sync``: within a second), and at the latest within ``ttl_s`` (default 2 s).

Refresh-ahead: the keys in use are re-read from the database in the background
(``due`` → ``TenancyService.refresh_principals``, one query for all of them, every
``ttl_s / 2``) before they expire, so a key used at least once every ``keep_s`` (5 min) never
waits for the database, however sparse its traffic — while a revocation elsewhere still
shows within ``ttl_s``. A refresh that raced with a clear (``generation`` changed) is
dropped, so it can never resurrect a revoked key.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")
KEEP_S = 300.0


def bump_epoch(path: Path | None) -> None:
    """Mark "keys or workspaces changed" for every process sharing ``path``."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{time.time_ns()}\n")


@dataclass(slots=True)
class _Entry(Generic[T]):
    expires_at: float
    stored_hash: str
    value: T
    key_id: str
    used_at: float


class PrincipalCache(Generic[T]):
    """TTL cache of principals by key hash, cleared when the epoch file changes.

    Args:
        ttl_s: How long an entry is trusted (0 disables the cache).
        epoch_path: The shared epoch file (None: this process only).
        keep_s: Entries unused this long are not refreshed, and dropped.
        clock: Monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        ttl_s: float,
        epoch_path: Path | None = None,
        *,
        keep_s: float = KEEP_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.epoch_path = epoch_path
        self.keep_s = keep_s
        self.clock = clock
        self.generation = 0  # bumped by every clear
        self._epoch = self._read_epoch()
        self._entries: dict[str, _Entry[T]] = {}

    def _read_epoch(self) -> int:
        if self.epoch_path is None:
            return 0
        try:
            return os.stat(self.epoch_path).st_mtime_ns
        except FileNotFoundError:
            return 0

    def _check_epoch(self) -> None:
        epoch = self._read_epoch()
        if epoch != self._epoch:
            self._epoch = epoch
            self.clear()

    def get(self, key_hash: str) -> tuple[str, T] | None:
        """(stored hash, principal) if cached and fresh."""
        if self.ttl_s <= 0:
            return None
        self._check_epoch()
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        now = self.clock()
        if entry.expires_at < now:
            return None
        entry.used_at = now
        return entry.stored_hash, entry.value

    def put(
        self,
        key_hash: str,
        stored_hash: str,
        value: T,
        key_id: str,
        generation: int | None = None,
        *,
        refresh: bool = False,
    ) -> None:
        """Cache ``value``; with ``generation`` (read before ``value`` was), only if no clear
        happened since, so a value read before a revocation never outlives it. A ``refresh``
        (not a use) keeps the entry's last use."""
        if self.ttl_s <= 0 or (generation is not None and generation != self.generation):
            return
        if len(self._entries) > 100_000:
            self.clear()
        now = self.clock()
        old = self._entries.get(key_hash)
        used = old.used_at if old is not None and refresh else now
        self._entries[key_hash] = _Entry(now + self.ttl_s, stored_hash, value, key_id, used)

    def drop(self, key_hash: str) -> None:
        self._entries.pop(key_hash, None)

    def due(self) -> list[tuple[str, str]]:
        """(key hash, key id) of the entries to refresh now: used within ``keep_s`` and past
        half their life. Entries unused for longer are dropped."""
        if self.ttl_s <= 0:
            return []
        self._check_epoch()
        now = self.clock()
        out = []
        for key_hash, e in list(self._entries.items()):
            if now - e.used_at > self.keep_s:
                del self._entries[key_hash]
            elif e.expires_at - now < self.ttl_s / 2:
                out.append((key_hash, e.key_id))
        return out

    def reread(self) -> tuple[int, list[tuple[str, str]]]:
        """Start re-reading every entry: (a new generation, each entry's key hash and key id).
        Values read before this call can no longer be cached; the entries stay usable until
        the re-read replaces or drops them."""
        self.generation += 1
        return self.generation, [(h, e.key_id) for h, e in self._entries.items()]

    def clear(self) -> None:
        self._entries.clear()
        self.generation += 1


__all__ = ["PrincipalCache", "bump_epoch"]
