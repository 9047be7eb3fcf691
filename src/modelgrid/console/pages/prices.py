"""Prices: the price book, newest entries first; an operator adds entries (the book is
append-only: a new price takes effect at its ``effective_from`` and never changes what past
requests cost). Everyone signed in may read it. SQL: one statement for the list.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.responses import RedirectResponse, Response

from modelgrid.console import forms
from modelgrid.console.access import EVERYONE, OPERATORS, Viewer
from modelgrid.console.deps import (
    ConsoleState,
    PostDep,
    StateDep,
    ViewerDep,
    form_fields,
    page_router,
    require,
)
from modelgrid.console.templating import base_path, render
from modelgrid.core.errors import InvalidRequestError
from modelgrid.protocol.admin import PriceCreate
from modelgrid.tenancy import audit

router = page_router(EVERYONE, prefix="/prices")
Form = Annotated[dict[str, str], Depends(form_fields)]


async def _page(
    request: Request,
    state: ConsoleState,
    viewer: Viewer,
    *,
    error: str = "",
    status: int = 200,
    form: dict[str, str] | None = None,
    added: bool = False,
) -> Response:
    prices = sorted(
        await state.control.prices.list(), key=lambda p: (p.effective_from, p.id), reverse=True
    )
    inventory = state.control.inventory()
    return render(
        request,
        "prices.html",
        viewer,
        page="prices",
        title="Prices",
        status=status,
        prices=prices,
        now=datetime.now(UTC),
        models=sorted(inventory.models),
        regions=sorted(inventory.regions),
        error=error,
        form=form or {},
        added=added,
    )


@router.get("")
async def prices_page(request: Request, state: StateDep, viewer: ViewerDep) -> Response:
    return await _page(request, state, viewer, added=request.query_params.get("added") == "1")


def _effective(text: str) -> datetime | None:
    """A ``datetime-local`` field (UTC) or ISO 8601 text; empty: ``None`` (now).

    Raises:
        InvalidRequestError: not a date and time.
    """
    text = text.strip()
    if not text:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequestError(
            f"effective_from must be a date and time (UTC), not '{text[:40]}'.",
            param="effective_from",
        ) from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


@router.post("")
async def add_price(request: Request, state: StateDep, viewer: PostDep, form: Form) -> Response:
    require(viewer, OPERATORS)
    try:
        data: dict[str, Any] = {
            "model": form.get("model", "").strip(),
            "region": form.get("region", "").strip() or None,
            "currency": form.get("currency", "USD").strip().upper() or "USD",
            "input_micros_per_1m": forms.integer(form, "input_micros_per_1m"),
            "cached_input_micros_per_1m": forms.integer(form, "cached_input_micros_per_1m"),
            "output_micros_per_1m": forms.integer(form, "output_micros_per_1m"),
            "effective_from": _effective(form.get("effective_from", "")),
        }
        await state.control.prices.add(
            forms.body(PriceCreate, data), actor=audit.api_actor(viewer.key_id)
        )
    except InvalidRequestError as exc:
        return await _page(request, state, viewer, error=exc.message, status=400, form=form)
    return RedirectResponse(f"{base_path(request)}/prices?added=1", status_code=303)


__all__ = ["router"]
