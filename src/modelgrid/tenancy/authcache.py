"""An in-process cache of authenticated principals, so the hot path makes no database round
trip per request.

Entries are keyed by the SHA-256 of the presented key (a cache hit still compares the stored
hash in constant time) and live at most ``ttl_s``. Every change to keys or workspaces clears
the cache of the process that made it at once, and bumps an epoch file in the data
directory; every process checks that file's mtime (one ``stat``, about a microsecond) before
using its cache, so a revocation from the CLI or another gateway process on the same
machine takes effect on the very next request. Gateways on other machines see it within
``ttl_s`` (default 2 s).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")


def bump_epoch(path: Path | None) -> None:
    """Mark "keys or workspaces changed" for every process sharing ``path``."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{time.time_ns()}\n")


class PrincipalCache(Generic[T]):
    """TTL cache of principals by key hash, cleared when the epoch file changes."""

    def __init__(self, ttl_s: float, epoch_path: Path | None = None) -> None:
        self.ttl_s = ttl_s
        self.epoch_path = epoch_path
        self._epoch = self._read_epoch()
        self._entries: dict[str, tuple[float, str, T]] = {}

    def _read_epoch(self) -> int:
        if self.epoch_path is None:
            return 0
        try:
            return os.stat(self.epoch_path).st_mtime_ns
        except FileNotFoundError:
            return 0

    def get(self, key_hash: str) -> tuple[str, T] | None:
        """(stored hash, principal) if cached and fresh."""
        if self.ttl_s <= 0:
            return None
        epoch = self._read_epoch()
        if epoch != self._epoch:
            self._epoch = epoch
            self._entries.clear()
            return None
        entry = self._entries.get(key_hash)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1], entry[2]

    def put(self, key_hash: str, stored_hash: str, value: T) -> None:
        if self.ttl_s > 0:
            if len(self._entries) > 100_000:
                self._entries.clear()
            self._entries[key_hash] = (time.monotonic() + self.ttl_s, stored_hash, value)

    def clear(self) -> None:
        self._entries.clear()


__all__ = ["PrincipalCache", "bump_epoch"]
