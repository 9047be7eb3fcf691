"""Sign-in (``/login``), sign-out (``/logout``) and the console's root (``/``: the viewer's
first page, or the sign-in page).

A sign-in checks the key exactly as the model API does (``TenancyService.authenticate``), then
stores a session and sets its cookie. Failed sign-ins are counted per client address
(``SignInThrottle``); past the limit every attempt is a 429 until the minute has room, so the
page is no oracle for guessing keys. Every sign-in and sign-out is audited.
"""

from __future__ import annotations

import logging
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import RedirectResponse, Response

from modelgrid.console.access import Viewer
from modelgrid.console.deps import PostDep, StateDep, console_user, form_fields
from modelgrid.console.nav import home_path
from modelgrid.console.security import (
    CSRF_FIELD,
    PRE_COOKIE,
    SESSION_COOKIE,
    new_session_id,
    same_token,
    session_hash,
)
from modelgrid.console.sessions import REASONS, Resolved
from modelgrid.console.templating import base_path, render
from modelgrid.core.errors import (
    AuthenticationError,
    PermissionDeniedError,
    RateLimitError,
    SignInRequiredError,
)

log = logging.getLogger("modelgrid.console")
router = APIRouter(include_in_schema=False)


def _cookie_path(request: Request) -> str:
    return base_path(request) or "/"


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _safe_next(request: Request, target: str | None) -> str | None:
    """``target`` if it is a path inside the console (never another site: no ``//``, no
    scheme), else ``None``."""
    base = base_path(request)
    if not target or not target.startswith(base + "/") or target.startswith("//"):
        return None
    if "\\" in target or "\r" in target or "\n" in target:
        return None
    return target


def _address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _login_page(
    request: Request, *, status: int = 200, error: str = "", reason: str = "", nxt: str = ""
) -> Response:
    token = secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html",
        None,
        title="Sign in",
        status=status,
        login_token=token,
        error=error,
        reason=reason,
        next=nxt,
    )
    response.set_cookie(
        PRE_COOKIE,
        token,
        max_age=3600,
        path=_cookie_path(request),
        secure=_secure(request),
        httponly=True,
        samesite="strict",
    )
    return response


@router.get("/")
async def root(request: Request, state: StateDep) -> Response:
    try:
        viewer = await console_user(request, state)
    except SignInRequiredError:
        return RedirectResponse(f"{base_path(request)}/login", status_code=303)
    return RedirectResponse(f"{base_path(request)}{home_path(viewer)}", status_code=303)


@router.get("/login")
async def login_form(
    request: Request,
    state: StateDep,
    reason: Annotated[str, Query(max_length=40)] = "",
    next: Annotated[str, Query(max_length=500)] = "",
) -> Response:
    if request.cookies.get(SESSION_COOKIE):
        try:
            viewer = await console_user(request, state)
        except SignInRequiredError:
            pass
        else:
            target = _safe_next(request, next) or f"{base_path(request)}{home_path(viewer)}"
            return RedirectResponse(target, status_code=303)
    shown = REASONS.get(reason, "")
    return _login_page(request, reason=shown, nxt=_safe_next(request, next) or "")


@router.post("/login")
async def login(
    request: Request, state: StateDep, form: Annotated[dict[str, str], Depends(form_fields)]
) -> Response:
    if not same_token(form.get(CSRF_FIELD), request.cookies.get(PRE_COOKIE) or ""):
        raise PermissionDeniedError(
            "The sign-in form's security token is missing or wrong (it may come from another "
            "site, or an old page). Reload the sign-in page and try again.",
            code="csrf_failed",
        )
    address = _address(request)
    nxt = _safe_next(request, form.get("next"))
    wait_s = state.throttle.retry_after_s(address)
    if wait_s is not None:
        raise RateLimitError(
            f"Too many failed sign-ins from your address; try again in {max(1, round(wait_s))} s.",
            retry_after_s=wait_s,
        )
    session_id = new_session_id()
    try:
        previous = request.cookies.get(SESSION_COOKIE)
        resolved = await state.store.sign_in(
            form.get("key", ""),
            session_hash(session_id),
            address,
            replaces=session_hash(previous) if previous else None,
        )
    except AuthenticationError:
        state.throttle.failed(address)
        log.warning("console sign-in refused from %s", address)
        return _login_page(request, status=401, error="That key was not accepted.", nxt=nxt or "")
    landing = Viewer(resolved.principal, resolved.access, resolved.key_prefix, "")
    target = nxt or f"{base_path(request)}{home_path(landing)}"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=state.settings.session_ttl_s,
        path=_cookie_path(request),
        secure=_secure(request),
        httponly=True,
        samesite="lax",
    )
    response.delete_cookie(PRE_COOKIE, path=_cookie_path(request))
    return response


@router.post("/logout")
async def logout(request: Request, state: StateDep, viewer: PostDep) -> Response:
    session_id = request.cookies.get(SESSION_COOKIE, "")
    resolved = Resolved(viewer.principal, viewer.access, viewer.key_prefix)
    await state.store.sign_out(session_hash(session_id), resolved)
    response = RedirectResponse(f"{base_path(request)}/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=_cookie_path(request))
    return response


__all__ = ["router"]
