"""The ONE table from errors to HTTP responses, applied at the edge.

``ModelgridError`` subclasses carry their status; FastAPI's request validation (422
``{"detail"}`` by default) becomes 400 in the OpenAI envelope; Starlette's HTTP errors (unknown
route 404, wrong method 405) get the envelope too; anything unexpected becomes a 500 with a
generic message, the traceback going to the log only.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelgrid.core.errors import ModelgridError, RateLimitError
from modelgrid.protocol.openai.errors import error_body

log = logging.getLogger("modelgrid.api")


def error_response(exc: ModelgridError) -> JSONResponse:
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimitError):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    return JSONResponse(
        error_body(exc.message, exc.type, exc.param, exc.code),
        status_code=exc.status,
        headers=headers,
    )


def _loc_param(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    if not parts:
        return None
    out = parts[0]
    for p in parts[1:]:
        out += f"[{p}]" if p.isdigit() else f".{p}"
    return out


def validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "Invalid request body.", None
    first = errors[0]
    if first.get("type") in ("json_invalid", "json_type"):
        return "The request body is not valid JSON.", None
    param = _loc_param(tuple(first.get("loc", ())))
    if first.get("type") == "missing":
        return f"Missing required parameter: '{param}'.", param
    msg = first.get("msg", "Invalid value")
    where = f"'{param}'" if param else "the request body"
    return f"Invalid value for {where}: {msg}.", param


async def _modelgrid_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ModelgridError)
    return error_response(exc)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    message, param = validation_message(exc)
    return JSONResponse(error_body(message, "invalid_request_error", param, "invalid_request"), 400)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    message = "Unknown route." if exc.status_code == 404 else str(exc.detail)
    return JSONResponse(
        error_body(message, "invalid_request_error", None, code),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc)
    return JSONResponse(
        error_body(
            "The server had an error while processing your request.",
            "server_error",
            None,
            "internal_error",
        ),
        status_code=500,
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(ModelgridError, _modelgrid_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


__all__ = ["error_response", "install", "validation_message"]
