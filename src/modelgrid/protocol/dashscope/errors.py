"""DashScope's error body and the mapping from modelgrid errors to DashScope error codes.

Body: ``{"request_id": str, "code": str, "message": str}``, the same object whether it is a
plain JSON response or the ``data`` of an ``event:error`` SSE event. Codes from the status-code
reference (https://help.aliyun.com/zh/dashscope/response-status-codes and its later edition
https://help.aliyun.com/zh/dashscope/developer-reference/return-status-code-description, which
lists ``413 BadRequest.TooLarge``; Model Studio's edition,
https://www.alibabacloud.com/help/en/model-studio/developer-reference/error-code, lists
``503 ModelUnavailable``, ``500 ModelServiceFailed`` and ``500 RequestTimeOut``); the HTTP
status stays the one ``ModelgridError.status`` gives (the one table in ``modelgrid.api.errors``).
"""

from __future__ import annotations

from typing import Any

from modelgrid.core.errors import (
    AuthenticationError,
    InvalidRequestError,
    MethodNotAllowedError,
    ModelgridError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RouteNotFoundError,
    ServiceUnavailableError,
    UpstreamError,
    UpstreamTimeoutError,
)

INVALID_PARAMETER = "InvalidParameter"
INTERNAL_ERROR = "InternalError"  # the reference's 500 code
INVALID_URL = "InvalidURL"
TOO_LARGE = "BadRequest.TooLarge"  # the reference's 413 code
MODEL_UNAVAILABLE = "ModelUnavailable"  # 503: the model cannot serve now, retry later
MODEL_SERVICE_FAILED = "ModelServiceFailed"  # the call to the model service failed
REQUEST_TIMEOUT = "RequestTimeOut"  # the model did not answer in time (sic: capital O)

_BY_CLASS: tuple[tuple[type[ModelgridError], str], ...] = (
    (RouteNotFoundError, INVALID_URL),  # no such URL, or not with that method
    (MethodNotAllowedError, INVALID_URL),
    (InvalidRequestError, INVALID_PARAMETER),
    (AuthenticationError, "InvalidApiKey"),
    (PermissionDeniedError, "AccessDenied"),
    (NotFoundError, "ModelNotFound"),
    (ServiceUnavailableError, MODEL_UNAVAILABLE),  # 503: no replica ready, still loading ...
    (UpstreamError, MODEL_SERVICE_FAILED),  # 502: the engine or upstream failed, or died
    (UpstreamTimeoutError, REQUEST_TIMEOUT),  # 504: the engine or upstream timed out
)

# Not-found errors that name something other than a model (the Application API's app and
# session ids) keep their own meaning instead of ``ModelNotFound``.
_NOT_FOUND = {"app_not_found": "AppNotFound", "session_not_found": "SessionNotFound"}


def error_code(exc: ModelgridError) -> str:
    """The DashScope ``code`` for a modelgrid error.

    ``RateLimitError`` is ``Throttling.AllocationQuota`` when its code names a quota (such as
    ``allocation_quota`` or ``quota_exceeded``: an allowance over a period is spent), else
    ``Throttling.RateQuota`` (a request-rate limit); an unknown app or session is
    ``AppNotFound`` / ``SessionNotFound``; any 413 (a body over the size limit, or an
    upstream's 413) is ``BadRequest.TooLarge``; an unknown route or method is ``InvalidURL``;
    any other 4xx outside the table (409 conflicts, an upstream's 4xx) is ``InvalidParameter``,
    since the reference documents no code of their own; a 503 (no replica ready, a model
    still loading, an engine restarting, the server shutting down) is ``ModelUnavailable``, a
    502 (an engine or upstream failed or died) ``ModelServiceFailed``, a 504 (an engine or
    upstream timed out) ``RequestTimeOut``; other errors at 500 and above are
    ``InternalError``.
    """
    if isinstance(exc, RateLimitError):
        quota = "quota" in (exc.code or "")
        return "Throttling.AllocationQuota" if quota else "Throttling.RateQuota"
    if isinstance(exc, NotFoundError) and exc.code in _NOT_FOUND:
        return _NOT_FOUND[exc.code]
    if exc.status == 413:
        return TOO_LARGE
    for cls, code in _BY_CLASS:
        if isinstance(exc, cls):
            return code
    # The reference has no code for 409 and the like: a request the client must change is
    # the code DashScope gives invalid requests, never its 500 code.
    return INVALID_PARAMETER if 400 <= exc.status < 500 else INTERNAL_ERROR


def error_body(request_id: str, code: str, message: str) -> dict[str, Any]:
    """The error object of the reference."""
    return {"request_id": request_id, "code": code, "message": message}


__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMETER",
    "INVALID_URL",
    "MODEL_SERVICE_FAILED",
    "MODEL_UNAVAILABLE",
    "REQUEST_TIMEOUT",
    "TOO_LARGE",
    "error_body",
    "error_code",
]
