"""The ``EmbeddingEngine`` protocol over a ``modelgrid engine`` worker serving an embedding
model: ``WorkerEmbeddingEngine``, the client, over an ``EmbeddingWorker`` — the gateway's own
supervised child (``ProcessEmbeddingEngine``: the embedding model, PyTorch, runs outside the
gateway like the generation models, ``engines.process``) or a worker elsewhere
(``RemoteWorker``: an ``upstream`` replica of the topology).

The worker (``modelgrid engine --engine embedding``) answers four calls, with its token if it
has one (``api/routers/engine_rpc.py``, ``/internal/embeddings…``): ``GET`` the model's facts,
``POST …/count``, ``…/decode`` and ``…/embed``. Each is idempotent, so a call a dying child
dropped is sent again to the next child, once, after waiting for it (``restart_wait_s``);
past that it is an ``EngineRestartingError`` (503 with ``Retry-After``). A remote worker has
no supervisor here: its failure is an ``EngineError`` and the router fails over. A refusal by
the worker (a 400 naming the input) comes back as the same error.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol

import aiohttp

from modelgrid.core.errors import (
    EngineError,
    InvalidRequestError,
    ModelgridError,
    ServiceUnavailableError,
)
from modelgrid.engines.base import ModelCard
from modelgrid.engines.embedding import EmbeddingOnly, Embeddings
from modelgrid.engines.process import EngineProcess

INTERNAL = "/internal/embeddings"


class EmbeddingWorker(Protocol):
    """Where a worker answers, and what its supervisor (if any) knows of its restarts."""

    @property
    def base_url(self) -> str:
        """The worker's API root (``http://host:port/v1``; a restarted child may move)."""
        ...

    @property
    def token(self) -> str | None:
        """The bearer token the worker wants (``None``: none)."""
        ...

    @property
    def incarnation(self) -> int:
        """Workers started so far (a call sent to an earlier one met a death)."""
        ...

    @property
    def serving(self) -> bool:
        """Ready, or about to be again (calls wait for it)."""
        ...

    async def start(self) -> None: ...

    async def wait_ready(self, timeout_s: float) -> bool: ...

    def restarting_error(self) -> ModelgridError: ...

    async def died_since(self, incarnation: int) -> bool: ...

    async def aclose(self) -> None: ...


class RemoteWorker:
    """A worker this gateway does not supervise (an ``upstream`` replica at ``base_url``):
    nothing to wait for or resend to; its health is the router's (probes, breakers)."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.incarnation = 0
        self.serving = True

    async def start(self) -> None:
        return None

    async def wait_ready(self, timeout_s: float) -> bool:
        return True

    def restarting_error(self) -> ModelgridError:
        return ServiceUnavailableError(f"The engine worker at {self.base_url} is not ready.")

    async def died_since(self, incarnation: int) -> bool:
        return False

    async def aclose(self) -> None:
        return None


class WorkerEmbeddingEngine(EmbeddingOnly):
    """An embedding model served by a worker (see the module docstring).

    Args:
        worker: Where the worker answers.
        card: What ``/v1/models`` shows (its window is replaced by the worker's, at start).
        dimensions: Vector length.
        restart_wait_s: Longest a call waits for a restarting child.
    """

    def __init__(
        self,
        worker: EmbeddingWorker,
        card: ModelCard,
        *,
        dimensions: int,
        restart_wait_s: float = 15.0,
    ) -> None:
        self.worker = worker
        self.card = card
        self._dimensions = dimensions
        self.restart_wait_s = restart_wait_s
        self._session: aiohttp.ClientSession | None = None
        self._waiting = 0
        self._facts_read = False

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def max_input_tokens(self) -> int:
        return self.card.context_length

    @property
    def ready(self) -> bool:
        """Ready, or restarting after a death that is not part of a crash loop."""
        return self.worker.serving

    @property
    def queue_depth(self) -> int:
        return self._waiting

    async def start(self) -> None:
        """Start the worker (a child), then read the model's window from it.

        Raises:
            EngineError: the first children died or never got ready; the worker cannot be
                reached; its facts contradict the catalog.
        """
        await self.worker.start()
        await self._read_facts()

    async def _read_facts(self) -> None:
        facts = await self._call("GET", "", None)
        if facts.get("dimensions") != self._dimensions:
            raise EngineError(
                f"The engine worker of '{self.card.model_id}' gives {facts.get('dimensions')}"
                f"-dimensional vectors, expected {self._dimensions}."
            )
        self.card = replace(self.card, context_length=int(facts["max_input_tokens"]))
        self._facts_read = True

    async def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text; a remote worker unreachable at ``start`` is asked its window
        first (``max_input_tokens`` is read after this call)."""
        if not self._facts_read:
            await self._read_facts()
        counts = (await self._call("POST", "/count", {"texts": list(texts)}))["counts"]
        return [int(c) for c in counts]

    async def decode(self, token_ids: Sequence[Sequence[int]]) -> list[str]:
        payload = {"token_ids": [list(ids) for ids in token_ids]}
        return [str(t) for t in (await self._call("POST", "/decode", payload))["texts"]]

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        body = await self._call("POST", "/embed", {"texts": list(texts)})
        vectors = [base64.b64decode(v) for v in body["vectors"]]
        return Embeddings(vectors, int(body["dimensions"]))

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            token = self.worker.token
            self._session = aiohttp.ClientSession(
                headers={"authorization": f"Bearer {token}"} if token else None,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5.0),
                trust_env=False,
            )
        return self._session

    async def _call(self, method: str, path: str, payload: Any) -> dict[str, Any]:
        """One call to the worker; sent again once to the next child if this one died.

        Raises:
            EngineRestartingError: no child ready within ``restart_wait_s``.
            InvalidRequestError: the worker refused the input (its 400).
            EngineError: the worker failed otherwise.
        """
        worker = self.worker
        self._waiting += 1
        try:
            for attempt in (1, 2):
                if not await worker.wait_ready(self.restart_wait_s):
                    raise worker.restarting_error()
                incarnation = worker.incarnation
                url = f"{worker.base_url.removesuffix('/v1')}{INTERNAL}{path}"
                try:
                    async with self._client().request(method, url, json=payload) as r:
                        body = await r.json(content_type=None)
                        if r.status == 200 and isinstance(body, dict):
                            return body
                        raise _refusal(r.status, body, self.card.model_id)
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    if attempt == 2 or not await worker.died_since(incarnation):
                        raise EngineError(
                            f"The engine worker of '{self.card.model_id}' failed: "
                            f"{type(exc).__name__}."
                        ) from None
            raise AssertionError("unreachable")
        finally:
            self._waiting -= 1

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self.worker.aclose()


class ProcessEmbeddingEngine(WorkerEmbeddingEngine):
    """An embedding model served by this gateway's own supervised child process.

    Args:
        process: The supervisor of the child.
        card / dimensions / restart_wait_s: See ``WorkerEmbeddingEngine``.
    """

    def __init__(
        self,
        process: EngineProcess,
        card: ModelCard,
        *,
        dimensions: int,
        restart_wait_s: float = 15.0,
    ) -> None:
        super().__init__(process, card, dimensions=dimensions, restart_wait_s=restart_wait_s)
        self.process = process


def _refusal(status: int, body: Any, model: str) -> ModelgridError:
    """The child's error answer as the error it was (OpenAI's error shape)."""
    err = body.get("error") if isinstance(body, dict) else None
    if status == 400 and isinstance(err, dict):
        return InvalidRequestError(
            str(err.get("message") or "Invalid input."),
            param=err.get("param"),
            code=err.get("code"),
        )
    return EngineError(f"The engine worker of '{model}' answered HTTP {status}.")


__all__ = [
    "INTERNAL",
    "EmbeddingWorker",
    "ProcessEmbeddingEngine",
    "RemoteWorker",
    "WorkerEmbeddingEngine",
]
