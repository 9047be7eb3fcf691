"""A scripted embedding engine for testing the layers above engines (serving, api).

It "tokenizes" by whitespace-separated words and returns, for a text of ``L`` characters, the
vector ``[((L + j) % 5) / 4 for j in range(dimensions)]``: values exactly representable in
float32, so tests can assert exact JSON floats and base64 bytes. Never used as a product engine.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Sequence

from modelgrid.core.errors import EngineError
from modelgrid.engines.base import ModelCard
from modelgrid.engines.embedding import (
    EMBEDDINGS,
    EmbeddingOnly,
    Embeddings,
)


def fake_vector(text: str, dimensions: int) -> list[float]:
    """The vector the fake engine returns for ``text``."""
    return [((len(text) + j) % 5) / 4 for j in range(dimensions)]


class FakeEmbeddingEngine(EmbeddingOnly):
    """Scripted embeddings.

    Args:
        model_id: Served id.
        dimensions: Vector length.
        max_input_tokens: Longest input in words.
        delay_s: Sleep per call (to test concurrency and queueing).
        fail: Raise ``EngineError`` on every call.
    """

    def __init__(
        self,
        model_id: str = "fake-embedding",
        *,
        dimensions: int = 3,
        max_input_tokens: int = 16,
        delay_s: float = 0.0,
        fail: bool = False,
    ) -> None:
        self.card = ModelCard(
            model_id, "modelgrid", int(time.time()), max_input_tokens, frozenset({EMBEDDINGS})
        )
        self._dimensions = dimensions
        self.delay_s = delay_s
        self.fail = fail
        self.batches: list[int] = []  # inputs per embed() call

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def max_input_tokens(self) -> int:
        return self.card.context_length

    @property
    def ready(self) -> bool:
        return True

    @property
    def queue_depth(self) -> int:
        return 0

    async def start(self) -> None:
        return None

    async def decode(self, token_ids: Sequence[Sequence[int]]) -> list[str]:
        """Id ``i`` is the word ``t<i>``."""
        return [" ".join(f"t{t}" for t in ids) for ids in token_ids]

    async def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) for t in texts]

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        self.batches.append(len(texts))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail:
            raise EngineError("The fake embedding engine failed on purpose.")
        fmt = f"<{self._dimensions}f"
        vectors = [struct.pack(fmt, *fake_vector(t, self._dimensions)) for t in texts]
        return Embeddings(vectors=vectors, dimensions=self._dimensions)

    async def aclose(self) -> None:
        return None


__all__ = ["FakeEmbeddingEngine", "fake_vector"]
