"""DashScope's Application API wire format: ``POST /api/v1/apps/{app_id}/completion``.

Reference: https://help.aliyun.com/zh/model-studio/application-api-reference (and the
official SDK's ``dashscope.app``). The body is ``{"input": {"prompt" | "messages",
"session_id", "memory_id", "biz_params"}, "parameters": {"rag_options", "has_thoughts",
"incremental_output", sampling...}}`` (the SDK also sends ``"model": ""``); unknown fields at
every level are accepted and ignored, as on the text-generation route. The answer is
``{"output": {"text", "finish_reason", "session_id", "doc_references", "thoughts"},
"usage": {"models": [{"model_id", "input_tokens", "output_tokens"}]}, "request_id"}``;
streamed, the same object is each ``result`` event's data (``finish_reason: "null"`` until
the last).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

from modelgrid.protocol import MAX_MESSAGES
from modelgrid.protocol.dashscope.models import Message

MAX_PROMPT_CHARS = 100_000
MAX_PIPELINES = 16


class RagOptions(BaseModel):
    """``parameters.rag_options``: which knowledge bases (``pipeline_ids``) and, within them,
    which documents to retrieve from: ``file_ids`` (document ids), ``metadata_filter`` (an
    object: documents whose metadata has every key with an equal value) and ``tags`` (an array
    of strings: documents carrying every tag), each narrowing the others. The two filters are
    kept as sent and checked by the service (``protocol.document_labels``), so that a bad one
    is a 400 naming ``parameters.rag_options.metadata_filter`` or ``.tags``."""

    model_config = ConfigDict(extra="allow")

    pipeline_ids: list[str] | None = Field(default=None, max_length=MAX_PIPELINES)
    file_ids: list[str] | None = Field(default=None, max_length=1000)
    metadata_filter: Any = None
    tags: Any = None


class AppInput(BaseModel):
    """``input``: a prompt (with ``session_id``, the session's earlier turns come with it) or a
    whole conversation (``messages``, which then replaces the session's history).
    ``doc_reference_type``: ``simple`` (the default) references every passage given to the
    model; ``indexed`` asks the model to cite passages with ``[n]`` markers and references
    the ones it cites."""

    model_config = ConfigDict(extra="allow")

    prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    messages: list[Message] | None = Field(default=None, max_length=MAX_MESSAGES)
    session_id: str | None = Field(default=None, max_length=64)
    memory_id: str | None = Field(default=None, max_length=64)
    doc_reference_type: Literal["simple", "indexed"] = "simple"
    biz_params: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _needs_one(self) -> AppInput:
        if not self.messages and not self.prompt:
            raise ValueError("input.prompt or input.messages is required")
        return self


class AppParameters(BaseModel):
    """``parameters``; sampling fields as on the text-generation route."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    rag_options: RagOptions | None = None
    has_thoughts: StrictBool = False
    incremental_output: StrictBool = False
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0.0, lt=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    top_k: Annotated[StrictInt, Field(ge=0, le=2**31 - 1)] | None = None
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None


class AppCompletionRequest(BaseModel):
    """The whole request body."""

    model_config = ConfigDict(extra="allow")

    input: AppInput
    parameters: AppParameters = Field(default_factory=AppParameters)


@dataclass(frozen=True, slots=True)
class DocReference:
    """A retrieved chunk the answer used: ``index_id`` is the ``n`` of its ``[n]`` marker."""

    index_id: str
    doc_id: str
    doc_name: str
    title: str
    text: str
    knowledge_base_id: str
    chunk_id: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "index_id": self.index_id,
            "title": self.title,
            "doc_id": self.doc_id,
            "doc_name": self.doc_name,
            "text": self.text,
            "knowledge_base_id": self.knowledge_base_id,
            "chunk_id": self.chunk_id,
            "score": round(self.score, 6),
        }


@dataclass(frozen=True, slots=True)
class ModelUsage:
    """One model's tokens in ``usage.models``."""

    model_id: str
    input_tokens: int
    output_tokens: int


def response_dict(
    *,
    request_id: str,
    text: str,
    finish_reason: str | None,
    session_id: str,
    usage: list[ModelUsage],
    doc_references: list[DocReference] | None = None,
    thoughts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The response object (or one stream event's data: ``finish_reason=None`` is the
    reference's string ``"null"``)."""
    output: dict[str, Any] = {
        "text": text,
        "finish_reason": finish_reason or "null",
        "session_id": session_id,
    }
    if doc_references is not None:
        output["doc_references"] = [r.to_dict() for r in doc_references]
    if thoughts is not None:
        output["thoughts"] = thoughts
    models = [
        {"model_id": u.model_id, "input_tokens": u.input_tokens, "output_tokens": u.output_tokens}
        for u in usage
    ]
    return {"output": output, "usage": {"models": models}, "request_id": request_id}


__all__ = [
    "AppCompletionRequest",
    "AppInput",
    "AppParameters",
    "DocReference",
    "ModelUsage",
    "RagOptions",
    "response_dict",
]
