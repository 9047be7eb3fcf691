"""DashScope's native text-embedding API: request model, input checks, response body.

``POST /api/v1/services/embeddings/text-embedding/text-embedding``
(https://help.aliyun.com/zh/model-studio/text-embedding-synchronous-api): the request is
``{"model", "input": {"texts": [...]}, "parameters": {"text_type", "dimension", ...}}``; the
answer ``{"status_code", "request_id", "code", "message", "output": {"embeddings":
[{"text_index", "embedding"}]}, "usage": {"total_tokens"}}``. ``text_type``
(query/document), ``output_type`` other than ``dense`` and ``instruct`` concern models that
distinguish them; the served models produce one dense vector per text, so ``text_type`` and
``instruct`` are accepted and ignored and ``output_type`` other than ``dense`` is refused.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modelgrid.core.errors import InvalidRequestError, UnsupportedParameterError
from modelgrid.protocol.openai.embeddings import MAX_INPUTS, floats


class EmbeddingInput(BaseModel):
    model_config = ConfigDict(extra="allow")
    texts: str | list[str]


class EmbeddingParameters(BaseModel):
    model_config = ConfigDict(extra="allow")
    text_type: str | None = None
    dimension: int | None = Field(default=None, ge=1)
    output_type: str | None = None
    instruct: str | None = None


class TextEmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    input: EmbeddingInput
    parameters: EmbeddingParameters = Field(default_factory=EmbeddingParameters)


def input_texts(req: TextEmbeddingRequest) -> list[str]:
    """``input.texts`` as a non-empty list of non-empty strings.

    Raises:
        InvalidRequestError: empty list, an empty string, more than ``MAX_INPUTS`` texts.
        UnsupportedParameterError: ``output_type`` other than ``dense``.
    """
    out_type = req.parameters.output_type
    if out_type not in (None, "dense"):
        raise UnsupportedParameterError(
            f"output_type '{out_type}' is not supported: the served models give dense vectors.",
            param="parameters.output_type",
        )
    raw = req.input.texts
    texts = [raw] if isinstance(raw, str) else list(raw)
    if not texts:
        raise InvalidRequestError("input.texts must not be empty.", param="input.texts")
    if len(texts) > MAX_INPUTS:
        raise InvalidRequestError(
            f"input.texts accepts at most {MAX_INPUTS} texts, got {len(texts)}.",
            param="input.texts",
        )
    for i, t in enumerate(texts):
        if t == "":
            raise InvalidRequestError("Texts must be non-empty.", param=f"input.texts[{i}]")
    return texts


def response_dict(request_id: str, vectors: list[bytes], total_tokens: int) -> dict[str, Any]:
    """The successful answer (vectors as little-endian float32 bytes, in input order)."""
    return {
        "status_code": 200,
        "request_id": request_id,
        "code": "",
        "message": "",
        "output": {
            "embeddings": [{"text_index": i, "embedding": floats(v)} for i, v in enumerate(vectors)]
        },
        "usage": {"total_tokens": total_tokens},
    }


__all__ = ["TextEmbeddingRequest", "input_texts", "response_dict"]
