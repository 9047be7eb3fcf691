"""Request-scoped dependencies: app state, request id, and the authenticated principal.

The model-API routers shared by the gateway and the engine worker resolve ``model_call``
(over ``ModelApi``, the narrow state both apps provide); the gateway's own routes resolve
``tenant_call`` (over the whole ``AppState``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, FastAPI, Request

from modelgrid.api.state import AppState, ModelApi
from modelgrid.core.ids import new_request_id
from modelgrid.core.types import CallContext
from modelgrid.engines.upstream import PRIORITY_HEADER
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
        preemptible=request.headers.get(PRIORITY_HEADER) == "batch",
        trace_carrier=st.get("trace_carrier"),
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


def api_key(request: Request) -> str | None:
    """The model API's credential: ``Authorization: Bearer`` (OpenAI's and DashScope's
    clients), else ``x-api-key`` (Anthropic's)."""
    return bearer_token(request) or request.headers.get("x-api-key", "").strip() or None


S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class TenantCall(Generic[S]):
    """What a model-API route needs: the app state, the tenant's principal and the call's
    context, resolved as ONE dependency (FastAPI's per-dependency bookkeeping cost ~13 % of
    a gateway request's CPU with three; see ``bench/RESULTS.md``, gateway_overhead)."""

    state: S
    principal: Principal
    ctx: CallContext


async def tenant_call(request: Request) -> TenantCall[AppState]:
    """The gateway's own model-API routes: authenticate the tenant (``AppState.authenticate``,
    the key from ``api_key``) and build the call context.

    Raises:
        AuthenticationError: missing, malformed, unknown, revoked or expired key (401).
        PermissionDeniedError: an admin key (403).
    """
    state: AppState = request.app.state.modelgrid
    found = await state.authenticate(api_key(request))
    return TenantCall(state, found, await call_context(request))


def provide_model_api(app: FastAPI, api: ModelApi) -> None:
    """Make ``api`` what this app's shared model-API routes see (``model_call``)."""
    app.state.model_api = api


async def model_call(request: Request) -> TenantCall[ModelApi]:
    """The routes the gateway and the engine worker share: authenticate the caller the app's
    way (``ModelApi.authenticate``, the key from ``api_key``) and build the call context.

    Raises:
        AuthenticationError: bad credentials (401).
        PermissionDeniedError: credentials not for the model API, e.g. an admin key (403).
    """
    api: ModelApi = request.app.state.model_api
    found = await api.authenticate(api_key(request))
    return TenantCall(api, found, await call_context(request))


async def admin(request: Request, state: Annotated[AppState, Depends(get_state)]) -> Principal:
    return await state.tenancy.authenticate_admin(bearer_token(request))


StateDep = Annotated[AppState, Depends(get_state)]
AdminDep = Annotated[Principal, Depends(admin)]
CallDep = Annotated[TenantCall[AppState], Depends(tenant_call)]
ModelCallDep = Annotated[TenantCall[ModelApi], Depends(model_call)]

__all__ = [
    "AdminDep",
    "CallDep",
    "ModelCallDep",
    "StateDep",
    "TenantCall",
    "api_key",
    "bearer_token",
    "provide_model_api",
]
