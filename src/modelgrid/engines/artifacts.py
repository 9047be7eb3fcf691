"""Preparing a packaged model file: join the slices once, atomically, and verify the hash.

The join writes ``<name>.tmp-<pid>`` next to the target, hashes while writing, checks the
SHA-256 against the catalog and only then renames into place, so a crash never leaves a
half-written model under the final name. Loading refuses any file whose hash does not match.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Callable
from pathlib import Path

from modelgrid.core.errors import ModelIntegrityError, ServiceUnavailableError
from modelgrid.engines.catalog import PackagedModel

CHUNK_BYTES = 8 * 1024 * 1024
Progress = Callable[[int, int], None]  # (bytes_done, bytes_total)


def part_paths(model: PackagedModel) -> list[Path]:
    """Paths of the installed slices, in order.

    Raises:
        ServiceUnavailableError: a slice package is not installed (names the pip extra).
    """
    paths: list[Path] = []
    for i in range(1, model.parts + 1):
        name = f"{model.module_prefix}{i}"
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ServiceUnavailableError(
                f"Model '{model.model_id}' is not installed: module '{name}' is missing. "
                f"Install it with: pip install 'modelgrid[{model.extra}]'"
            ) from exc
        paths.append(Path(module.get_part_path()))
    return paths


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def verify(model: PackagedModel, path: Path) -> None:
    """Check ``path`` against the pinned hash (cached by a stamp file with size and mtime).

    Raises:
        ModelIntegrityError: the hash differs; the message names both digests.
    """
    st = path.stat()
    stamp = _stamp(path)
    key = f"{model.sha256} {st.st_size} {st.st_mtime_ns}"
    if stamp.exists() and stamp.read_text().strip() == key:
        return
    actual = sha256_file(path)
    if actual != model.sha256:
        raise ModelIntegrityError(
            f"Refusing to load {path}: sha256 {actual} does not match the pinned "
            f"{model.sha256}. Delete the file and run 'modelgrid models prepare'."
        )
    stamp.write_text(key + "\n")


def prepare(model: PackagedModel, models_dir: Path, progress: Progress | None = None) -> Path:
    """Return the verified model file, joining the slices first if needed.

    Raises:
        ServiceUnavailableError: slices not installed.
        ModelIntegrityError: the joined bytes (or an existing file) do not match the hash.
    """
    target = models_dir / model.filename
    if target.exists():
        verify(model, target)
        return target
    parts = part_paths(model)
    total = sum(p.stat().st_size for p in parts)
    models_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    digest = hashlib.sha256()
    done = 0
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(CHUNK_BYTES):
                        out.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        if progress:
                            progress(done, total)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != model.sha256:
            raise ModelIntegrityError(
                f"Joined slices of '{model.model_id}' hash to {digest.hexdigest()}, expected "
                f"{model.sha256}: the installed packages are not the pinned versions."
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    st = target.stat()
    _stamp(target).write_text(f"{model.sha256} {st.st_size} {st.st_mtime_ns}\n")
    return target


__all__ = ["ModelIntegrityError", "part_paths", "prepare", "sha256_file", "verify"]
