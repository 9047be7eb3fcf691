"""OpenAI (legacy) text completions: wire models and wire <-> core conversion.

Reference: https://platform.openai.com/docs/api-reference/completions/create. Unknown fields
are accepted and ignored (as in chat); known fields modelgrid does not implement are rejected
by ``to_inference_requests`` with a 400 naming the parameter:

- ``prompt``: a string or a list of strings; each prompt gets its own ``n`` choices, numbered
  ``prompt_index * n + i`` as in the reference. Token-id prompts (a list of ints or of int
  lists) are refused (``unsupported_parameter``): ids of OpenAI's tokenizer mean nothing to
  this model. Empty prompts are refused too.
- ``max_tokens`` defaults to 16, as in the reference; the sampling ranges are chat's
  (``protocol.openai.models``), ``n`` at most 128 choices in all (prompts x n).
- ``echo`` prepends the prompt to each choice's text (in a stream: as the choice's first chunk).
- ``suffix``, ``logprobs``, ``logit_bias`` and ``best_of`` other than ``n`` are refused.

Responses are built as plain dicts (``text_completion`` objects, streamed or not).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from modelgrid.core.errors import InvalidRequestError, UnsupportedParameterError
from modelgrid.core.types import InferenceRequest, SamplingParams, TokenUsage
from modelgrid.protocol.openai.convert import usage_dict
from modelgrid.protocol.openai.errors import STREAM_OPTIONS_ALONE
from modelgrid.protocol.openai.models import MAX_N, StreamOptions
from modelgrid.protocol.openai.params import stop_sequences

DEFAULT_MAX_TOKENS = 16  # the reference's default for this endpoint
MAX_PROMPTS = 64
MAX_CHOICES = 128  # prompts x n

Prompt = str | list[str] | list[StrictInt] | list[list[StrictInt]]


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    model: str = Field(min_length=1)
    prompt: Prompt
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None  # 0: the most likely token
    stop: str | list[str] | None = None
    seed: Annotated[int, Field(ge=-(2**63), le=2**63 - 1)] | None = None
    n: Annotated[int, Field(ge=1, le=MAX_N)] | None = None
    echo: StrictBool | None = False
    presence_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    user: str | None = None
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    # vLLM's extra sampling parameters (DashScope's too): not in OpenAI's reference.
    top_k: Annotated[StrictInt, Field(ge=0, le=2**31 - 1)] | None = None
    repetition_penalty: Annotated[float, Field(gt=0.0)] | None = None
    # Accepted for validation; to_inference_requests rejects the ones not implemented.
    suffix: str | None = None
    logprobs: int | None = None
    logit_bias: dict[str, float] | None = None
    best_of: int | None = None


def prompt_texts(prompt: Prompt) -> list[str]:
    """The prompts as strings, one per group of choices.

    Raises:
        InvalidRequestError: an empty list or an empty string.
        UnsupportedParameterError: token-id prompts.
    """
    items: list[Any] = [prompt] if isinstance(prompt, str) else list(prompt)
    if not items:
        raise InvalidRequestError("'prompt' must not be an empty list.", param="prompt")
    if not all(isinstance(p, str) for p in items):
        raise UnsupportedParameterError(
            "Token-id prompts are not supported: send the prompt as text (a string or a list "
            "of strings).",
            param="prompt",
        )
    if len(items) > MAX_PROMPTS:
        raise InvalidRequestError(
            f"'prompt' accepts at most {MAX_PROMPTS} strings, got {len(items)}.", param="prompt"
        )
    for i, p in enumerate(items):
        if p == "":
            where = "prompt" if isinstance(prompt, str) else f"prompt[{i}]"
            raise InvalidRequestError("Prompts must be non-empty strings.", param=where)
    return items


def _reject_unimplemented(req: CompletionRequest) -> None:
    if req.suffix:
        raise UnsupportedParameterError(
            "'suffix' (insertion) is not supported by this model.", param="suffix"
        )
    if req.logprobs is not None:
        raise UnsupportedParameterError("'logprobs' is not supported yet.", param="logprobs")
    if req.logit_bias:
        raise UnsupportedParameterError("'logit_bias' is not supported yet.", param="logit_bias")
    if req.best_of is not None and req.best_of != (req.n or 1):
        raise UnsupportedParameterError(
            "'best_of' is not supported (only best_of == n, which is the same as omitting it).",
            param="best_of",
        )


def to_inference_requests(req: CompletionRequest, request_id: str) -> list[InferenceRequest]:
    """One core request per prompt, all sharing the sampling controls and ``request_id``.

    Raises:
        InvalidRequestError: a parameter is out of its documented range or combination.
        UnsupportedParameterError: a known parameter modelgrid does not implement.
    """
    _reject_unimplemented(req)
    if req.stream_options is not None and not req.stream:
        raise InvalidRequestError(STREAM_OPTIONS_ALONE, param="stream_options")
    prompts = prompt_texts(req.prompt)
    n = req.n or 1
    if len(prompts) * n > MAX_CHOICES:
        raise InvalidRequestError(
            f"At most {MAX_CHOICES} choices per request (prompts x n); asked for "
            f"{len(prompts)} x {n}.",
            param="n",
        )
    sampling = SamplingParams(
        max_tokens=req.max_tokens or DEFAULT_MAX_TOKENS,
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        stop=stop_sequences(req.stop),
        seed=req.seed,
        presence_penalty=req.presence_penalty or 0.0,
        frequency_penalty=req.frequency_penalty or 0.0,
        top_k=req.top_k or 0,
        repetition_penalty=req.repetition_penalty or 1.0,
    )
    return [
        InferenceRequest(request_id=request_id, model=req.model, prompt=p, sampling=sampling, n=n)
        for p in prompts
    ]


def _choice(index: int, text: str, finish_reason: str | None) -> dict[str, Any]:
    return {"text": text, "index": index, "logprobs": None, "finish_reason": finish_reason}


def completion_dict(
    *,
    completion_id: str,
    created: int,
    model: str,
    texts: list[str],
    finish_reasons: list[str],
    usage: TokenUsage,
) -> dict[str, Any]:
    """A ``text_completion`` object with one choice per text (index = position)."""
    return {
        "id": completion_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [_choice(i, t, finish_reasons[i]) for i, t in enumerate(texts)],
        "usage": usage_dict(usage),
        "system_fingerprint": None,
    }


class CompletionChunkWriter:
    """Builds the streamed ``text_completion`` objects of one response.

    Args:
        completion_id: Shared by every chunk.
        created: Unix seconds.
        model: Model id echoed in each chunk.
        include_usage: ``stream_options.include_usage``: every chunk carries ``"usage": null``
            and ``usage_chunk`` builds the final chunk with ``choices: []`` and the usage.
    """

    __slots__ = ("_head", "include_usage")

    def __init__(self, completion_id: str, created: int, model: str, include_usage: bool) -> None:
        self._head = {
            "id": completion_id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "system_fingerprint": None,
        }
        self.include_usage = include_usage

    def chunk(self, index: int, text: str, finish_reason: str | None = None) -> dict[str, Any]:
        obj = {**self._head, "choices": [_choice(index, text, finish_reason)]}
        if self.include_usage:
            obj["usage"] = None
        return obj

    def usage_chunk(self, usage: TokenUsage) -> dict[str, Any]:
        return {**self._head, "choices": [], "usage": usage_dict(usage)}


__all__ = [
    "DEFAULT_MAX_TOKENS",
    "CompletionChunkWriter",
    "CompletionRequest",
    "completion_dict",
    "prompt_texts",
    "to_inference_requests",
]
