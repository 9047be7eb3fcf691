"""The one error tree of modelgrid.

Every error a client can see is a ``ModelgridError`` subclass carrying the HTTP ``status``, the
OpenAI error ``type``, a machine-readable ``code`` and the offending ``param``. The API edge
(``modelgrid.api.errors``) maps them once to the wire envelope; nothing else builds error bodies.

Tree (status, OpenAI type):

- ``InvalidRequestError`` 400 ``invalid_request_error``
  - ``ContextLengthExceededError`` 400, code ``context_length_exceeded``
  - ``UnsupportedParameterError`` 400, code ``unsupported_parameter``
  - ``TopologyError`` 400, code ``invalid_topology`` (a topology that contradicts itself)
  - ``BatchInputError`` 400: a batch input file breaks the contract (carries ``line``, ``field``)
  - ``PlanInputError`` 400, code ``invalid_plan_input``: input ``modelgrid plan`` cannot plan with
  - ``DocumentError`` 400, code ``invalid_document``: a knowledge document that cannot be
    indexed (no text; a piece the chunker cannot cut small enough)
  - ``UpstreamClientError`` 4xx: an upstream's refusal with its own status, passed through
- ``ConflictError`` 409 ``invalid_request_error`` (the object exists, or is still in use)
  - ``LeaseLostError`` 409, code ``lease_lost``: background work whose lease was lost, whose
    object was deleted meanwhile, or whose runner is stopping (left for the next run)
- ``MethodNotAllowedError`` 405 ``invalid_request_error``
- ``RequestTooLargeError`` 413 ``invalid_request_error`` (body over the size limit)
- ``AuthenticationError`` 401 ``authentication_error`` (missing, malformed, unknown, revoked key)
  - ``SignInRequiredError`` 401, code ``sign_in_required``: no live console session (carries
    ``reason``, a key of ``console.sessions.REASONS``; the console sends the browser to sign in)
- ``PermissionDeniedError`` 403 ``permission_error``
- ``NotFoundError`` 404 ``invalid_request_error``
  - ``ModelNotFoundError`` 404, code ``model_not_found``
  - ``RouteNotFoundError`` 404 (no such URL)
- ``RateLimitError`` 429 ``rate_limit_error`` (carries ``retry_after_s`` and ``headers``)
  - ``QuotaExceededError`` 429 ``insufficient_quota`` (monthly budget exhausted)
- ``EngineError`` 500 ``server_error`` (the engine failed while generating)
- ``UpstreamError`` 502 ``upstream_error``
  - ``EngineDiedError`` 502, code ``engine_died`` (a supervised engine process died mid-answer)
- ``ServiceUnavailableError`` 503 ``service_unavailable`` (model not loaded, no healthy replica)
  - ``EngineRestartingError`` 503, code ``engine_restarting`` (its engine process is restarting)
  - ``ModelIntegrityError`` 503, code ``model_integrity`` (a model file's SHA-256 is wrong)
  - ``ServerShutdownError`` 503, code ``server_shutting_down`` (a stream the server's
    shutdown cut)
- ``SealedSecretError`` 503 ``server_error``, code ``secret_key_mismatch`` (a secret stored
  sealed that this process's key cannot open: the server's configuration)
- ``UpstreamTimeoutError`` 504 ``timeout``

``retryable`` (False unless set) marks a failure that happened before the replica started on
the request (connection refused, connect timeout, replica overloaded): a router may send the
request to another replica as long as no byte has gone to the client yet. ``replica_fault``
(True unless set) says whether a server-side error counts against the replica's circuit
breaker; a supervised engine process's death does not (its supervisor judges it and restarts
it, ``engines.process``).
"""

from __future__ import annotations

import copy
from typing import Self


class ModelgridError(Exception):
    """Base of every client-visible error.

    Args:
        message: Human-readable explanation, safe to show to the client (no secrets, no traces).
        param: The request parameter at fault, if any (OpenAI's ``error.param``).
        code: Machine-readable code; defaults to the class's ``code``.
        retryable: Safe to retry on another replica before the first byte (see above);
            defaults to the class's ``retryable``.
    """

    status: int = 500
    type: str = "server_error"
    code: str | None = None
    retryable: bool = False
    replica_fault: bool = True

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable

    def at(self, param: str | None) -> Self:
        """The same error naming another parameter (``messages`` → ``prompt``), a copy."""
        clone = copy.copy(self)
        clone.param = param
        return clone


class InvalidRequestError(ModelgridError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class ContextLengthExceededError(InvalidRequestError):
    code = "context_length_exceeded"


class UnsupportedParameterError(InvalidRequestError):
    code = "unsupported_parameter"


class TopologyError(InvalidRequestError):
    """A topology that contradicts itself (unknown region, duplicate id, missing URL…)."""

    code = "invalid_topology"


class BatchInputError(InvalidRequestError):
    """A batch input file (``purpose=batch``) breaks the Batch contract at ``line`` (1-based;
    ``None`` for the whole file), in its field ``field`` (``custom_id``, ``body.model``; ``None``
    for the whole line). ``param`` reads ``line 3: custom_id`` (``line 3``, or ``field`` alone,
    when one of them is missing); ``code`` says what is wrong (``duplicate_custom_id`` …)."""

    def __init__(
        self, message: str, *, code: str, line: int | None = None, field: str | None = None
    ) -> None:
        where = f"line {line}" if line is not None else None
        param = f"{where}: {field}" if where and field else where or field
        super().__init__(message, param=param, code=code)
        self.line = line
        self.field = field


class UpstreamClientError(InvalidRequestError):
    """An upstream refused the request with a 4xx the gateway passes through as it is
    (``status``: that status; 400, 404 and 429 have classes of their own)."""

    def __init__(
        self, message: str, *, status: int, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message, param=param, code=code)
        self.status = status


class ConflictError(ModelgridError):
    """409: the object exists already (a workspace name, a region id) or is still in use."""

    status = 409
    type = "invalid_request_error"
    code = "conflict"


class MethodNotAllowedError(ModelgridError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class RequestTooLargeError(ModelgridError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class AuthenticationError(ModelgridError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class SignInRequiredError(AuthenticationError):
    """No live console session: no cookie, an unknown or timed-out session, or its key revoked
    or expired. ``reason`` names why (empty: none to show)."""

    code = "sign_in_required"

    def __init__(self, reason: str = "") -> None:
        super().__init__("Sign in to the console.")
        self.reason = reason


class PermissionDeniedError(ModelgridError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class NotFoundError(ModelgridError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class RouteNotFoundError(NotFoundError):
    """No route at that URL."""


class ModelNotFoundError(NotFoundError):
    code = "model_not_found"


class RateLimitError(ModelgridError):
    """Over a rate limit or quota; ``retry_after_s`` feeds the ``Retry-After`` header."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float = 1.0,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code, retryable=retryable)
        self.retry_after_s = retry_after_s
        self.headers = headers or {}


class QuotaExceededError(RateLimitError):
    """A monthly budget (money or tokens) is exhausted: OpenAI's ``insufficient_quota``."""

    type = "insufficient_quota"
    code = "insufficient_quota"


class EngineError(ModelgridError):
    status = 500
    type = "server_error"
    code = "engine_error"


class UpstreamError(ModelgridError):
    status = 502
    type = "upstream_error"
    code = "bad_gateway"


class ServiceUnavailableError(ModelgridError):
    """No replica can take the request now; ``retry_after_s`` (if known) feeds the
    ``Retry-After`` header (e.g. when the next circuit breaker half-opens)."""

    status = 503
    type = "service_unavailable"
    code = "service_unavailable"
    retry_after_s: float | None = None

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None = None,
        param: str | None = None,
        code: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code, retryable=retryable)
        if retry_after_s is not None:
            self.retry_after_s = retry_after_s


SHUTDOWN_CANCEL = "modelgrid: server shutdown"  # the message a stream is cancelled with


class SealedSecretError(ModelgridError):
    """A secret stored sealed (``storage.sealing``) that this process's key cannot open:
    the gateways, workers and CLI sharing the database were given different keys. The
    server's configuration, not the request: 503 until the operator gives them one key."""

    status = 503
    code = "secret_key_mismatch"
    replica_fault = False


class ServerShutdownError(ServiceUnavailableError):
    """The server is stopping and its graceful-shutdown time ran out while this response
    streamed: the stream ends with this error (``api.sse``), its usage recorded as 503. The
    request's producer is cancelled with ``SHUTDOWN_CANCEL`` as the ``CancelledError``'s
    message, which is how the layers below tell it from a client that left (499)."""

    code = "server_shutting_down"

    def __init__(self) -> None:
        super().__init__(
            "The server is shutting down and ended this response before it was complete; "
            "retry the request."
        )


class EngineDiedError(UpstreamError):
    """The engine process answering died mid-answer; its supervisor restarts it."""

    code = "engine_died"
    replica_fault = False


class EngineRestartingError(ServiceUnavailableError):
    """The replica's engine process died and did not come back in time (``retry_after_s``:
    when its next start is due); another replica may take the request."""

    code = "engine_restarting"
    retryable = True
    replica_fault = False


class ModelIntegrityError(ServiceUnavailableError):
    """A model file exists but its SHA-256 is not the pinned one."""

    code = "model_integrity"


class UpstreamTimeoutError(ModelgridError):
    status = 504
    type = "timeout"
    code = "upstream_timeout"


class PlanInputError(InvalidRequestError):
    """Bad planning input: demand for an unknown model or region, a negative rate, a target
    no fleet can meet, a file that does not parse. The message names the input at fault
    (``param``: the file field or option, e.g. ``demand[3].region``); ``modelgrid plan``
    prints it and exits with status 2."""

    code = "invalid_plan_input"


class DocumentError(InvalidRequestError):
    """A knowledge document that cannot be indexed (``jobs.indexer``: its message becomes
    the document's ``error``; ``knowledge.chunking``: the window leaves no room for text)."""

    code = "invalid_document"


class LeaseLostError(ConflictError):
    """Background work that must stop where it is: its lease was taken, its object deleted,
    or its runner is stopping (``jobs.indexer``); the work is left for the next run."""

    code = "lease_lost"


class PatternError(ValueError):
    """A JSON Schema ``pattern`` outside the subset a grammar can enforce, or malformed; the
    message says where (``protocol.schema_pattern``). Internal: ``protocol.json_schema``
    turns it into the client's 400 (``UnsupportedParameterError`` / ``InvalidRequestError``)."""


__all__ = [
    "SHUTDOWN_CANCEL",
    "AuthenticationError",
    "BatchInputError",
    "ConflictError",
    "ContextLengthExceededError",
    "DocumentError",
    "EngineDiedError",
    "EngineError",
    "EngineRestartingError",
    "InvalidRequestError",
    "LeaseLostError",
    "MethodNotAllowedError",
    "ModelIntegrityError",
    "ModelNotFoundError",
    "ModelgridError",
    "NotFoundError",
    "PatternError",
    "PermissionDeniedError",
    "PlanInputError",
    "QuotaExceededError",
    "RateLimitError",
    "RequestTooLargeError",
    "RouteNotFoundError",
    "SealedSecretError",
    "ServerShutdownError",
    "ServiceUnavailableError",
    "SignInRequiredError",
    "TopologyError",
    "UnsupportedParameterError",
    "UpstreamClientError",
    "UpstreamError",
    "UpstreamTimeoutError",
]
