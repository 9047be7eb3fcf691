"""Request bodies parsed straight from their bytes, for the model API's hot routes.

``Model.model_validate_json(raw)`` parses and validates in one pass inside pydantic-core,
where FastAPI's body parameter first builds Python objects with ``json.loads`` and then
validates them (and resolves the body as one more dependency). Errors come out exactly as
FastAPI's would: a ``RequestValidationError`` whose locations start with ``"body"``, which
``api.errors`` turns into the 400 envelope with the offending ``param``.

**Non-finite numbers.** pydantic-core's JSON parser accepts ``NaN`` and ``Infinity`` (JSON
extensions) and reads ``1e400`` as infinity. Float fields refuse them (``allow_inf_nan=False``
on the request models), but a value under a free-form object (a JSON schema, a tool's
options, attributes, filters) would pass and reach arithmetic or the response's JSON (a 500
after the answer was generated). So every body is refused with the same 400
(``finite_number``, naming the value's path) when it holds one anywhere: a body that could
(it spells ``NaN`` or ``Infinity``, or an exponent of three digits) is walked once; others, all
but a few, cost two substring searches.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
# pydantic-core's JSON parser on an unpaired UTF-16 surrogate escape (``"\ud800"``).
_BAD_TEXT = "hex escape"
_BIG_EXPONENT = re.compile(rb"[eE][+]?[0-9]{3}")


def non_finite(value: Any) -> tuple[tuple[str | int, ...], float] | None:
    """The path and value of the first NaN or infinite number in a parsed JSON value."""
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), value)]
    while stack:
        path, v = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            return path, v
        if isinstance(v, dict):
            stack.extend(((*path, k), x) for k, x in reversed(list(v.items())))
        elif isinstance(v, list):
            stack.extend(((*path, i), x) for i, x in reversed(list(enumerate(v))))
    return None


def _check_finite(raw: bytes) -> None:
    """Raises: RequestValidationError (``finite_number``) at the first non-finite number."""
    if b"NaN" not in raw and b"Infinity" not in raw and not _BIG_EXPONENT.search(raw):
        return
    try:
        found = non_finite(json.loads(raw))
    except (ValueError, RecursionError):
        return  # not JSON (or too deep): the model's own validation says so
    if found is not None:
        path, value = found
        raise RequestValidationError(
            [
                {
                    "type": "finite_number",
                    "loc": ("body", *path),
                    "msg": "Input should be a finite number",
                    "input": value,
                }
            ]
        )


async def json_body(request: Request, model: type[M]) -> M:
    """The request's JSON body as ``model``.

    Raises:
        RequestValidationError: an empty body (``missing``), bytes that are not JSON
            (``json_invalid``), or a value ``model`` rejects; ``loc`` starts with ``"body"``.
        UnicodeError: text with an unpaired surrogate escape (answered as "not valid
            Unicode", as everywhere else in the API).
        RequestTooLargeError: from the body-size limit while reading (``api.middleware``).
    """
    raw = await request.body()
    if not raw or raw.isspace():  # no copy of the body just to look
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    _check_finite(raw)
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)  # with the input: messages quote a bad value
        first: dict[str, Any] = dict(errors[0]) if errors else {}
        detail = str((first.get("ctx") or {}).get("error", ""))
        if first.get("type") == "json_invalid" and _BAD_TEXT in detail:
            raise UnicodeError(detail) from None  # the app's "not valid Unicode" answer
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


__all__ = ["json_body", "non_finite"]
