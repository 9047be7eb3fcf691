"""Anthropic's error body and the mapping from modelgrid errors to its error types.

Body (https://docs.anthropic.com/en/api/errors): ``{"type": "error", "error": {"type",
"message"}, "request_id"}``, the same object whether it is a plain JSON response or the data
of an ``event: error`` SSE event. The HTTP status stays the one ``ModelgridError.status``
gives (the one table, ``modelgrid.api.errors``); the type follows the class, as the
reference pairs them: 400 ``invalid_request_error`` (also for other 4xx), 401
``authentication_error``, 403 ``permission_error``, 404 ``not_found_error``, 413
``request_too_large``, 429 ``rate_limit_error`` (budgets too: their status is 429, not
Anthropic's 402), 500 ``api_error`` (also for 502), 503 ``overloaded_error`` (Anthropic's 529:
no replica can take the request now; clients retry both), 504 ``timeout_error``.
"""

from __future__ import annotations

from typing import Any

from modelgrid.core.errors import (
    AuthenticationError,
    ModelgridError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
    ServiceUnavailableError,
    UpstreamTimeoutError,
)

INVALID_REQUEST = "invalid_request_error"
API_ERROR = "api_error"

_BY_CLASS: tuple[tuple[type[ModelgridError], str], ...] = (
    (AuthenticationError, "authentication_error"),
    (PermissionDeniedError, "permission_error"),
    (NotFoundError, "not_found_error"),
    (RequestTooLargeError, "request_too_large"),
    (RateLimitError, "rate_limit_error"),
    (ServiceUnavailableError, "overloaded_error"),
    (UpstreamTimeoutError, "timeout_error"),
)


def error_type(exc: ModelgridError) -> str:
    """The Anthropic ``error.type`` of a modelgrid error (see the module doc): by class,
    else ``invalid_request_error`` for a 4xx and ``api_error`` for anything else."""
    for cls, name in _BY_CLASS:
        if isinstance(exc, cls):
            return name
    return INVALID_REQUEST if 400 <= exc.status < 500 else API_ERROR


def error_body(type_: str, message: str, request_id: str | None) -> dict[str, Any]:
    """The error object of the reference."""
    body: dict[str, Any] = {"type": "error", "error": {"type": type_, "message": message}}
    if request_id is not None:
        body["request_id"] = request_id
    return body


__all__ = ["API_ERROR", "INVALID_REQUEST", "error_body", "error_type"]
