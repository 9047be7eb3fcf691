"""The planner's one error, ``PlanInputError`` (it lives in ``core.errors`` with every other
error class, the one tree, and is named here for the planner's modules), and ``problem``,
which words a planner file's validation error as that error's one-line message."""

from __future__ import annotations

from pydantic import ValidationError

from modelgrid.core.errors import PlanInputError


def problem(exc: ValidationError, where: str) -> str:
    """The first error of ``exc`` as one line: ``<where>: demand[2].rps: <why> (got …)``."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    path = ""
    for part in first["loc"]:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    why = "unknown key" if first["type"] == "extra_forbidden" else str(first["msg"])
    why = why.removeprefix("Value error, ")
    value = first.get("input")
    if first["type"] not in ("missing", "extra_forbidden") and isinstance(value, str | int | float):
        why += f" (got {value!r})"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {path or 'file'}: {why}{more}"


__all__ = ["PlanInputError", "problem"]
