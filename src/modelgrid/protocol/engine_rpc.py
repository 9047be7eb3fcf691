"""Bodies of the calls a gateway makes to its own embedding engine process
(``engines.process_embedding`` → ``api/routers/engine_rpc.py``, ``/internal/embeddings…``):
not a public API, loopback only, behind the process's token."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TextsIn(BaseModel):
    """``POST /internal/embeddings/count`` and ``/embed``."""

    model_config = ConfigDict(extra="forbid")
    texts: list[str] = Field(min_length=1)


class TokenIdsIn(BaseModel):
    """``POST /internal/embeddings/decode``."""

    model_config = ConfigDict(extra="forbid")
    token_ids: list[list[int]] = Field(min_length=1)


__all__ = ["TextsIn", "TokenIdsIn"]
