"""An engine worker's state (``modelgrid engine``: ONE model replica, no database, no keys)
and what its own routes need: the ``WorkerState`` dependency and the in-flight counter.

``WorkerState`` is also the worker's ``ModelApi``, the state of the model-API routers it
shares with the gateway (``routers/openai.py``, ``routers/completions.py``): its callers are
authenticated by an optional shared token, checked in constant time, as one fixed principal.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from modelgrid.api.deps import bearer_token
from modelgrid.core.errors import AuthenticationError
from modelgrid.engines.base import Engine
from modelgrid.serving.chat import ChatService
from modelgrid.serving.completions import CompletionService
from modelgrid.serving.metrics import Metrics
from modelgrid.serving.models import ModelRegistry
from modelgrid.tenancy.service import Principal

WORKER_PRINCIPAL = Principal(key_id="worker", workspace_id="worker", role="tenant", name="worker")


@dataclass
class WorkerState:
    """The worker's replica and its load.

    Attributes:
        engine: The replica (started by the lifespan, in the background).
        models: The replica once started (empty while it loads).
        chat / completions: The gateway's services over ``models``, with a ``NullMeter``.
        metrics: ``/metrics``.
        region: Label for logs and ``/health/ready``.
        token: The bearer token callers must send (``None``: no check).
        in_flight: Chat and text-completion requests being answered (waiting or generating).
        load_error: Why starting the replica failed, if it did.
    """

    engine: Engine
    models: ModelRegistry
    chat: ChatService
    completions: CompletionService
    metrics: Metrics
    region: str
    token: str | None
    in_flight: int = 0
    load_error: str | None = None

    @property
    def sends_prompt_tokens(self) -> bool:
        return True  # the gateway in front bills the exact count from the first event

    async def authenticate(self, token: str | None) -> Principal:
        """``WORKER_PRINCIPAL``, after checking the bearer token when the worker has one.

        Raises:
            AuthenticationError: missing or wrong token (401).
        """
        if self.token is not None:
            given = (token or "").encode()
            if not hmac.compare_digest(given, self.token.encode()):
                raise AuthenticationError("Missing or incorrect worker token.")
        return WORKER_PRINCIPAL

    @property
    def queue_depth(self) -> int:
        return self.engine.queue_depth

    @property
    def running(self) -> int:
        return max(0, self.in_flight - self.engine.queue_depth)

    def load(self) -> dict[str, Any]:
        """The replica's load, as ``routing.health`` reads it from ``/health/ready``."""
        return {"queue_depth": self.queue_depth, "running": self.running}


async def worker_state(request: Request) -> WorkerState:
    state: WorkerState = request.app.state.worker
    return state


async def worker_caller(request: Request) -> WorkerState:
    """The state, after checking the caller's token (``WorkerState.authenticate``).

    Raises:
        AuthenticationError: missing or wrong token (401).
    """
    state: WorkerState = request.app.state.worker
    await state.authenticate(bearer_token(request))
    return state


WorkerDep = Annotated[WorkerState, Depends(worker_state)]
WorkerCallerDep = Annotated[WorkerState, Depends(worker_caller)]


class InFlight:
    """Pure ASGI: counts generation requests (chat and text completions) from arrival until
    their response has ended (so a stream counts until its last byte) in
    ``WorkerState.in_flight``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/completions"):
            await self.app(scope, receive, send)
            return
        state: WorkerState = scope["app"].state.worker
        state.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            state.in_flight -= 1


__all__ = [
    "WORKER_PRINCIPAL",
    "InFlight",
    "WorkerCallerDep",
    "WorkerDep",
    "WorkerState",
    "worker_caller",
    "worker_state",
]
