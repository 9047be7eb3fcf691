"""Turning a console form (text fields) into a control-plane body (``protocol.admin``), with a
400 naming the field for anything that does not fit."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from modelgrid.core.errors import InvalidRequestError
from modelgrid.core.validation import first_problem
from modelgrid.protocol.admin import LIMIT_COLUMNS

B = TypeVar("B", bound=BaseModel)


def names(form: dict[str, str], field: str) -> list[str] | None:
    """A comma-separated (or repeated) field as a list; empty: ``None`` (no restriction)."""
    values = [v.strip() for v in form.get(field, "").split(",") if v.strip()]
    return values or None


def integer(form: dict[str, str], field: str) -> int | None:
    """An integer field; empty: ``None``.

    Raises:
        InvalidRequestError: not a whole number.
    """
    text = form.get(field, "").strip().replace("_", "").replace(",", "")
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise InvalidRequestError(
            f"{field} must be a whole number, not '{text[:40]}'.", param=field
        ) from None


def limits(form: dict[str, str]) -> dict[str, int | None]:
    """The limit fields (``rpm``, ``tpm``, ``concurrency``, ``monthly_budget_micros``,
    ``monthly_token_budget``) that the form sends; an empty one is ``None`` (unlimited)."""
    return {name: integer(form, name) for name in LIMIT_COLUMNS if name in form}


def body(model: type[B], data: dict[str, Any]) -> B:
    """``model`` validated from ``data``.

    Raises:
        InvalidRequestError: the first problem, naming its field.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        path, why = first_problem(exc)
        raise InvalidRequestError(f"{path or 'form'}: {why}.", param=path or "form") from None


__all__ = ["body", "integer", "limits", "names"]
