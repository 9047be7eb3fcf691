"""Scripted replicas for routing tests: each records the requests it was sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from modelgrid.core.errors import UpstreamError
from modelgrid.core.types import Delta, FinishReason, InferenceRequest
from modelgrid.engines.base import ModelCard, PreparedRequest


class ScriptedReplica:
    """``mode``: ``ok`` answers; ``fails`` refuses before the first delta (like a connection
    refused); ``dies`` fails after its first delta (a replica killed mid-stream)."""

    def __init__(
        self,
        model: str,
        replica_id: str,
        mode: str = "ok",
        calls: list[str] | None = None,
        *,
        delay_s: float = 0.0,
        ready: bool = True,
    ) -> None:
        self.card = ModelCard(model, "test", 0, 4096)
        self.replica_id = replica_id
        self.mode = mode
        self.calls = calls if calls is not None else []
        self.delay_s = delay_s
        self._ready = ready

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def queue_depth(self) -> int:
        return 0

    async def start(self) -> None:
        return None

    def prepare(self, request: InferenceRequest) -> PreparedRequest:
        return PreparedRequest(request, 3, 8, payload=self.replica_id)

    async def stream(self, prepared: PreparedRequest) -> AsyncIterator[Delta]:
        assert prepared.payload == self.replica_id  # prepared on this very replica
        self.calls.append(self.replica_id)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.mode == "fails":
            raise UpstreamError(f"{self.replica_id} refused the connection")
        yield Delta(0, self.replica_id, 1)
        if self.mode == "dies":
            raise UpstreamError(
                f"{self.replica_id} dropped the stream", code="upstream_disconnected"
            )
        yield Delta(0, "", 1, FinishReason.STOP)

    async def aclose(self) -> None:
        return None
