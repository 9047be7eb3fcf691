"""A pydantic validation error as one line, worded the same on every surface that reads a
file or a form (the topology and the planner's files, ``modelgrid fleet``, the console's
forms). The model APIs word theirs in each protocol's own shape
(``protocol.openai.errors.errors_message``)."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError

_MAX_SHOWN = 80  # characters of an offending value's repr quoted in a message


def field_path(loc: Sequence[int | str]) -> str:
    """``("regions", 1, "id")`` → ``regions[1].id``; ``""`` for an empty ``loc``.

    Integers index; pydantic's ``[key]`` mark (a dict key's own error) is left out; a key
    that is not a plain name is quoted (``latency_ms.'a b'``), so the line stays one."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part != "[key]":
            shown = part if part.replace("-", "").replace("_", "").isalnum() else repr(part)
            out += f".{shown}" if out else shown
    return out


def first_problem(exc: ValidationError) -> tuple[str, str]:
    """``(path, why)`` of ``exc``'s first error: ``("demand[2].rps", "Input should be greater
    than 0 (got -1) (and 2 more)")``.

    ``why`` is pydantic's message without its ``Value error, `` prefix (``unknown key`` for a
    forbidden extra), the offending scalar's repr (cut to 80 characters) unless the value is
    missing or the key unknown, and how many more errors there are. ``path`` is
    ``field_path`` of the error's ``loc`` (``""``: the document as a whole).
    """
    errors = exc.errors(include_url=False)
    first = errors[0]
    if first["type"] == "extra_forbidden":
        why = "unknown key"
    else:
        why = str(first["msg"]).removeprefix("Value error, ")
        value = first.get("input")
        if first["type"] != "missing" and isinstance(value, str | int | float):
            shown = repr(value)
            why += f" (got {shown if len(shown) <= _MAX_SHOWN else shown[:77] + '...'})"
    if len(errors) > 1:
        why += f" (and {len(errors) - 1} more)"
    return field_path(first["loc"]), why


__all__ = ["field_path", "first_problem"]
