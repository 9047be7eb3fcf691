"""The planner's one error, ``PlanInputError`` (it lives in ``core.errors`` with every other
error class, the one tree, and is named here for the planner's modules), and ``problem``,
which words a planner file's validation error as that error's one-line message."""

from __future__ import annotations

from pydantic import ValidationError

from modelgrid.core.errors import PlanInputError
from modelgrid.core.validation import first_problem


def problem(exc: ValidationError, where: str) -> str:
    """The first error of ``exc`` as one line: ``<where>: demand[2].rps: <why> (got …)``
    (``core.validation.first_problem``)."""
    path, why = first_problem(exc)
    return f"{where}: {path or 'file'}: {why}"


__all__ = ["PlanInputError", "problem"]
