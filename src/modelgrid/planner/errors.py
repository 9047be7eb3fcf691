"""The planner's one error, ``PlanInputError``: it lives in ``core.errors`` with every other
error class (the one tree), and is named here for the planner's modules."""

from __future__ import annotations

from modelgrid.core.errors import PlanInputError

__all__ = ["PlanInputError"]
