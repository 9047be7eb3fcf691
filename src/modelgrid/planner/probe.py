"""``ChatProbe``: the calibration's ``Probe`` over HTTP — one streamed chat completion
through a gateway's OpenAI-compatible API, timed as the client sees it.

The request (https://platform.openai.com/docs/api-reference/chat/create): the user
message, ``max_tokens``, ``temperature`` 0, ``stream`` with ``stream_options.include_usage``
(the last chunk's ``usage``: ``prompt_tokens``, ``prompt_tokens_details.cached_tokens``,
``completion_tokens``). Times are ``time.perf_counter()`` less ``t0``: the send, the first
and the last chunk with content. The replica is the response's ``x-modelgrid-replica``
header (``serving.metered``: where the gateway placed the call).
"""

from __future__ import annotations

import json
import time
from types import TracebackType
from typing import Any

import httpx

from modelgrid.planner.calibration import Sample
from modelgrid.planner.errors import PlanInputError

REPLICA_HEADER = "x-modelgrid-replica"


class ChatProbe:
    """Sends chat completions to ``base_url`` (ending in ``/v1``) as ``model`` with ``key``
    (empty: no ``Authorization``, as a worker takes none). An async context manager.

    Args:
        base_url: The gateway's API root, e.g. ``http://127.0.0.1:8000/v1``.
        key: An API key the gateway accepts for ``model``.
        model: Served model id.
        max_tokens: Tokens each request may generate.
        t0: The clock's origin (``time.perf_counter()`` seconds).
        timeout_s: Per request.
    """

    def __init__(
        self,
        base_url: str,
        key: str,
        model: str,
        *,
        max_tokens: int = 16,
        t0: float = 0.0,
        timeout_s: float = 600.0,
    ) -> None:
        self.model, self.max_tokens, self.t0 = model, max_tokens, t0
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout_s)

    async def __aenter__(self) -> ChatProbe:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._client.aclose()

    async def __call__(self, text: str) -> Sample:
        """One request of user message ``text``.

        Raises:
            PlanInputError: the gateway could not be reached, answered an error (its
                message quoted), or streamed no content or no usage.
        """
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": text}],
            "max_tokens": self.max_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        first = last = None
        usage: dict[str, Any] = {}
        sent = time.perf_counter() - self.t0
        try:
            async with self._client.stream("POST", "/chat/completions", json=body) as resp:
                if resp.status_code != 200:
                    await resp.aread()
                    hint = (
                        " (is --url the API root, ending in /v1?)"
                        if resp.status_code == 404
                        else ""
                    )
                    raise PlanInputError(
                        f"calibration: {resp.request.url} answered {resp.status_code}: "
                        f"{_message(resp)}{hint}",
                        param="--url",
                    )
                replica = resp.headers.get(REPLICA_HEADER, "")
                async for line in resp.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    now = time.perf_counter() - self.t0
                    choices = chunk.get("choices") or []
                    if choices and choices[0].get("delta", {}).get("content"):
                        first = now if first is None else first
                        last = now
                    if chunk.get("usage"):
                        usage = chunk["usage"]
        except httpx.HTTPError as exc:
            why = str(exc) or type(exc).__name__
            raise PlanInputError(
                f"calibration: no answer from {self.base_url}: {why}", param="--url"
            ) from None
        if first is None or last is None or not usage:
            raise PlanInputError(
                "calibration: the stream carried no content or no usage", param="--url"
            )
        cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        return Sample(
            sent_s=sent,
            first_s=first,
            last_s=last,
            prompt_tokens=int(usage["prompt_tokens"]) - cached,
            output_tokens=int(usage["completion_tokens"]),
            replica=replica,
        )


def _message(resp: httpx.Response) -> str:
    """The error envelope's message (OpenAI's ``{"error": {"message"}}``), else the body."""
    try:
        return str(resp.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return resp.text[:200]


__all__ = ["REPLICA_HEADER", "ChatProbe"]
