"""A deterministic bag-of-words embedding engine for knowledge tests: each lower-cased word
adds 1 to dimension ``crc32(word) % dims``; vectors are L2-normalised float32. Texts sharing
words are near in cosine distance, so dense retrieval is testable without a model."""

from __future__ import annotations

import math
import re
import struct
import zlib
from collections.abc import Sequence

from modelgrid.core.errors import EngineError
from modelgrid.engines.embedding import Embeddings
from modelgrid.engines.fake_embedding import FakeEmbeddingEngine

WORD = re.compile(r"\w+")


def hash_vector(text: str, dims: int) -> list[float]:
    v = [0.0] * dims
    for w in WORD.findall(text.lower()):
        v[zlib.crc32(w.encode()) % dims] += 1.0
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]


class HashEmbeddingEngine(FakeEmbeddingEngine):
    def __init__(self, *, dimensions: int = 64, max_input_tokens: int = 256) -> None:
        super().__init__("hash-embedding", dimensions=dimensions, max_input_tokens=max_input_tokens)

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        self.batches.append(len(texts))
        if self.fail:
            raise EngineError("The hash embedding engine failed on purpose.")
        fmt = f"<{self.dimensions}f"
        vectors = [struct.pack(fmt, *hash_vector(t, self.dimensions)) for t in texts]
        return Embeddings(vectors=vectors, dimensions=self.dimensions)
