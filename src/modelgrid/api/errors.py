"""The ONE table from errors to HTTP responses, applied at the edge; two renderings.

``ModelgridError`` subclasses carry their status (plus ``Retry-After`` for 429, and for 503 when
the router knows when a replica may be back); FastAPI's
request validation (422 ``{"detail"}`` by default) becomes a 400 ``InvalidRequestError``;
Starlette's HTTP errors (unknown route 404, wrong method 405) keep their status; anything
unexpected becomes a 500 with a generic message, the traceback going to the log only.

The body is rendered in the caller's wire format: DashScope's ``{"request_id", "code",
"message"}`` for every path under ``/api/v1/`` (its native API), Anthropic's ``{"type":
"error", "error": {"type", "message"}, "request_id"}`` for ``/v1/messages`` and every path
under it (``protocol.anthropic.errors`` names the type), else OpenAI's ``{"error": {...}}``
envelope (``/v1/...`` and DashScope's ``/compatible-mode/v1/...``).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from modelgrid.api.multipart_errors import multipart_error
from modelgrid.core.errors import (
    InvalidRequestError,
    MethodNotAllowedError,
    ModelgridError,
    RateLimitError,
    RequestTooLargeError,
    RouteNotFoundError,
    ServiceUnavailableError,
)
from modelgrid.core.ids import new_request_id
from modelgrid.protocol.anthropic import errors as anthropic_errors
from modelgrid.protocol.dashscope import errors as ds_errors
from modelgrid.protocol.openai.errors import error_body, errors_message, too_deep_message

log = logging.getLogger("modelgrid.api")

DASHSCOPE_PREFIX = "/api/v1/"
ANTHROPIC_PATH = "/v1/messages"
BODY_TOO_LARGE = "body_too_large"  # scope["state"] flag set by the edge middleware


def _is_dashscope(request: Request) -> bool:
    return request.url.path.startswith(DASHSCOPE_PREFIX)


def _is_anthropic(request: Request) -> bool:
    path = request.url.path
    return path == ANTHROPIC_PATH or path.startswith(ANTHROPIC_PATH + "/")


def _anthropic_body(request: Request, exc: ModelgridError) -> dict[str, Any]:
    request_id = request.scope.get("state", {}).get("request_id")
    kind = anthropic_errors.error_type(exc)
    return anthropic_errors.error_body(kind, exc.message, request_id)


def _dashscope_body(request: Request, exc: ModelgridError) -> dict[str, Any]:
    request_id = request.scope.get("state", {}).get("request_id") or new_request_id()
    return ds_errors.error_body(request_id, ds_errors.error_code(exc), exc.message)


def error_response(
    exc: ModelgridError, request: Request | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The response for ``exc``: its status, and its body in the wire format of ``request``'s
    API (OpenAI's when ``request`` is ``None``)."""
    out = dict(headers or {})
    if isinstance(exc, RateLimitError):
        out.update(exc.headers)
        out["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    elif isinstance(exc, ServiceUnavailableError) and exc.retry_after_s is not None:
        out["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    if request is not None and _is_dashscope(request):
        body = _dashscope_body(request, exc)
    elif request is not None and _is_anthropic(request):
        body = _anthropic_body(request, exc)
    else:
        body = error_body(exc.message, exc.type, exc.param, exc.code)
    return JSONResponse(body, status_code=exc.status, headers=out)


def validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    return errors_message(exc.errors())


_NOT_AN_OBJECT = ("model_attributes_type", "dict_type", "model_type")


def _json_content_type(request: Request) -> bool:
    value = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return value == "application/json" or value.endswith("+json")


async def _modelgrid_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ModelgridError)
    return error_response(exc, request)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    message, param = validation_message(exc)
    first = exc.errors()[0] if exc.errors() else {}
    unparsed = first.get("type") in _NOT_AN_OBJECT and isinstance(first.get("input"), bytes | str)
    if param is None and unparsed and not _json_content_type(request):
        # FastAPI parses a body as JSON only when the request says it is JSON, and hands the
        # raw bytes to validation otherwise (the model API's routes parse their bodies
        # themselves and need no header): say what is missing.
        message = "Send the request body as JSON, with 'Content-Type: application/json'."
    return error_response(InvalidRequestError(message, param=param), request)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    limit = request.scope.get("state", {}).get(BODY_TOO_LARGE)
    if limit is not None:  # the body reader failed because the edge cut an oversized body
        return error_response(
            RequestTooLargeError(f"The request body is larger than {limit} bytes."), request
        )
    err: ModelgridError
    if exc.status_code == 404:
        err = RouteNotFoundError("Unknown route.")
    elif exc.status_code == 405:
        err = MethodNotAllowedError(str(exc.detail))
    elif exc.status_code == 413:
        err = RequestTooLargeError(str(exc.detail))
    elif isinstance(exc.__cause__, RecursionError):  # FastAPI's json.loads of a body
        err = InvalidRequestError(too_deep_message(None))
    elif (refused := multipart_error(exc)) is not None:  # a multipart body: say why
        err = refused
    else:  # Starlette raises no other status on modelgrid's routes
        err = InvalidRequestError(str(exc.detail), code="http_error")
    return error_response(err, request, getattr(exc, "headers", None))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    return unexpected_response(request, exc)


async def _bad_unicode(request: Request, exc: Exception) -> JSONResponse:
    err = InvalidRequestError(
        "The request contains text that is not valid Unicode (an unpaired UTF-16 surrogate "
        "escape such as \\ud800); send well-formed text."
    )
    return error_response(err, request)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """A data exception (SQLSTATE class 22, e.g. PostgreSQL refusing a NUL character in
    text) comes from the client's input: a 400. Any other database error is a 500."""
    orig = getattr(exc, "orig", None)
    state = getattr(orig, "sqlstate", None) or getattr(
        getattr(orig, "__cause__", None), "sqlstate", None
    )
    if not str(state or "").startswith("22"):
        return unexpected_response(request, exc)
    err = InvalidRequestError(
        "The request contains a value the database cannot store (e.g. a NUL character, "
        "\\u0000, in a text field)."
    )
    return error_response(err, request)


def unexpected_response(request: Request, exc: BaseException) -> JSONResponse:
    """The 500 for a bug: logged with its traceback, answered with a generic message. A client
    that left while its body was read is no bug: a 499 nobody reads, nothing logged."""
    if isinstance(exc, ClientDisconnect):
        return JSONResponse({}, status_code=499)
    log.error("unhandled error", exc_info=exc)
    err = ModelgridError(
        "The server had an error while processing your request.", code="internal_error"
    )
    return error_response(err, request)


def install(app: FastAPI) -> None:
    app.add_exception_handler(UnicodeError, _bad_unicode)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(ModelgridError, _modelgrid_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


__all__ = [
    "ANTHROPIC_PATH",
    "BODY_TOO_LARGE",
    "DASHSCOPE_PREFIX",
    "error_response",
    "install",
    "unexpected_response",
    "validation_message",
]
