"""A replica behind any OpenAI-compatible HTTP endpoint: vLLM, SGLang, llama.cpp's server,
Ollama, DashScope's compatible mode, another modelgrid, or a ``modelgrid engine`` worker.

One pooled ``aiohttp.ClientSession`` per replica (created by ``start``, on the event loop).
aiohttp rather than httpx: on this path each streamed token is one read, and httpx's stack
(httpcore, h11, anyio) costs about 0.9 ms of CPU per 22-event stream against aiohttp's
0.16 ms (measured here, see ``bench/RESULTS.md``, gateway_overhead) — most of a gateway's
per-request budget. A streamed request (``InferenceRequest.stream``) is a streaming call
(``stream: true``, ``stream_options.include_usage``): deltas are yielded as the upstream's
chunks arrive, and the usage comes from its final usage chunk. A non-streamed one is a plain
call: its one JSON body becomes one delta per choice and the finish deltas, with the body's
usage (a third of the gateway's CPU per request against 20-chunk answers, see
``bench/RESULTS.md``); its "first token" is then the whole answer.

Token counts. ``prepare`` cannot tokenize (the tokenizer is the upstream's), so the prompt
count it reports is an estimate, used only for admission (a ``modelgrid engine`` worker sends
its exact count in the ``x-modelgrid-prompt-tokens`` response header, which replaces the
estimate before the first token): ``ceil(characters / 4)`` of the
messages' text (OpenAI's rule of thumb for English; code and CJK run denser, so it
under-counts them) plus 4 tokens per message and 3 for the reply's priming (the chat
overhead of OpenAI's cookbook), plus the tools' JSON text the same way. The context-window
check is left to the upstream, whose 400 comes back as ``ContextLengthExceededError``. When
the usage chunk arrives, the exact prompt count replaces the estimate
(``PreparedRequest.report_prompt_tokens``) and the exact completion count goes on each
choice's finish delta; an upstream that sends no usage is metered by counting its content
chunks (one token each, the way vLLM, SGLang and llama.cpp stream).

Deltas are yielded as the upstream's bytes arrive; the chunks of one read (what the
upstream had sent by the time the gateway read) become one delta per choice (``_coalesce``),
so a gateway that falls behind catches up with less work, never by waiting. Finish deltas are
held until the stream ends (they arrive right before the usage chunk) so they can carry the
exact counts; content is never held.

Errors (before the first delta unless said otherwise):

- connection refused / unreachable, or the connection dropped before a response →
  ``UpstreamError`` 502, ``retryable`` (a pooled connection the upstream had just closed is
  retried once on a fresh one first);
- connect or pool timeout → ``UpstreamTimeoutError`` 504, ``retryable``; a read timeout
  (no byte for ``read_timeout_s``) → ``UpstreamTimeoutError``, not retryable;
- upstream 400 → ``InvalidRequestError`` with its message (``ContextLengthExceededError``
  when it says so); 404 → ``ModelNotFoundError``; 429 → ``RateLimitError`` (``Retry-After``
  kept, ``retryable``); other 4xx keep their status; 401/403 (the gateway's credentials) and
  5xx → ``UpstreamError`` 502 (``retryable`` for 401/403/502/503);
- after the first delta: a dropped connection, a read timeout or an error event →
  ``UpstreamError``/``UpstreamTimeoutError`` mid-stream (serving sends an error event).

A **pool** (``pool=True``: an endpoint balancing over engines of its own, a Ray Serve
application, ``docs/fleet.md``): the failures the pool answers for — a 5xx, a stream cut
mid-body, a connection closed without a response — are not held against it
(``replica_fault`` false: the pool replaces its failed members, and the router tries the pool
again); only failing to reach it (connection refused or timed out) is. With
``prefix_header`` the prompt's prefix fingerprint (``InferenceRequest.prefix_fingerprint``,
hex block hashes joined by ``.``) goes in that header, for a pool that routes by it.

Cancelling the consumer (client disconnect) closes the upstream response, and so its
connection, at once: the upstream sees the disconnect and stops generating.

Tokenization (``tokenize``, ``detokenize``) is vLLM's ``POST /tokenize`` and ``/detokenize``
at the server's root (``http://host:8000/v1`` → ``http://host:8000/tokenize``), which a
``modelgrid engine`` worker serves too; errors as above, and a 404/405 from a server without
those routes is an ``UpstreamError`` (502, code ``tokenize_unsupported``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
from yarl import URL

from modelgrid.core.errors import (
    ContextLengthExceededError,
    InvalidRequestError,
    ModelgridError,
    ModelNotFoundError,
    RateLimitError,
    UpstreamClientError,
    UpstreamError,
    UpstreamTimeoutError,
)
from modelgrid.core.types import Delta, FinishReason, InferenceRequest, RoutingHints
from modelgrid.engines import openai_wire as wire
from modelgrid.engines.base import PREPARED, ModelCard, PreparedRequest, Probed, TokenizeOptions

log = logging.getLogger("modelgrid.engines.upstream")

DEFAULT_CONTEXT_LENGTH = 32768
CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4
TOKENS_REPLY_PRIMING = 3
PROBE_TIMEOUT_S = 5.0
PROMPT_TOKENS_HEADER = "x-modelgrid-prompt-tokens"  # a modelgrid worker's exact prompt count
PRIORITY_HEADER = "x-modelgrid-priority"  # "batch": a preemptible batch line, to a worker


def estimate_prompt_tokens(request: InferenceRequest) -> int:
    """The prompt's length in tokens, estimated without a tokenizer (see the module doc)."""
    if request.prompt is not None:
        return max(1, math.ceil(len(request.prompt) / CHARS_PER_TOKEN))
    chars = 0
    messages = request.messages or ()
    for m in messages:
        chars += len(m.content or "")
        for call in m.tool_calls or ():
            chars += len(call.name) + len(call.arguments)
    if request.tools:
        chars += sum(
            len(t.name) + len(t.description or "") + len(json.dumps(t.parameters or {}))
            for t in request.tools
        )
    overhead = TOKENS_PER_MESSAGE * len(messages) + TOKENS_REPLY_PRIMING
    return math.ceil(chars / CHARS_PER_TOKEN) + overhead


@dataclass(frozen=True, slots=True)
class _Payload:
    url: URL
    body: bytes


@dataclass(frozen=True, slots=True)
class Probe:
    """One health probe: ``ok`` when the upstream answered 200 within 5 s; ``detail`` names
    the failure."""

    ok: bool
    latency_ms: float
    detail: str = ""


class UpstreamEngine(Probed):
    """One replica served by an OpenAI-compatible endpoint.

    Args:
        model_id: The id clients use.
        base_url: The upstream's API root, e.g. ``http://10.0.0.5:8000/v1`` (the one the
            ``openai`` SDK would take).
        upstream_model: The model name the upstream knows (default: ``model_id``).
        api_key: Sent as ``Authorization: Bearer``; ``None`` sends none.
        connect_timeout_s: Limit for opening a TCP (and TLS) connection.
        read_timeout_s: Longest silence while waiting for the response or between chunks (a
            non-streamed request's whole answer must come within it: it is one plain call);
            ``None``: no limit (a supervisor judges hangs, ``engines.process_engine``).
        pool_timeout_s: Longest wait for a pooled connection, opening included.
        max_connections: Size of the connection pool (concurrent calls to this upstream).
        keepalive_s: How long an idle pooled connection is kept; below the 5 s of uvicorn
            (vLLM, SGLang, modelgrid), so the gateway closes first.
        context_length: Window shown in ``/v1/models``; ``None`` asks the upstream's
            ``/models`` at start (vLLM's ``max_model_len``, modelgrid's ``context_length``),
            falling back to 32768.
        owned_by: ``owned_by`` shown in ``/v1/models``.
        pool: The endpoint balances over a pool of engines (see the module docstring).
        prefix_header: Header to send the prompt's prefix fingerprint in (``None``: none).
    """

    def __init__(
        self,
        model_id: str,
        base_url: str,
        *,
        upstream_model: str | None = None,
        api_key: str | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float | None = 300.0,
        pool_timeout_s: float = 30.0,
        max_connections: int = 512,
        keepalive_s: float = 4.0,
        context_length: int | None = None,
        owned_by: str = "upstream",
        pool: bool = False,
        prefix_header: str | None = None,
    ) -> None:
        self.card = ModelCard(
            model_id=model_id,
            owned_by=owned_by,
            created=int(time.time()),
            context_length=context_length or DEFAULT_CONTEXT_LENGTH,
        )
        self.base_url = base_url.rstrip("/") + "/"
        self.upstream_model = upstream_model or model_id
        self.pool = pool
        self.prefix_header = prefix_header
        self._discover_context = context_length is None
        self._headers = {"accept": "text/event-stream", "content-type": "application/json"}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=pool_timeout_s,
            sock_connect=connect_timeout_s,
            sock_read=read_timeout_s,
        )
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._urls = {
            path: URL(self.base_url + path) for path in ("chat/completions", "completions")
        }
        root = (
            self.base_url.removesuffix("v1/") if self.base_url.endswith("/v1/") else self.base_url
        )
        self._urls.update({path: URL(root + path) for path in ("tokenize", "detokenize")})
        self._session: aiohttp.ClientSession | None = None
        self._started = False
        self._waiting = 0
        self._running = 0

    @classmethod
    def from_settings(cls, s: Any) -> UpstreamEngine:
        """From a ``config.UpstreamSettings``."""
        key = s.api_key.get_secret_value() if s.api_key is not None else None
        return cls(
            s.model,
            s.base_url,
            upstream_model=s.upstream_model,
            api_key=key or None,
            connect_timeout_s=s.connect_timeout_s,
            read_timeout_s=s.read_timeout_s,
            pool_timeout_s=s.pool_timeout_s,
            max_connections=s.max_connections,
            keepalive_s=s.keepalive_s,
            context_length=s.context_length,
            owned_by=s.owned_by,
        )

    @property
    def ready(self) -> bool:
        return self._started

    @property
    def queue_depth(self) -> int:
        """Calls sent and still waiting for the upstream's response headers."""
        return self._waiting

    @property
    def running(self) -> int:
        """Calls whose response is streaming."""
        return self._running

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(
                    limit=self._max_connections, keepalive_timeout=self._keepalive_s
                ),
                cookie_jar=aiohttp.DummyCookieJar(),  # shared by all tenants: keep no cookies
                trust_env=False,
            )
        return self._session

    async def start(self) -> None:
        """Open the pool; with ``context_length=None``, first ask ``/models`` for the window
        (best effort: an unreachable upstream is logged, and requests fail over it later)."""
        if self._started:
            return
        self._client()
        if self._discover_context:
            window = await self._discover_window()
            if window:
                self.card = replace(self.card, context_length=window)
        self._started = True

    async def _discover_window(self) -> int | None:
        try:
            async with self._client().get(
                self.base_url + "models", timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
            ) as r:
                data = (await r.json(content_type=None)).get("data", []) if r.status == 200 else []
        except (aiohttp.ClientError, TimeoutError, ValueError, AttributeError) as exc:
            log.warning("upstream %s: cannot list its models: %r", self.base_url, exc)
            return None
        for entry in data if isinstance(data, list) else ():
            if isinstance(entry, dict) and entry.get("id") == self.upstream_model:
                for key in ("max_model_len", "context_length", "context_window"):
                    if isinstance(entry.get(key), int):
                        return int(entry[key])
        return None

    async def probe(self) -> Probe:
        """``GET {base_url}/models``, else ``GET /health`` at the server's root."""
        started = time.perf_counter()
        detail = ""
        timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
        for url in (URL(self.base_url + "models"), URL(self.base_url).with_path("/health")):
            try:
                async with self._client().get(url, timeout=timeout) as r:
                    await r.read()
                    status = r.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                detail = repr(exc)
                break  # the server is unreachable: no point in a second path
            if status == 200:
                return Probe(True, (time.perf_counter() - started) * 1000)
            detail = f"HTTP {status} from {url.path}"
        return Probe(False, (time.perf_counter() - started) * 1000, detail)

    async def health(self) -> bool:
        return (await self.probe()).ok

    def prepare(self, request: InferenceRequest) -> PreparedRequest:
        """Estimate the prompt's tokens and encode the upstream request (no I/O)."""
        estimate = estimate_prompt_tokens(request)
        wanted = request.sampling.max_tokens
        max_new = wanted if wanted is not None else max(1, self.card.context_length - estimate)
        body = wire.encode(wire.request_body(request, self.upstream_model))
        return PreparedRequest(
            request=request,
            prompt_tokens=estimate,
            max_new_tokens=max_new,
            payload=_Payload(self._urls[wire.request_path(request)], body),
            prompt_tokens_estimated=True,
        )

    async def _send(
        self,
        payload: _Payload,
        request_id: str,
        stream: bool,
        preemptible: bool = False,
        trace: dict[str, str] | None = None,
        prefix: tuple[int, ...] = (),
    ) -> aiohttp.ClientResponse:
        """POST and wait for the response headers; a pooled connection the upstream closed
        meanwhile (no response at all) is retried once. A batch line says so
        (``PRIORITY_HEADER``): a modelgrid worker may then abort it mid-step when it is
        cancelled. ``trace``: the caller's W3C trace context (``InferenceRequest.
        trace_headers``), sent along."""
        session = self._client()
        headers = {"x-request-id": request_id}
        if trace:
            headers.update(trace)
        if not stream:
            headers["accept"] = "application/json"
        if preemptible:
            headers[PRIORITY_HEADER] = "batch"
        if self.prefix_header and prefix:
            headers[self.prefix_header] = prefix_key(prefix)
        for attempt in (1, 2):
            try:
                return await session.post(payload.url, data=payload.body, headers=headers)
            except aiohttp.ServerDisconnectedError as exc:
                if attempt == 2:
                    raise self._transport_error(exc, started=False) from exc
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise self._transport_error(exc, started=False) from exc
        raise AssertionError("unreachable")

    async def stream(self, prepared: PreparedRequest) -> AsyncGenerator[Delta, None]:
        self._waiting += 1
        try:
            request = prepared.request
            response = await self._send(
                prepared.payload,
                request.request_id,
                request.stream,
                request.preemptible,
                request.trace_headers,
                request.prefix_fingerprint,
            )
        finally:
            self._waiting -= 1
        self._running += 1
        reading = False
        try:
            if response.status != 200:
                raise await self._status_error(response)
            counted = response.headers.get(PROMPT_TOKENS_HEADER)
            if counted is not None and counted.isdigit() and prepared.prompt_tokens_estimated:
                # A modelgrid worker's exact count, before the first token (not only at the end)
                prepared.report_prompt_tokens(int(counted), prepared.cached_prompt_tokens)
            reading = True
            if prepared.request.stream or response.content_type == "text/event-stream":
                async for delta in self._deltas(response, prepared):
                    yield delta
            else:
                for delta in await self._whole(response, prepared):
                    yield delta
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._transport_error(exc, started=reading) from exc
        finally:
            self._running -= 1
            if response.content.at_eof():
                response.release()  # the connection goes back to the pool
            else:
                response.close()  # cut short: the upstream sees the disconnect

    async def _deltas(
        self, response: aiohttp.ClientResponse, prepared: PreparedRequest
    ) -> AsyncGenerator[Delta, None]:
        """The stream's deltas, those of one read merged (``_coalesce``), then the finish
        deltas."""
        parser = wire.StreamParser(prepared.request, self._event_error)
        decoder = wire.SSEDecoder()
        done = False
        async for raw in response.content.iter_any():
            if done:  # read to the body's end, so the connection goes back to the pool
                continue
            arrived: list[Delta] = []
            try:
                for data in decoder.feed(raw):
                    deltas = parser.event(data)
                    if deltas is None:
                        done = True
                        break
                    arrived += deltas
            finally:  # an error event still lets what came before it through
                for delta in _coalesce(arrived):
                    yield delta
            if done:
                for delta in self._finish(parser, prepared, done=True):
                    yield delta
        if not done:
            tail = [d for data in decoder.close() for d in parser.event(data) or ()]
            for delta in [*_coalesce(tail), *self._finish(parser, prepared, done=False)]:
                yield delta

    async def _whole(
        self, response: aiohttp.ClientResponse, prepared: PreparedRequest
    ) -> list[Delta]:
        """A non-streamed answer's deltas: its content, then the finish deltas."""
        parser = wire.StreamParser(prepared.request, self._event_error)
        deltas = parser.whole(await response.read())
        return [*deltas, *self._finish(parser, prepared, done=True)]

    async def tokenize(
        self, request: InferenceRequest, options: TokenizeOptions = PREPARED
    ) -> list[int]:
        """The upstream's ``/tokenize`` of ``request`` (see the module doc)."""
        body = wire.tokenize_body(request, self.upstream_model, options)
        tokens = (await self._call("tokenize", body, request.request_id)).get("tokens")
        if not isinstance(tokens, list) or not all(type(t) is int for t in tokens):
            raise self._malformed("tokenize")
        return tokens

    async def detokenize(self, tokens: Sequence[int], routing: RoutingHints | None = None) -> str:
        """The upstream's ``/detokenize`` of ``tokens``."""
        body = {"model": self.upstream_model, "tokens": list(tokens)}
        prompt = (await self._call("detokenize", body, None)).get("prompt")
        if not isinstance(prompt, str):
            raise self._malformed("detokenize")
        return prompt

    async def _call(self, path: str, body: dict[str, Any], request_id: str | None) -> Any:
        """One plain JSON call to ``/{path}`` at the server's root; its JSON object.

        Raises:
            UpstreamError: no such route there (``tokenize_unsupported``), a malformed
                answer, or a failure as for generation (``_status_error``,
                ``_transport_error``); InvalidRequestError and the like: its refusal.
        """
        headers = {"accept": "application/json"}
        if request_id:
            headers["x-request-id"] = request_id
        try:
            async with self._client().post(
                self._urls[path], data=wire.encode(body), headers=headers
            ) as response:
                if response.status in (404, 405):
                    raise UpstreamError(
                        f"The upstream of '{self.card.model_id}' does not serve /{path} "
                        f"(HTTP {response.status}).",
                        code="tokenize_unsupported",
                    )
                if response.status != 200:
                    raise await self._status_error(response)
                obj = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._transport_error(exc, started=False) from exc
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            raise self._malformed(path)
        return obj

    def _malformed(self, path: str) -> UpstreamError:
        return UpstreamError(
            f"The upstream of '{self.card.model_id}' sent a malformed /{path} answer.",
            code="upstream_malformed",
        )

    def _event_error(self, message: str, code: str | None) -> UpstreamError:
        return UpstreamError(
            f"The upstream of '{self.card.model_id}' failed while generating: {message}",
            code=code or "upstream_error",
        )

    def _finish(
        self, parser: wire.StreamParser, prepared: PreparedRequest, *, done: bool
    ) -> list[Delta]:
        """The finish delta of each choice, with the exact counts when the upstream sent them
        (a choice without a finish reason before ``[DONE]`` counts as stopped).

        Raises:
            UpstreamError: the stream ended without ``[DONE]`` before every choice finished.
        """
        n = prepared.request.n
        if done:
            for i in range(n):
                parser.finished.setdefault(i, FinishReason.STOP)
        elif len(parser.finished) < n:
            raise UpstreamError(
                f"The upstream of '{self.card.model_id}' ended the stream before finishing.",
                code="upstream_incomplete",
            )
        if parser.usage is not None:
            _apply_usage(parser.usage, prepared, parser.counts)
        return [
            Delta(i, "", parser.counts[i], parser.finished[i], matched_stop=parser.matched.get(i))
            for i in range(n)
        ]

    def _transport_error(self, exc: BaseException, *, started: bool) -> ModelgridError:
        """The modelgrid error for a transport failure; ``started``: deltas were read. A
        pool is held to account only for being unreachable (see the module docstring)."""
        error = self._transport_error_of(exc, started=started)
        if self.pool and not isinstance(
            exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
        ):
            error.replica_fault = False
        return error

    def _transport_error_of(self, exc: BaseException, *, started: bool) -> ModelgridError:
        name = self.card.model_id
        log.warning("upstream %s (%s): %r", self.base_url, name, exc)
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return UpstreamTimeoutError(
                f"Timed out connecting to the upstream of '{name}'.", retryable=True
            )
        if isinstance(exc, TimeoutError):
            where = "while it was generating" if started else "for its response"
            return UpstreamTimeoutError(f"Timed out waiting for the upstream of '{name}' {where}.")
        if isinstance(exc, aiohttp.ClientConnectorError):
            return UpstreamError(f"Cannot connect to the upstream of '{name}'.", retryable=True)
        if started:
            return UpstreamError(
                f"The upstream of '{name}' dropped the connection while generating.",
                code="upstream_disconnected",
            )
        return UpstreamError(
            f"The upstream of '{name}' closed the connection without a response.",
            retryable=isinstance(exc, aiohttp.ClientConnectionError),
        )

    async def _status_error(self, response: aiohttp.ClientResponse) -> ModelgridError:
        """The modelgrid error for a non-200 answer (see the module doc)."""
        status = response.status
        raw = await response.read()
        try:
            obj: Any = json.loads(raw) if raw else {}
        except ValueError:
            obj = raw.decode("utf-8", "replace")[:500]
        message, code, param = wire.error_fields(obj)
        name = self.card.model_id
        message = message or f"The upstream of '{name}' answered HTTP {status}."
        if status == 400:
            lowered = message.lower()
            if code == "context_length_exceeded" or "context length" in lowered:
                return ContextLengthExceededError(message, param=param or "messages")
            return InvalidRequestError(message, param=param, code=code)
        if status == 404:
            return ModelNotFoundError(message, param=param or "model")
        if status == 429:
            retry_after = _retry_after_s(response.headers.get("retry-after"))
            return RateLimitError(
                message,
                retry_after_s=retry_after,
                code=code or "upstream_rate_limited",
                retryable=True,
            )
        log.warning("upstream %s (%s) answered %s: %s", self.base_url, name, status, message)
        if status in (401, 403):
            return UpstreamError(
                f"The upstream of '{name}' refused the gateway's credentials.",
                code="upstream_auth",
                retryable=True,
            )
        if 400 < status < 500:
            return UpstreamClientError(message, status=status, param=param, code=code)
        error = UpstreamError(
            f"The upstream of '{name}' failed (HTTP {status}).",
            retryable=status in (502, 503) or self.pool,
        )
        error.replica_fault = not self.pool  # a pool replaces the member that failed
        return error

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._session = None
        self._started = False


def prefix_key(blocks: Sequence[int]) -> str:
    """A prefix fingerprint as a header value: hex block hashes joined by ``.``."""
    return ".".join(f"{b:x}" for b in blocks)


def _coalesce(deltas: list[Delta]) -> list[Delta]:
    """Consecutive text deltas of one choice that arrived in the same read, as one delta.

    Nothing waits for this: a read holds what the upstream had sent by the time the gateway
    got to it. When the gateway keeps up, that is one chunk; when it falls behind, it catches
    up with fewer, larger deltas instead of a backlog of small ones. Deltas with function-call
    parts or log probabilities are kept as they are.
    """
    if len(deltas) < 2:
        return deltas
    out = [deltas[0]]
    for d in deltas[1:]:
        last = out[-1]
        if last.index == d.index and not (
            last.tool_calls or last.logprobs or d.tool_calls or d.logprobs
        ):
            out[-1] = Delta(d.index, last.text + d.text, d.completion_tokens)
        else:
            out.append(d)
    return out


def _apply_usage(usage: dict[str, Any], prepared: PreparedRequest, counts: list[int]) -> None:
    """The upstream's exact counts: the prompt onto ``prepared``, the completion onto
    ``counts`` (split over choices in proportion to their chunks, remainder to the last)."""
    prompt = usage.get("prompt_tokens")
    if isinstance(prompt, int):
        details = usage.get("prompt_tokens_details") or {}
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        prepared.report_prompt_tokens(prompt, cached if isinstance(cached, int) else 0)
    total = usage.get("completion_tokens")
    if not isinstance(total, int):
        return
    seen = sum(counts)
    if len(counts) == 1 or seen == 0:
        counts[-1] += total - seen
        return
    split = [total * c // seen for c in counts[:-1]]
    counts[:-1] = split
    counts[-1] = total - sum(split)


def _retry_after_s(value: str | None) -> float:
    try:
        return max(1.0, float(value)) if value else 1.0
    except ValueError:
        return 1.0


__all__ = [
    "PRIORITY_HEADER",
    "PROMPT_TOKENS_HEADER",
    "Probe",
    "UpstreamEngine",
    "estimate_prompt_tokens",
    "prefix_key",
]
