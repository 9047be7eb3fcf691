"""Attribute filters of OpenAI's vector-store searches and ``file_search`` tool (pure).

A filter is a comparison ``{"type": "eq" | "ne" | "gt" | "gte" | "lt" | "lte" | "in" |
"nin", "key", "value"}`` or a compound ``{"type": "and" | "or", "filters": [...]}``
(https://platform.openai.com/docs/api-reference/vector-stores/search, the SDK's
``types/shared/comparison_filter.py`` and ``compound_filter.py``), evaluated against a file's
``attributes`` (at most 16 keys of 64 characters; values: strings of at most 512
characters, numbers, booleans).

Comparison rules, as the reference describes them: ``eq`` / ``ne`` compare any value; the
ordering comparisons take numbers (or strings, compared as strings) and are false when the
attribute is missing or of another type; ``in`` / ``nin`` take a list of strings or
numbers. A missing attribute makes every comparison false except ``ne`` and ``nin``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from modelgrid.core.errors import InvalidRequestError

Scalar = str | int | float | bool
_INT64_MAX = 2**63 - 1  # the widest integer an attribute value may be (64-bit signed)
_INT64_MIN = -(2**63)
COMPARISONS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin")
COMPOUNDS = ("and", "or")
MAX_DEPTH = 8
ATTRIBUTES_MAX_KEYS = 16
ATTRIBUTE_KEY_MAX = 64
ATTRIBUTE_VALUE_MAX = 512


@dataclass(frozen=True, slots=True)
class Comparison:
    op: str
    key: str
    value: Scalar | tuple[str | int | float, ...]


@dataclass(frozen=True, slots=True)
class Compound:
    op: str
    filters: tuple[Comparison | Compound, ...]


Filter = Comparison | Compound


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def parse_filter(raw: Any, param: str = "filters", depth: int = 0) -> Filter:
    """A filter from its JSON form.

    Raises:
        InvalidRequestError: a malformed filter (``param`` is the path to the bad part, e.g.
            ``filters.filters[1].value``).
    """
    if not isinstance(raw, dict):
        raise InvalidRequestError(f"'{param}' must be an object.", param=param)
    if depth > MAX_DEPTH:
        raise InvalidRequestError(
            f"'{param}' nests compound filters deeper than {MAX_DEPTH}.", param=param
        )
    kind = raw.get("type")
    if kind in COMPOUNDS:
        parts = raw.get("filters")
        if not isinstance(parts, list) or not parts:
            raise InvalidRequestError(
                f"'{param}.filters' must be a non-empty list of filters.",
                param=f"{param}.filters",
            )
        return Compound(
            kind,
            tuple(parse_filter(p, f"{param}.filters[{i}]", depth + 1) for i, p in enumerate(parts)),
        )
    if kind not in COMPARISONS:
        raise InvalidRequestError(
            f"'{param}.type' must be one of {', '.join(COMPARISONS + COMPOUNDS)}.",
            param=f"{param}.type",
        )
    key = raw.get("key")
    if not isinstance(key, str) or not key:
        raise InvalidRequestError(f"'{param}.key' must be a string.", param=f"{param}.key")
    value = raw.get("value")
    if kind in ("in", "nin"):
        if not isinstance(value, list) or not all(isinstance(v, str) or _number(v) for v in value):
            raise InvalidRequestError(
                f"'{param}.value' must be a list of strings or numbers for '{kind}'.",
                param=f"{param}.value",
            )
        return Comparison(kind, key, tuple(value))
    if not isinstance(value, str | int | float | bool):
        raise InvalidRequestError(
            f"'{param}.value' must be a string, number or boolean.", param=f"{param}.value"
        )
    if kind in ("gt", "gte", "lt", "lte") and isinstance(value, bool):
        raise InvalidRequestError(
            f"'{param}.value' must be a number or string for '{kind}'.", param=f"{param}.value"
        )
    return Comparison(kind, key, value)


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


def matches(flt: Filter, attributes: Mapping[str, Any] | None) -> bool:
    """Whether a file with ``attributes`` passes ``flt`` (see the module docstring)."""
    if isinstance(flt, Compound):
        results = (matches(f, attributes) for f in flt.filters)
        return all(results) if flt.op == "and" else any(results)
    attrs = attributes or {}
    if flt.key not in attrs:
        return flt.op in ("ne", "nin")
    have = attrs[flt.key]
    if flt.op == "eq":
        return _same(have, flt.value)
    if flt.op == "ne":
        return not _same(have, flt.value)
    if flt.op in ("in", "nin"):
        assert isinstance(flt.value, tuple)
        found = any(_same(have, v) for v in flt.value)
        return found if flt.op == "in" else not found
    want = flt.value
    if _number(have) and _number(want):
        return _ORDER[flt.op](have, want)
    if isinstance(have, str) and isinstance(want, str):
        return _ORDER[flt.op](have, want)
    return False


def check_attributes(raw: Any, param: str = "attributes") -> dict[str, Scalar] | None:
    """A file's ``attributes`` checked (``None`` stays ``None``).

    Raises:
        InvalidRequestError: not an object, over 16 keys, a key over 64 characters, a value
            not a string (at most 512 characters), number or boolean, an integer outside the
            64-bit signed range.
    """
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidRequestError(f"'{param}' must be an object.", param=param)
    if len(raw) > ATTRIBUTES_MAX_KEYS:
        raise InvalidRequestError(
            f"'{param}' has {len(raw)} keys; at most {ATTRIBUTES_MAX_KEYS}.", param=param
        )
    out: dict[str, Scalar] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not 1 <= len(key) <= ATTRIBUTE_KEY_MAX:
            raise InvalidRequestError(
                f"'{param}' keys are 1..{ATTRIBUTE_KEY_MAX} characters.", param=param
            )
        if isinstance(value, str):
            if len(value) > ATTRIBUTE_VALUE_MAX:
                raise InvalidRequestError(
                    f"'{param}.{key}' is over {ATTRIBUTE_VALUE_MAX} characters.",
                    param=f"{param}.{key}",
                )
        elif not isinstance(value, int | float | bool):
            raise InvalidRequestError(
                f"'{param}.{key}' must be a string, number or boolean.", param=f"{param}.{key}"
            )
        elif (
            isinstance(value, int)
            and not isinstance(value, bool)
            and not _INT64_MIN <= value <= _INT64_MAX
        ):
            raise InvalidRequestError(  # the databases' JSON keeps no wider integer (it was null)
                f"'{param}.{key}' is an integer outside -2**63..2**63-1; send a float or a "
                "string for a number this large.",
                param=f"{param}.{key}",
            )
        out[key] = value
    return out


__all__ = ["Comparison", "Compound", "Filter", "check_attributes", "matches", "parse_filter"]
