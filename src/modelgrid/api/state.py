"""``AppState``: everything a request needs, built once by the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from modelgrid.config import Settings
from modelgrid.control import ControlPlane
from modelgrid.engines.process import EngineProcess
from modelgrid.routing import Grid
from modelgrid.serving.chat import ChatService
from modelgrid.serving.completions import CompletionService
from modelgrid.serving.dashscope import TextGenerationService
from modelgrid.serving.embeddings import EmbeddingService
from modelgrid.serving.metrics import Metrics
from modelgrid.serving.models import ModelRegistry
from modelgrid.tenancy.metering import UsageWriter
from modelgrid.tenancy.service import TenancyService


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
    control: ControlPlane  # workspaces, keys, prices, topology
    load_error: str | None = None
    grid: Grid | None = None  # the live topology and router (set by the lifespan)
    processes: dict[str, EngineProcess] = field(default_factory=dict)  # by model id
    extras: dict[str, Any] = field(default_factory=dict)


__all__ = ["AppState"]
