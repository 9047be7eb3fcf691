"""OpenAI embeddings: wire model, input checks and the response object.

Reference: https://platform.openai.com/docs/api-reference/embeddings/create. Unknown fields are
accepted and ignored. What modelgrid does with each field:

- ``input``: a string, a list of strings, a list of token ids or a list of token-id lists (at
  most ``MAX_INPUTS`` inputs), embedded in one batch. Token ids are ids of the EMBEDDING
  MODEL's own tokenizer (all-minilm-l6-v2: BERT WordPiece, 30,522 ids), not OpenAI's: the
  engine decodes them to text and refuses ids outside its vocabulary. Empty strings, empty
  lists and mixed kinds are refused (400, as the reference says).
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

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)

from modelgrid.core.errors import InvalidRequestError

MAX_INPUTS = 2048  # the reference's limit per request

EmbeddingInput = str | list[str] | list[StrictInt] | list[list[StrictInt]]

INPUT_SHAPES = (
    "must be a string, an array of strings, an array of token ids (integers) or an array of "
    "arrays of token ids"
)


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: EmbeddingInput
    encoding_format: Literal["float", "base64"] | None = "float"
    dimensions: Annotated[int, Field(ge=1)] | None = None
    user: str | None = None

    @field_validator("input", mode="wrap")
    @classmethod
    def _one_of_the_shapes(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """One message naming the four shapes, not the first union member's complaint
        (``[1.5]`` read "should be a valid string")."""
        try:
            return handler(value)
        except ValidationError:
            raise ValueError(INPUT_SHAPES) from None


def input_texts(req: EmbeddingRequest) -> list[str] | list[list[int]]:
    """The inputs in order: non-empty strings, or non-empty token-id lists (ids of the
    embedding model's own tokenizer, decoded by the engine).

    Raises:
        InvalidRequestError: empty input, an empty string or id list, a negative id, mixed
            kinds, or more than ``MAX_INPUTS`` items.
    """
    raw = req.input
    if isinstance(raw, str):
        items: list[Any] = [raw]
    elif raw and all(isinstance(x, int) for x in raw):
        items = [list(raw)]  # one input given as token ids
    else:
        items = list(raw)
    if not items:
        raise InvalidRequestError("'input' must not be an empty list.", param="input")
    if len(items) > MAX_INPUTS:
        raise InvalidRequestError(
            f"'input' accepts at most {MAX_INPUTS} items, got {len(items)}.", param="input"
        )
    if all(isinstance(x, str) for x in items):
        for i, text in enumerate(items):
            if text == "":
                where = "input" if isinstance(raw, str) else f"input[{i}]"
                raise InvalidRequestError("'input' strings must be non-empty.", param=where)
        return items
    for i, ids in enumerate(items):
        if not isinstance(ids, list) or not ids or not all(isinstance(t, int) for t in ids):
            raise InvalidRequestError(
                "'input' must be strings, or token-id lists: not a mix, and no empty list.",
                param=f"input[{i}]",
            )
        if any(t < 0 for t in ids):
            raise InvalidRequestError("Token ids must be non-negative.", param=f"input[{i}]")
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
