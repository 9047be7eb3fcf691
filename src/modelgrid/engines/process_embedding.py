"""``ProcessEmbeddingEngine``: the ``EmbeddingEngine`` protocol over a supervised engine
process, so the embedding model (PyTorch) runs outside the gateway like the generation
models (``engines.process``).

The child (``modelgrid engine --engine embedding``) answers four calls on its loopback port,
with the token only this gateway knows (``api/worker.py``, ``/internal/embeddings…``):
``GET`` the model's facts, ``POST …/count``, ``…/decode`` and ``…/embed``. Each is idempotent,
so a call the dying child dropped is sent again to the next child, once, after waiting for it
(``restart_wait_s``); past that it is an ``EngineRestartingError`` (503 with ``Retry-After``).
A refusal by the child (a 400 naming the input) comes back as the same error.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncGenerator, Sequence
from dataclasses import replace
from typing import Any

import aiohttp

from modelgrid.core.errors import (
    EngineError,
    InvalidRequestError,
    ModelgridError,
)
from modelgrid.core.types import Delta, InferenceRequest
from modelgrid.engines.base import ModelCard, PreparedRequest
from modelgrid.engines.embedding import Embeddings, refuse_generation
from modelgrid.engines.process import EngineProcess

INTERNAL = "/internal/embeddings"


class ProcessEmbeddingEngine:
    """An embedding model served by a supervised child process (see the module docstring).

    Args:
        process: The supervisor of the child.
        card: What ``/v1/models`` shows (its window is replaced by the child's, at start).
        dimensions: Vector length.
        restart_wait_s: Longest a call waits for a restarting child.
    """

    def __init__(
        self,
        process: EngineProcess,
        card: ModelCard,
        *,
        dimensions: int,
        restart_wait_s: float = 15.0,
    ) -> None:
        self.process = process
        self.card = card
        self._dimensions = dimensions
        self.restart_wait_s = restart_wait_s
        self._session: aiohttp.ClientSession | None = None
        self._waiting = 0

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def max_input_tokens(self) -> int:
        return self.card.context_length

    @property
    def ready(self) -> bool:
        """Ready, or restarting after a death that is not part of a crash loop."""
        return self.process.serving

    @property
    def queue_depth(self) -> int:
        return self._waiting

    async def probe(self) -> bool:
        return self.ready

    async def start(self) -> None:
        """Start the child, then read the model's window from it.

        Raises:
            EngineError: the first children died or never got ready; the child's facts
                contradict the catalog.
        """
        await self.process.start()
        facts = await self._call("GET", "", None)
        if facts.get("dimensions") != self._dimensions:
            raise EngineError(
                f"The engine process of '{self.card.model_id}' gives {facts.get('dimensions')}"
                f"-dimensional vectors, expected {self._dimensions}."
            )
        self.card = replace(self.card, context_length=int(facts["max_input_tokens"]))

    async def count_tokens(self, texts: Sequence[str]) -> list[int]:
        counts = (await self._call("POST", "/count", {"texts": list(texts)}))["counts"]
        return [int(c) for c in counts]

    async def decode(self, token_ids: Sequence[Sequence[int]]) -> list[str]:
        payload = {"token_ids": [list(ids) for ids in token_ids]}
        return [str(t) for t in (await self._call("POST", "/decode", payload))["texts"]]

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        body = await self._call("POST", "/embed", {"texts": list(texts)})
        vectors = [base64.b64decode(v) for v in body["vectors"]]
        return Embeddings(vectors, int(body["dimensions"]))

    def prepare(self, request: InferenceRequest) -> PreparedRequest:
        refuse_generation(self.card)

    async def stream(self, prepared: PreparedRequest) -> AsyncGenerator[Delta, None]:
        refuse_generation(self.card)
        yield  # pragma: no cover - an async generator that never yields

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"authorization": f"Bearer {self.process.token}"},
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5.0),
                trust_env=False,
            )
        return self._session

    async def _call(self, method: str, path: str, payload: Any) -> dict[str, Any]:
        """One call to the child; sent again once to the next child if this one died.

        Raises:
            EngineRestartingError: no child ready within ``restart_wait_s``.
            InvalidRequestError: the child refused the input (its 400).
            EngineError: the child failed otherwise.
        """
        url = f"http://{self.process.host}:{self.process.port}{INTERNAL}{path}"
        self._waiting += 1
        try:
            for attempt in (1, 2):
                if not await self.process.wait_ready(self.restart_wait_s):
                    raise self.process.restarting_error()
                incarnation = self.process.incarnation
                try:
                    async with self._client().request(method, url, json=payload) as r:
                        body = await r.json(content_type=None)
                        if r.status == 200 and isinstance(body, dict):
                            return body
                        raise _refusal(r.status, body, self.card.model_id)
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    if attempt == 2 or not await self.process.died_since(incarnation):
                        raise EngineError(
                            f"The engine process of '{self.card.model_id}' failed: "
                            f"{type(exc).__name__}."
                        ) from None
            raise AssertionError("unreachable")
        finally:
            self._waiting -= 1

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self.process.aclose()


def _refusal(status: int, body: Any, model: str) -> ModelgridError:
    """The child's error answer as the error it was (OpenAI's error shape)."""
    err = body.get("error") if isinstance(body, dict) else None
    if status == 400 and isinstance(err, dict):
        return InvalidRequestError(
            str(err.get("message") or "Invalid input."),
            param=err.get("param"),
            code=err.get("code"),
        )
    return EngineError(f"The engine process of '{model}' answered HTTP {status}.")


__all__ = ["INTERNAL", "ProcessEmbeddingEngine"]
