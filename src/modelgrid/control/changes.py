"""How the control plane writes a change: field by field, remembering what it changed.

``Changes`` applies a PATCH (only the fields its body sets) and keeps
``{field: {"from", "to"}}`` for the audit entry; a change that changes nothing writes none.
Limits are stored as columns (``protocol.admin.LIMIT_COLUMNS``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from modelgrid.protocol.admin import LIMIT_COLUMNS, Limits
from modelgrid.tenancy.audit import aware


def dedupe(values: list[str] | None) -> list[str] | None:
    """``values`` without repeats, in order (``None`` stays ``None``: no restriction)."""
    return None if values is None else list(dict.fromkeys(values))


def limits_of(row: Any) -> Limits:
    return Limits(**{name: getattr(row, col) for name, col in LIMIT_COLUMNS.items()})


def limit_columns(limits: Limits) -> dict[str, Any]:
    return {col: getattr(limits, name) for name, col in LIMIT_COLUMNS.items()}


def set_limits(limits: Limits) -> dict[str, Any]:
    """The limits that are set, for an audit entry."""
    return {k: v for k, v in limits.model_dump().items() if v is not None}


class Changes:
    """Applies a PATCH field by field and remembers ``{field: {"from", "to"}}`` for audit."""

    def __init__(self, row: Any) -> None:
        self.row = row
        self.done: dict[str, Any] = {}

    def set(self, field: str, attr: str, new: Any) -> None:
        old = getattr(self.row, attr)
        if isinstance(old, datetime):
            old = aware(old)
        if old != new:
            setattr(self.row, attr, new)
            self.done[field] = {"from": old, "to": new}

    def limits(self, limits: Limits | None) -> None:
        if limits is None:
            return
        for name in limits.model_fields_set:
            self.set(f"limits.{name}", LIMIT_COLUMNS[name], getattr(limits, name))


__all__ = ["Changes", "dedupe", "limit_columns", "limits_of", "set_limits"]
