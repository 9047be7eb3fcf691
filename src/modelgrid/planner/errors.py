"""The planner's one error: an input it cannot plan with, named."""

from __future__ import annotations

from modelgrid.core.errors import InvalidRequestError


class PlanInputError(InvalidRequestError):
    """Bad planning input: demand for an unknown model or region, a negative rate, a target
    no fleet can meet, a file that does not parse. The message names the input at fault
    (``param``: the file field or option, e.g. ``demand[3].region``); ``modelgrid plan``
    prints it and exits with status 2."""

    code = "invalid_plan_input"


__all__ = ["PlanInputError"]
