"""A crash-safe spool for usage records: append before the response ends, delete once stored.

Each process appends one JSON line per usage record to its current segment file
(``usage-<pid>-<n>.jsonl``) with a plain ``write(2)``: once the call returns the bytes are
in the kernel, so a ``kill -9`` of the process cannot lose them (power loss can; set
``fsync=True`` for that, at a cost per record). When the batch writer flushes, it rotates
to a new segment, stores the old segment's records in the database, and deletes the
segment. At start-up every segment no live process holds (each holds an exclusive
``flock`` on its own) is replayed into the database; inserts are idempotent by request id,
so replaying a record that was already stored changes nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any

from modelgrid.tenancy.events import UsageEvent, as_row

_DATETIME_FIELDS = {f.name for f in fields(UsageEvent) if f.type in ("datetime", datetime)}


def encode(event: UsageEvent) -> bytes:
    data = as_row(event)
    for name in _DATETIME_FIELDS:
        value = data[name]
        assert isinstance(value, datetime)
        data[name] = value.isoformat()
    return json.dumps(data, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> UsageEvent:
    data: dict[str, Any] = json.loads(line)
    for name in _DATETIME_FIELDS:
        data[name] = datetime.fromisoformat(data[name])
    return UsageEvent(**data)


class Segment:
    """One spool file, exclusively locked by this process while open."""

    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        self.path = path
        self.fsync = fsync
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.count = 0

    def append(self, event: UsageEvent) -> None:
        os.write(self.fd, encode(event))
        if self.fsync:
            os.fsync(self.fd)
        self.count += 1

    def close(self, *, delete: bool) -> None:
        if delete:
            self.path.unlink(missing_ok=True)
        os.close(self.fd)


class Spool:
    """The spool directory of one process.

    Args:
        directory: Where segments live (created if missing); shared by all processes that
            share a data directory.
        fsync: ``fsync`` after every record (survives power loss, costs a disk flush each).
    """

    def __init__(self, directory: Path, *, fsync: bool = False) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._n = 0
        self.current = self._new_segment()

    def _new_segment(self) -> Segment:
        self._n += 1
        return Segment(self.dir / f"usage-{os.getpid()}-{self._n}.jsonl", fsync=self.fsync)

    def append(self, event: UsageEvent) -> None:
        self.current.append(event)

    def rotate(self) -> Segment:
        """Start a new segment and return the previous one (to delete once stored)."""
        old, self.current = self.current, self._new_segment()
        return old

    def orphans(self) -> Iterator[tuple[Path, list[UsageEvent], int]]:
        """Segments of dead processes: (path, records, locked fd). Close the fd after use."""
        for path in sorted(self.dir.glob("usage-*.jsonl")):
            if path == self.current.path:
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a live process owns it
                os.close(fd)
                continue
            with os.fdopen(os.dup(fd), "rb") as fh:
                lines = [ln for ln in fh.read().split(b"\n") if ln.strip()]
            events = []
            for ln in lines:
                try:
                    events.append(decode(ln))
                except (ValueError, TypeError):  # a torn last line from the crash
                    continue
            yield path, events, fd

    def close(self) -> None:
        self.current.close(delete=self.current.count == 0)


__all__ = ["Segment", "Spool", "decode", "encode"]
