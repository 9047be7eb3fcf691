"""The console's request dependencies: its state (``ConsoleState``), who is signed in
(``console_user``), the CSRF check of every POST (``csrf_checked``), and ``page_router``,
the router factory every page module uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from modelgrid.api.state import AppState
from modelgrid.config import ConsoleSettings
from modelgrid.console.access import EVERYONE, Access, Viewer
from modelgrid.console.security import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    SignInThrottle,
    csrf_token,
    same_token,
    session_hash,
)
from modelgrid.console.sessions import SessionStore
from modelgrid.control import ControlPlane
from modelgrid.core.errors import NotFoundError, PermissionDeniedError, SignInRequiredError


@dataclass
class ConsoleState:
    """What the console's pages use: the gateway's state (control plane, tenancy, database,
    the usage read models' sessions), the session store and the sign-in throttle."""

    app: AppState
    settings: ConsoleSettings
    store: SessionStore
    throttle: SignInThrottle

    @property
    def control(self) -> ControlPlane:
        return self.app.control


class ConsoleHolder:
    """Builds the ``ConsoleState`` on first use (the gateway's state exists only once its
    lifespan has started)."""

    def __init__(self, app_state: Callable[[], AppState], settings: ConsoleSettings) -> None:
        self._app_state = app_state
        self._settings = settings
        self._built: ConsoleState | None = None
        self.throttle = SignInThrottle(settings.sign_in_failures_per_minute)

    def get(self) -> ConsoleState:
        app = self._app_state()
        if self._built is None or self._built.app is not app:
            store = SessionStore(app.sessions, app.tenancy, self._settings.session_ttl_s)
            self._built = ConsoleState(app, self._settings, store, self.throttle)
        return self._built


async def console_state(request: Request) -> ConsoleState:
    holder: ConsoleHolder = request.app.state.console
    return holder.get()


StateDep = Annotated[ConsoleState, Depends(console_state)]


async def console_user(request: Request, state: StateDep) -> Viewer:
    """Who is signed in: the session cookie's session, its key re-checked on this load.

    Raises:
        SignInRequiredError: no cookie, no such session, its time is up, or its key is revoked or
            expired (the browser is sent to the sign-in page).
    """
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id or len(session_id) > 100:
        raise SignInRequiredError()
    resolved = await state.store.resolve(session_hash(session_id))
    viewer = Viewer(
        resolved.principal, resolved.access, resolved.key_prefix, csrf_token(session_id)
    )
    request.state.console_viewer = viewer  # for the error pages' nav
    return viewer


ViewerDep = Annotated[Viewer, Depends(console_user)]


async def csrf_checked(request: Request, viewer: ViewerDep) -> Viewer:
    """``console_user``, and for a POST its CSRF token (form field ``csrf_token`` or header
    ``X-CSRF-Token``), compared in constant time.

    Raises:
        PermissionDeniedError: a missing or wrong token (403).
    """
    if request.method == "POST":
        presented = request.headers.get(CSRF_HEADER)
        if presented is None:
            form = await request.form()
            value = form.get(CSRF_FIELD)
            presented = value if isinstance(value, str) else None
        if not same_token(presented, viewer.csrf_token):
            raise PermissionDeniedError(
                "This form's security token is missing or wrong (it may come from another "
                "site, or an old page). Reload the page and try again.",
                code="csrf_failed",
            )
    return viewer


PostDep = Annotated[Viewer, Depends(csrf_checked)]


def require(viewer: Viewer, access: frozenset[Access]) -> None:
    """Raises: NotFoundError: ``viewer`` may not open this page (a tenant is not told that
    an operator page exists)."""
    if viewer.access not in access:
        raise NotFoundError("There is no such page.")


def page_router(access: frozenset[Access] = EVERYONE, **kwargs: Any) -> APIRouter:
    """A page module's router: every route requires a signed-in viewer with ``access``
    (routes still take ``ViewerDep``/``PostDep`` for the viewer itself; FastAPI resolves it
    once per request)."""

    async def allowed(viewer: ViewerDep) -> None:
        require(viewer, access)

    return APIRouter(dependencies=[Depends(allowed)], include_in_schema=False, **kwargs)


async def form_fields(request: Request) -> dict[str, str]:
    """The request's form as text fields (repeated names joined with commas; files left
    out)."""
    form = await request.form()
    out: dict[str, list[str]] = {}
    for name, value in form.multi_items():
        if isinstance(value, str):
            out.setdefault(name, []).append(value)
    return {k: ",".join(v) for k, v in out.items()}


__all__ = [
    "ConsoleHolder",
    "ConsoleState",
    "PostDep",
    "StateDep",
    "ViewerDep",
    "console_state",
    "console_user",
    "csrf_checked",
    "form_fields",
    "page_router",
    "require",
]
