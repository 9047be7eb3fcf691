"""Request-scoped dependencies: app state, request id, and the authenticated principal."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from modelgrid.api.state import AppState
from modelgrid.core.errors import PermissionDeniedError
from modelgrid.core.ids import new_request_id
from modelgrid.core.types import CallContext
from modelgrid.tenancy.service import Principal

# Dependencies are ``async def`` even without awaits: FastAPI runs plain ``def`` ones in its
# thread pool, two thread hand-offs per request on the hot path.


async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.modelgrid
    return state


async def call_context(request: Request) -> CallContext:
    """The ids and start time that ``RequestContext`` middleware put in the scope."""
    st = request.scope.get("state", {})
    return CallContext(
        request_id=st.get("request_id") or new_request_id(),
        client_request_id=st.get("client_request_id"),
        started=st.get("started", time.perf_counter()),
        response_headers=st.setdefault("response_headers", {}),
        requested_region=_requested_region(request),
    )


def _requested_region(request: Request) -> str | None:
    """The ``X-Modelgrid-Region`` header: the region the client asks to run in, if any."""
    value = request.headers.get("x-modelgrid-region", "").strip()
    return value[:64] or None


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


async def principal(request: Request, state: Annotated[AppState, Depends(get_state)]) -> Principal:
    """A tenant key's principal. Admin keys manage the service (``/admin/v1``) and are refused
    on the model API with 403, so an admin secret never travels with everyday traffic."""
    found = await state.tenancy.authenticate(bearer_token(request))
    if found.is_admin:
        raise PermissionDeniedError(
            "Admin keys are for the admin API (/admin/v1) only; use a tenant key.",
            code="admin_key_not_allowed",
        )
    return found


@dataclass(frozen=True, slots=True)
class TenantCall:
    """What a model-API route needs: the app state, the tenant's principal and the call's
    context, resolved as ONE dependency (FastAPI's per-dependency bookkeeping cost ~13 % of
    a gateway request's CPU with three; see ``bench/RESULTS.md``, gateway_overhead)."""

    state: AppState
    principal: Principal
    ctx: CallContext


async def tenant_call(request: Request) -> TenantCall:
    """Authenticate the tenant (as ``principal``) and build the call context.

    Raises:
        AuthenticationError: missing, malformed, unknown, revoked or expired key (401).
        PermissionDeniedError: an admin key (403).
    """
    state: AppState = request.app.state.modelgrid
    found = await principal(request, state)
    return TenantCall(state, found, await call_context(request))


async def admin(request: Request, state: Annotated[AppState, Depends(get_state)]) -> Principal:
    return await state.tenancy.authenticate_admin(bearer_token(request))


StateDep = Annotated[AppState, Depends(get_state)]
PrincipalDep = Annotated[Principal, Depends(principal)]
AdminDep = Annotated[Principal, Depends(admin)]
ContextDep = Annotated[CallContext, Depends(call_context)]
CallDep = Annotated[TenantCall, Depends(tenant_call)]

__all__ = [
    "AdminDep",
    "CallDep",
    "ContextDep",
    "PrincipalDep",
    "StateDep",
    "TenantCall",
    "bearer_token",
]
