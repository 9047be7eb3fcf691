"""The file store: the bytes of uploaded and batch-written files, on this gateway's disk.

A file lives at ``<root>/<region>/<workspace_id>/<file_id>.jsonl`` — the region is where the
gateway runs, so a file is only ever stored in a region its workspace allows (the control
plane checks that before writing). Writes go to a temporary name and are renamed into place
once complete (with ``fsync``), so a crash never leaves half a file under a file's name;
reads stream line by line, so memory stays flat however large the file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO


class FileStore:
    """Files under ``root`` (``<data_dir>/files``).

    Args:
        root: The store's folder (created on first write).
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def relative_path(self, region: str, workspace_id: str, file_id: str) -> str:
        """Where a file's bytes go, relative to the root (stored in the ``files`` row)."""
        return f"{region}/{workspace_id}/{file_id}.jsonl"

    def write(self, relative: str, chunks: Iterable[bytes]) -> int:
        """Write ``chunks`` to ``relative`` atomically; returns the bytes written.

        Raises:
            OSError: the disk refused (nothing is left under the final name).
        """
        with self.writer(relative) as f:
            for chunk in chunks:
                f.write(chunk)
            return f.tell()

    @contextlib.contextmanager
    def writer(self, relative: str) -> Iterator[BinaryIO]:
        """A file to write ``relative`` through: renamed into place (after ``fsync``) when
        the block ends normally, removed if it raises."""
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.part")
        try:
            with tmp.open("wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def open(self, relative: str) -> BinaryIO:
        """The file for reading (binary). Raises ``FileNotFoundError``."""
        return (self.root / relative).open("rb")

    def lines(self, relative: str) -> Iterator[bytes]:
        """The file's lines (each with its ``\\n``, if it had one), streamed."""
        with self.open(relative) as f:
            yield from f

    def exists(self, relative: str) -> bool:
        return (self.root / relative).is_file()

    def delete(self, relative: str) -> None:
        """Remove a file's bytes (a missing file is not an error)."""
        (self.root / relative).unlink(missing_ok=True)


__all__ = ["FileStore"]
