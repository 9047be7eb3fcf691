"""Writing a text file atomically: a temporary file beside it, renamed over it, so a reader
never sees half a file (the topology the gateways read, engine profiles)."""

from __future__ import annotations

import contextlib
from pathlib import Path


def write_text_atomic(path: Path, text: str | None) -> None:
    """``text`` into ``path`` (UTF-8) through ``.<name>.tmp`` beside it, renamed over it;
    ``None``: the temporary file only, removed (a trial: would the write succeed?). Missing
    folders are made. A symbolic link is followed (its target is rewritten, the link kept);
    a path that exists and is not a regular file (a directory, a device such as
    ``/dev/null``, a pipe) is refused, as the rename would replace it.

    Raises:
        OSError: ``IsADirectoryError`` ("not a file name", "is a directory", "not a regular
            file"), ``NotADirectoryError`` (a folder above is a file), or the write's own
            error; no temporary file is left behind.
        RuntimeError: a loop of symbolic links (Python < 3.13; 3.13 raises ``OSError``).
    """
    if not path.name or path.name in (".", ".."):
        raise IsADirectoryError(21, "not a file name")
    path = path.resolve() if path.is_symlink() else path
    if path.is_dir():
        raise IsADirectoryError(21, "is a directory")
    if path.exists() and not path.is_file():
        raise IsADirectoryError(21, "not a regular file")
    above = next((p for p in path.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise NotADirectoryError(20, f"{above} is a file, not a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text or "", encoding="utf-8")
        if text is None:
            tmp.unlink()
        else:
            tmp.replace(path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


__all__ = ["write_text_atomic"]
