"""The OpenAI error envelope: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def error_body(message: str, type_: str, param: str | None, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# The reference's wording (OpenAI answers 400, param ``stream_options``; vLLM refuses it too).
STREAM_OPTIONS_ALONE = "The 'stream_options' parameter is only allowed when 'stream' is enabled."

_LOC_PREFIXES = ("body", "query", "path", "header")
_SCALAR_TAGS = {"str", "int", "float", "bool", "none", "bytes", "list", "dict"}


def _is_union_tag(part: str) -> bool:
    """pydantic names the union member it tried (``str``, ``list[TextPart]``,
    ``function-after[...]``, ``TextPart``) inside ``loc``: not a parameter name."""
    return part in _SCALAR_TAGS or "[" in part or part[:1].isupper()


def loc_param(loc: tuple[Any, ...]) -> str | None:
    """The parameter a pydantic error's ``loc`` names, as the API's errors name it:
    ``("body", "tools", 0, "url")`` → ``tools[0].url`` (``None``: the body as a whole)."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in _LOC_PREFIXES:  # where FastAPI found it (a body field may be
        parts = parts[1:]  # named "query", as a vector-store search's is)
    parts = [p for p in parts if not _is_union_tag(p)]
    if not parts:
        return None
    out = parts[0]
    for p in parts[1:]:
        out += f"[{p}]" if p.isdigit() else f".{p}"
    return out


_MAX_SHOWN = 80  # characters of an offending string value quoted in a message
# pydantic-core's JSON parser (jiter) refuses a document nested deeper than this, with a
# ``json_invalid`` error whose detail says so (the bytes may be valid JSON).
JSON_MAX_DEPTH = 201
_TOO_DEEP = "recursion limit exceeded"


def _shown(value: Any) -> str | None:
    """The offending value as a message quotes it (scalars only: a list or an object is not
    repeated back)."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        cut = value if len(value) <= _MAX_SHOWN else value[:_MAX_SHOWN] + "…"
        return "'" + cut.replace("'", "\\'") + "'"
    return None


def array_too_long(param: str, limit: int, length: int) -> str:
    """OpenAI's message for a list over its limit (``messages`` past 2048 items)."""
    return (
        f"Invalid '{param}': array too long. Expected an array with maximum length {limit}, "
        f"but got an array with length {length} instead."
    )


def too_deep_message(max_depth: int | None) -> str:
    """The 400's message for a body nested deeper than the parser goes (``max_depth`` levels
    of arrays and objects; ``None``: a parser whose limit is the interpreter's stack)."""
    limit = f": JSON arrays and objects may nest at most {max_depth} levels" if max_depth else ""
    return f"The request body is nested too deeply{limit}."


def errors_message(errors: Sequence[Any]) -> tuple[str, str | None]:
    """The message and ``param`` of a 400 for pydantic validation errors (the first one
    speaks), naming the offending value when it is a scalar (pydantic's ``input``):
    ``Missing required parameter: 'messages'.``, ``Invalid value for 'messages[0].role':
    'robot'. Supported values are: 'system', … or 'tool'.``, ``Invalid value for 'n': Input
    should be greater than or equal to 1 (got 0).``"""
    if not errors:
        return "Invalid request body.", None
    first = errors[0]
    if first.get("type") in ("json_invalid", "json_type"):
        if _TOO_DEEP in str((first.get("ctx") or {}).get("error", "")):
            return too_deep_message(JSON_MAX_DEPTH), None
        return "The request body is not valid JSON.", None
    param = loc_param(tuple(first.get("loc", ())))
    if first.get("type") == "missing":
        if param is None:
            return "The request body is missing: send a JSON object.", None
        return f"Missing required parameter: '{param}'.", param
    ctx = first.get("ctx") or {}
    if first.get("type") == "too_long" and ctx.get("field_type") == "List" and param:
        return array_too_long(param, ctx["max_length"], ctx["actual_length"]), param
    msg = str(first.get("msg", "Invalid value")).removeprefix("Value error, ")
    if first.get("type") == "finite_number":  # NaN or Infinity (JSON extensions)
        msg = "must be a finite number"
    where = f"'{param}'" if param else "the request body"
    shown = _shown(first["input"]) if "input" in first else None
    expected = ctx.get("expected")
    if first.get("type") in ("literal_error", "enum") and shown and expected:
        return f"Invalid value for {where}: {shown}. Supported values are: {expected}.", param
    if shown is not None:
        return f"Invalid value for {where}: {msg} (got {shown}).", param
    return f"Invalid value for {where}: {msg}.", param


__all__ = [
    "JSON_MAX_DEPTH",
    "STREAM_OPTIONS_ALONE",
    "array_too_long",
    "error_body",
    "errors_message",
    "loc_param",
    "too_deep_message",
]
