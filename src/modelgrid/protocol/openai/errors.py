"""The OpenAI error envelope: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def error_body(message: str, type_: str, param: str | None, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


_LOC_PREFIXES = ("body", "query", "path", "header")
_SCALAR_TAGS = {"str", "int", "float", "bool", "none", "bytes", "list", "dict"}


def _is_union_tag(part: str) -> bool:
    """pydantic names the union member it tried (``str``, ``list[TextPart]``,
    ``function-after[...]``, ``TextPart``) inside ``loc``: not a parameter name."""
    return part in _SCALAR_TAGS or "[" in part or part[:1].isupper()


def _loc_param(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in _LOC_PREFIXES]
    parts = [p for p in parts if not _is_union_tag(p)]
    if not parts:
        return None
    out = parts[0]
    for p in parts[1:]:
        out += f"[{p}]" if p.isdigit() else f".{p}"
    return out


def errors_message(errors: Sequence[Any]) -> tuple[str, str | None]:
    """The message and ``param`` of a 400 for pydantic validation errors (the first one
    speaks): ``Missing required parameter: 'messages'.``, ``Invalid value for 'n': ….``"""
    if not errors:
        return "Invalid request body.", None
    first = errors[0]
    if first.get("type") in ("json_invalid", "json_type"):
        return "The request body is not valid JSON.", None
    param = _loc_param(tuple(first.get("loc", ())))
    if first.get("type") == "missing":
        if param is None:
            return "The request body is missing: send a JSON object.", None
        return f"Missing required parameter: '{param}'.", param
    msg = str(first.get("msg", "Invalid value")).removeprefix("Value error, ")
    where = f"'{param}'" if param else "the request body"
    return f"Invalid value for {where}: {msg}.", param


__all__ = ["error_body", "errors_message"]
