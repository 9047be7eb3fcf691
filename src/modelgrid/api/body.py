"""Request bodies parsed straight from their bytes, for the model API's hot routes.

``Model.model_validate_json(raw)`` parses and validates in one pass inside pydantic-core,
where FastAPI's body parameter first builds Python objects with ``json.loads`` and then
validates them (and resolves the body as one more dependency). Errors come out exactly as
FastAPI's would: a ``RequestValidationError`` whose locations start with ``"body"``, which
``api.errors`` turns into the 400 envelope with the offending ``param``.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
# pydantic-core's JSON parser on an unpaired UTF-16 surrogate escape (``"\ud800"``).
_BAD_TEXT = "hex escape"


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
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)  # with the input: messages quote a bad value
        first: dict[str, Any] = dict(errors[0]) if errors else {}
        detail = str((first.get("ctx") or {}).get("error", ""))
        if first.get("type") == "json_invalid" and _BAD_TEXT in detail:
            raise UnicodeError(detail) from None  # the app's "not valid Unicode" answer
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


__all__ = ["json_body"]
