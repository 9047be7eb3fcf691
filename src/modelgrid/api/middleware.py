"""Pure ASGI middleware (BaseHTTPMiddleware would buffer streams and break disconnects).

``RequestContext`` generates the request id (the usage ledger's key: never taken from the
client, so a reused client id can't merge two requests' billing), keeps a well-formed client
``x-request-id`` as ``client_request_id``, and answers ``x-request-id`` with the client's id if
it sent one, else the generated one. It stores both and the start time in
``scope["state"]`` and counts responses by route and status in the metrics. Where
OpenTelemetry is on (``Metrics.genai``), it also keeps the caller's W3C trace context
(``traceparent``, ``tracestate``) as ``trace_carrier``, which the call's span continues.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelgrid.api.errors import BODY_TOO_LARGE, error_response, unexpected_response
from modelgrid.core.errors import RequestTooLargeError
from modelgrid.core.ids import new_request_id
from modelgrid.serving.metrics import Metrics

_VALID_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_TRACE_HEADERS = (b"traceparent", b"tracestate")


class RequestContext:
    """Args: app; metrics; max_body_bytes: a declared ``Content-Length`` above it is refused
    with 413 in the error envelope before the body is read; a chunked body is cut with the
    same 413 as soon as it passes the limit. body_limits: the limit of particular paths
    instead (exact paths: the file upload route takes whole batch input files).
    worker_id: sent as ``x-modelgrid-worker`` on every response (the gateway's pid when
    several worker processes serve one port); ``None``: no such header."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        max_body_bytes: int | None = None,
        body_limits: Mapping[str, int] | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.body_limits = dict(body_limits or {})
        self._worker = () if worker_id is None else ((b"x-modelgrid-worker", worker_id.encode()),)

    def _limit(self, scope: Scope) -> int | None:
        return self.body_limits.get(scope["path"], self.max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _VALID_ID.match(candidate):
                    client_id = candidate
                break
        request_id = new_request_id()
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["client_request_id"] = client_id
        state["started"] = time.perf_counter()
        if self.metrics.genai is not None:
            carrier = {k: v.decode("latin-1") for k, v in scope["headers"] if k in _TRACE_HEADERS}
            if carrier:
                state["trace_carrier"] = {k.decode("latin-1"): v for k, v in carrier.items()}
        extra: dict[str, str] = state.setdefault("response_headers", {})
        header = (b"x-request-id", (client_id or request_id).encode("latin-1"))
        status_holder = [500]

        started = [False]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                started[0] = True
                status_holder[0] = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    header,
                    *self._worker,
                    *((k.encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()),
                ]
            await send(message)

        try:
            if self._too_large(scope):
                err = RequestTooLargeError(
                    f"The request body is larger than {self._limit(scope)} bytes."
                )
                await error_response(err, Request(scope))(scope, receive, send_wrapper)
                return
            await self.app(scope, self._counting(scope, receive), send_wrapper)
        except RequestTooLargeError as exc:
            if started[0]:
                raise
            await error_response(exc, Request(scope))(scope, receive, send_wrapper)
        except Exception as exc:  # a bug below: answer here, with x-request-id, and keep
            if started[0]:  # the connection; after the first byte nothing can be sent
                raise
            await unexpected_response(Request(scope), exc)(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.count_request(path, status_holder[0])

    def _counting(self, scope: Scope, receive: Receive) -> Receive:
        limit = self._limit(scope)
        if limit is None:
            return receive
        seen = [0]

        async def counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > limit:
                    # FastAPI turns errors while reading a body into a 400; the flag lets the
                    # error table answer 413 instead (``api.errors``).
                    scope["state"][BODY_TOO_LARGE] = limit
                    raise RequestTooLargeError(f"The request body is larger than {limit} bytes.")
            return message

        return counted

    def _too_large(self, scope: Scope) -> bool:
        limit = self._limit(scope)
        if limit is None:
            return False
        for name, value in scope["headers"]:
            if name == b"content-length":
                return value.isdigit() and int(value) > limit
        return False


__all__ = ["RequestContext"]
