"""OpenAI embeddings: wire model, input checks and the response object.

Reference: https://platform.openai.com/docs/api-reference/embeddings/create. Unknown fields are
accepted and ignored. What modelgrid does with each field:

- ``input``: a string or a list of strings (at most ``MAX_INPUTS``), embedded in one batch.
  Empty strings and an empty list are refused (400, as the reference says). Token-id inputs
  (a list of ints, or of int lists) are refused with ``unsupported_parameter``: clients send
  ids of OpenAI's tokenizer (e.g. LangChain's default), which mean nothing to this model, and
  decoding them with its own tokenizer would silently embed the wrong text.
- ``encoding_format``: ``float`` (default) or ``base64`` (the little-endian float32 bytes of the
  vector, base64-encoded, as OpenAI sends them).
- ``dimensions``: the served models have a fixed size (all-minilm-l6-v2: 384); any other value
  is refused with ``unsupported_parameter`` rather than silently ignored.
- ``user``: accepted, ignored.

``usage`` counts the tokens the model processed (its own tokenizer, special tokens included):
``prompt_tokens`` = ``total_tokens``.
"""

from __future__ import annotations

import base64
import sys
from array import array
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modelgrid.core.errors import InvalidRequestError, UnsupportedParameterError

MAX_INPUTS = 2048  # the reference's limit per request

EmbeddingInput = str | list[str] | list[int] | list[list[int]]


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: EmbeddingInput
    encoding_format: Literal["float", "base64"] | None = "float"
    dimensions: Annotated[int, Field(ge=1)] | None = None
    user: str | None = None


def input_texts(req: EmbeddingRequest) -> list[str]:
    """The inputs as a list of non-empty strings, in order.

    Raises:
        InvalidRequestError: empty input, an empty string, or more than ``MAX_INPUTS`` items.
        UnsupportedParameterError: token-id inputs.
    """
    raw = req.input
    items: list[Any] = [raw] if isinstance(raw, str) else list(raw)
    if not items:
        raise InvalidRequestError("'input' must not be an empty list.", param="input")
    if not all(isinstance(x, str) for x in items):
        raise UnsupportedParameterError(
            "Token-id inputs are not supported: token ids from another tokenizer mean nothing "
            "to this model. Send the input as text (a string or a list of strings).",
            param="input",
        )
    if len(items) > MAX_INPUTS:
        raise InvalidRequestError(
            f"'input' accepts at most {MAX_INPUTS} strings, got {len(items)}.", param="input"
        )
    for i, text in enumerate(items):
        if text == "":
            where = "input" if isinstance(raw, str) else f"input[{i}]"
            raise InvalidRequestError("'input' strings must be non-empty.", param=where)
    return items


def floats(vector: bytes) -> list[float]:
    """Little-endian float32 bytes as Python floats (exactly the float32 values)."""
    values = array("f")
    values.frombytes(vector)
    if sys.byteorder == "big":
        values.byteswap()
    return values.tolist()


def embedding_response(
    *,
    model: str,
    vectors: list[bytes],
    prompt_tokens: int,
    encoding_format: Literal["float", "base64"] | None,
) -> dict[str, Any]:
    """The reference's ``list`` of ``embedding`` objects, with ``usage``.

    Args:
        model: Model id echoed back.
        vectors: Little-endian float32 bytes per input, in input order.
        prompt_tokens: Tokens processed (also ``total_tokens``).
        encoding_format: ``"base64"`` for base64 strings, else lists of floats.
    """
    as_base64 = encoding_format == "base64"
    return {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64.b64encode(v).decode("ascii") if as_base64 else floats(v),
            }
            for i, v in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


__all__ = [
    "MAX_INPUTS",
    "EmbeddingRequest",
    "embedding_response",
    "floats",
    "input_texts",
]
