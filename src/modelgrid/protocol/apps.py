"""Wire objects of modelgrid's app API (``/v1/apps``): assistants, DashScope's "applications".

An app is a generation model, its instructions (the system prompt), the knowledge bases it
retrieves from (DashScope's ``pipeline_ids``) and how (``retrieval``), and the plugins its
model may call (``tools``, ``protocol.app_tools``). Objects are shaped like
the knowledge-base API's (``id``, ``object``, ``created_at`` in unix seconds, list pages with
``data``, ``first_id``, ``last_id``, ``has_more``); calling an app is DashScope's Application
API (``protocol.dashscope.apps``, ``docs/applications.md``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from modelgrid.protocol.app_tools import MAX_TOOLS, AppTool, ToolChoiceSetting
from modelgrid.protocol.text import Label, Prose

RetrievalMode = Literal["hybrid", "dense", "lexical"]
QueryRewrite = Literal["concat", "model"]
MemoryExtraction = Literal["rules", "model"]
MAX_KNOWLEDGE_BASES = 16
MAX_TOP_K = 20
MAX_INSTRUCTIONS = 20_000
MAX_TOOL_ROUNDS = 8


class RetrievalSettings(BaseModel):
    """How an app retrieves: the ``top_k`` best chunks over its knowledge bases, by ``mode``,
    with the query made from the conversation by ``query_rewrite``: ``concat`` (the earlier
    user turns and the new one) or ``model`` (the app's model writes one standalone query;
    ``serving.query_rewrite``). ``rerank``: the app's model re-ranks the retrieved chunks
    before the best ``top_k`` go into the prompt (``serving.rerank``; one metered request per
    candidate, off by default)."""

    model_config = ConfigDict(extra="forbid")

    top_k: StrictInt = Field(default=5, ge=1, le=MAX_TOP_K)
    mode: RetrievalMode = "hybrid"
    query_rewrite: QueryRewrite = "concat"
    rerank: StrictBool = False


class AppCreate(BaseModel):
    """``POST /v1/apps`` (and ``modelgrid apps create``)."""

    model_config = ConfigDict(extra="forbid")

    name: Label = Field(min_length=1, max_length=200)
    description: Prose = Field(default="", max_length=2000)
    model: str = Field(min_length=1, max_length=200)
    instructions: str = Field(default="", max_length=MAX_INSTRUCTIONS)
    knowledge_base_ids: list[str] = Field(default_factory=list, max_length=MAX_KNOWLEDGE_BASES)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    max_tokens: StrictInt | None = Field(default=None, ge=1, le=32_768)
    # how a memory's facts are taken from a user turn (``serving.memory``)
    memory_extraction: MemoryExtraction = "rules"
    # plugins the model may call (``protocol.app_tools``, ``serving.app_tools``)
    tools: list[AppTool] = Field(default_factory=list, max_length=MAX_TOOLS)
    tool_choice: ToolChoiceSetting = "auto"
    max_tool_rounds: StrictInt = Field(default=4, ge=1, le=MAX_TOOL_ROUNDS)


class AppUpdate(BaseModel):
    """``POST /v1/apps/{id}``: the fields given replace the app's (``null`` ``max_tokens``
    clears it; ``tools`` replaces the whole list, ``null`` is a 400: send ``[]``; a header
    value sent as the mask ``****`` keeps the stored value of that header of the tool of the
    same name, ``control.app_tools.restore_masked``)."""

    model_config = ConfigDict(extra="forbid")

    name: Label | None = Field(default=None, min_length=1, max_length=200)
    description: Prose | None = Field(default=None, max_length=2000)
    model: str | None = Field(default=None, min_length=1, max_length=200)
    instructions: str | None = Field(default=None, max_length=MAX_INSTRUCTIONS)
    knowledge_base_ids: list[str] | None = Field(default=None, max_length=MAX_KNOWLEDGE_BASES)
    retrieval: RetrievalSettings | None = None
    max_tokens: StrictInt | None = Field(default=None, ge=1, le=32_768)
    memory_extraction: MemoryExtraction | None = None
    tools: list[AppTool] | None = Field(default=None, max_length=MAX_TOOLS)
    tool_choice: ToolChoiceSetting | None = None
    max_tool_rounds: StrictInt | None = Field(default=None, ge=1, le=MAX_TOOL_ROUNDS)


class AppObject(BaseModel):
    id: str
    object: Literal["app"] = "app"
    name: str
    description: str
    model: str
    instructions: str
    knowledge_base_ids: list[str]
    retrieval: RetrievalSettings
    max_tokens: int | None = None
    memory_extraction: MemoryExtraction = "rules"
    tools: list[AppTool] = Field(default_factory=list)  # header values masked
    tool_choice: ToolChoiceSetting = "auto"
    max_tool_rounds: int = 4
    created_at: int
    updated_at: int


class AppList(BaseModel):
    object: Literal["list"] = "list"
    data: list[AppObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class AppDeleted(BaseModel):
    id: str
    object: Literal["app.deleted"] = "app.deleted"
    deleted: bool = True
    sessions: int = 0  # the end users' sessions deleted with it


MEMORY_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
MAX_FACT_CHARS = 500


class MemoryFactCreate(BaseModel):
    """``POST /v1/memories/{memory_id}/facts``: a fact to remember."""

    model_config = ConfigDict(extra="forbid")

    fact: str = Field(min_length=1, max_length=MAX_FACT_CHARS)


class MemoryFact(BaseModel):
    id: int
    object: Literal["memory.fact"] = "memory.fact"
    fact: str
    created_at: int


class MemoryObject(BaseModel):
    """An end user's long-term memory: its facts, oldest first."""

    id: str
    object: Literal["memory"] = "memory"
    facts: list[MemoryFact]


class MemoryDeleted(BaseModel):
    id: str
    object: Literal["memory.deleted", "memory.fact.deleted"] = "memory.deleted"
    deleted: bool = True
    facts: int = 0  # how many facts were deleted


class SessionTurn(BaseModel):
    user: str
    assistant: str
    created_at: int


class AppSessionObject(BaseModel):
    """An end user's session of an app, with its turns, oldest first."""

    id: str
    object: Literal["app.session"] = "app.session"
    app_id: str
    created_at: int
    updated_at: int
    turns: list[SessionTurn]


class AppSessionDeleted(BaseModel):
    id: str
    object: Literal["app.session.deleted"] = "app.session.deleted"
    deleted: bool = True
    turns: int = 0


__all__ = [
    "MAX_FACT_CHARS",
    "MAX_KNOWLEDGE_BASES",
    "MAX_TOOL_ROUNDS",
    "MAX_TOP_K",
    "MEMORY_ID_PATTERN",
    "AppCreate",
    "AppDeleted",
    "AppList",
    "AppObject",
    "AppSessionDeleted",
    "AppSessionObject",
    "AppUpdate",
    "MemoryDeleted",
    "MemoryExtraction",
    "MemoryFact",
    "MemoryFactCreate",
    "MemoryObject",
    "QueryRewrite",
    "RetrievalMode",
    "RetrievalSettings",
    "SessionTurn",
]
