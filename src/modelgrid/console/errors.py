"""The console's error pages (404, 403, 400, 429 …) in its own look, and the redirect to the
sign-in page when nobody is signed in. No traceback or internal detail reaches the page.

The console's JSON endpoints (``JSON_PATHS``: the playground's chat, which a script calls with
``fetch``) answer every error, the CSRF check's 403 and the 401 of a missing session included,
as JSON ``{"error": {message, type, param, code}}`` with its status instead."""

from __future__ import annotations

import logging
from http import HTTPStatus
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from modelgrid.api.errors import error_response
from modelgrid.console.templating import base_path, render
from modelgrid.core.errors import ModelgridError, RateLimitError, SignInRequiredError
from modelgrid.core.validation import field_path
from modelgrid.protocol.openai.errors import error_body

log = logging.getLogger("modelgrid.console")

JSON_PATHS = ("/playground/chat",)  # below the console's mount


def wants_json(request: Request) -> bool:
    """Whether ``request`` is to one of the console's JSON endpoints."""
    return request.url.path.rstrip("/").endswith(JSON_PATHS)


def _json_status(status: int, message: str) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse(error_body(message, kind, None, None), status_code=status)


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    """An error page with ``status`` and ``message`` (the nav too, when someone is signed
    in)."""
    viewer = getattr(request.state, "console_viewer", None)
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    return render(
        request,
        "error.html",
        viewer,
        title=f"{status} {phrase}",
        status=status,
        partial="error_panel.html",
        status_code=status,
        phrase=phrase,
        message=message,
    )


def _sign_in(request: Request, exc: SignInRequiredError) -> Response:
    base = base_path(request)
    target = request.url.path
    query = f"next={quote(target, safe='/')}" if request.method == "GET" else ""
    if exc.reason:
        query += ("&" if query else "") + f"reason={quote(exc.reason)}"
    url = f"{base}/login" + (f"?{query}" if query else "")
    if request.headers.get("hx-request") == "true":  # htmx follows HX-Redirect, not a 303
        return Response(status_code=200, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def install(app: FastAPI) -> None:
    """Register the console's handlers on its app."""

    @app.exception_handler(SignInRequiredError)
    async def sign_in(request: Request, exc: SignInRequiredError) -> Response:
        if wants_json(request):
            return error_response(exc)
        return _sign_in(request, exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        messages = {404: "There is no such page.", 405: "This page does not take that method."}
        if wants_json(request):
            return _json_status(exc.status_code, messages.get(exc.status_code, "Error."))
        return error_page(request, exc.status_code, messages.get(exc.status_code, "Error."))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = field_path(first.get("loc", ())[1:]) or "request"  # [0]: body, query, path
        message = (
            f"Invalid {where}: {str(first.get('msg', 'bad value')).removeprefix('Value error, ')}."
        )
        if wants_json(request):
            return _json_status(400, message)
        return error_page(request, 400, message)

    @app.exception_handler(ModelgridError)
    async def modelgrid_error(request: Request, exc: ModelgridError) -> Response:
        response: Response
        if wants_json(request):
            response = error_response(exc)
        else:
            response = error_page(request, exc.status, exc.message)
        if isinstance(exc, RateLimitError):
            response.headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("console page failed: %s %s", request.method, request.url.path)
        if wants_json(request):
            return _json_status(500, "Something went wrong on our side; it has been logged.")
        return error_page(request, 500, "Something went wrong on our side; it has been logged.")


__all__ = ["JSON_PATHS", "error_page", "install", "wants_json"]
