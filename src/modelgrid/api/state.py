"""``AppState``: everything a gateway request needs, built once by the app's lifespan; and
``ModelApi``, the narrow state of the model-API routers that an engine worker provides too."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from modelgrid.config import Settings
from modelgrid.control import ControlPlane
from modelgrid.control.batches import Batches
from modelgrid.control.knowledge import KnowledgeBases
from modelgrid.control.vector_store_files import VectorStoreFiles
from modelgrid.control.vector_stores import VectorStores
from modelgrid.core.errors import PermissionDeniedError
from modelgrid.engines.process import EngineProcess
from modelgrid.jobs.batch_runner import BatchRunner
from modelgrid.routing import Grid
from modelgrid.serving.apps import AppService
from modelgrid.serving.chat import ChatService
from modelgrid.serving.completions import CompletionService
from modelgrid.serving.dashscope import TextGenerationService
from modelgrid.serving.embeddings import EmbeddingService
from modelgrid.serving.file_search import FileSearch
from modelgrid.serving.knowledge import Retrieval
from modelgrid.serving.messages import MessagesService
from modelgrid.serving.metrics import Metrics
from modelgrid.serving.models import ModelRegistry
from modelgrid.serving.rerank import ChatReranker
from modelgrid.serving.responses import ResponsesService
from modelgrid.tenancy.metering import UsageWriter
from modelgrid.tenancy.service import Principal, TenancyService


class ModelApi(Protocol):
    """What the OpenAI generation routers (``routers/openai.py``, ``routers/completions.py``)
    need, and no more: the gateway's ``AppState`` and an engine worker's ``WorkerState`` both
    provide it (``api.deps.provide_model_api``), so the two apps serve the same routes."""

    @property
    def models(self) -> ModelRegistry: ...

    @property
    def chat(self) -> ChatService: ...

    @property
    def completions(self) -> CompletionService: ...

    @property
    def sends_prompt_tokens(self) -> bool:
        """Whether answers carry the exact prompt count (``engines.upstream``'s
        ``PROMPT_TOKENS_HEADER``, which a gateway reads from the workers it routes to)."""
        ...

    async def authenticate(self, token: str | None) -> Principal:
        """The caller of a bearer token (``None``: none sent).

        Raises:
            AuthenticationError: missing or unknown credentials (401).
            PermissionDeniedError: credentials not for the model API (403).
        """
        ...


@dataclass(frozen=True, slots=True)
class Knowledge:
    """Knowledge bases: their control-plane operations and retrieval; OpenAI's vector
    stores over them (their files, and their search, which ``file_search`` uses too)."""

    bases: KnowledgeBases
    retrieval: Retrieval
    stores: VectorStores
    store_files: VectorStoreFiles
    file_search: FileSearch
    reranker: ChatReranker | None = None  # a knowledge-base search's ``rerank``


@dataclass
class AppState:
    settings: Settings
    db: AsyncEngine
    sessions: async_sessionmaker[Any]
    usage: UsageWriter
    tenancy: TenancyService
    models: ModelRegistry
    metrics: Metrics
    chat: ChatService
    completions: CompletionService
    embeddings: EmbeddingService
    text_generation: TextGenerationService  # DashScope's native generation
    messages: MessagesService  # Anthropic's Messages API
    responses: ResponsesService  # OpenAI's Responses API (with its stored responses)
    control: ControlPlane  # workspaces, keys, prices, topology
    batches: Batches  # the Batch API's operations (the runner: ``batch_runner``)
    batch_runner: BatchRunner
    load_error: str | None = None
    knowledge: Knowledge | None = None  # knowledge bases (None: this database has no index)
    apps: AppService | None = None  # DashScope's Application API (set by the lifespan)
    grid: Grid | None = None  # the live topology and router (set by the lifespan)
    processes: dict[str, EngineProcess] = field(default_factory=dict)  # by model id
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def sends_prompt_tokens(self) -> bool:
        return False  # the gateway's clients get usage in the body, as OpenAI's do

    async def authenticate(self, token: str | None) -> Principal:
        """A tenant key's principal (``ModelApi``). Admin keys manage the service
        (``/admin/v1``) and are refused on the model API with 403, so an admin secret never
        travels with everyday traffic.

        Raises:
            AuthenticationError: missing, malformed, unknown, revoked or expired key (401).
            PermissionDeniedError: an admin key (403).
        """
        found = await self.tenancy.authenticate(token)
        if found.is_admin:
            raise PermissionDeniedError(
                "Admin keys are for the admin API (/admin/v1) only; use a tenant key.",
                code="admin_key_not_allowed",
            )
        return found


__all__ = ["AppState", "Knowledge", "ModelApi"]
