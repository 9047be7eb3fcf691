"""The structural check of a JSON Schema: keyword values of the right JSON types.

Catches schemas that are malformed as JSON Schema (draft 2020-12,
https://json-schema.org/draft/2020-12/json-schema-validation) before anything is generated:
wrong keyword types, unknown ``type`` names, empty ``enum``/``anyOf`` lists, patterns that
are not strings. Whether a well-formed schema can be enforced is ``json_schema``'s call.
"""

from __future__ import annotations

import re
from typing import Any

from modelgrid.protocol.schema_pattern import PatternError, parse_pattern

TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_ONE = (
    "items",
    "additionalProperties",
    "additionalItems",
    "not",
    "contains",
    "if",
    "then",
    "else",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
)
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_COUNTS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")
_NUMBERS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
MAX_DEPTH = 64


def _own_problem(node: dict[str, Any], where: str) -> str | None:
    """A problem with ``node``'s own keywords (not its subschemas)."""
    types = node.get("type")
    if isinstance(types, list) and not types:
        return f"'{where}' type must not be an empty array"
    for t in types if isinstance(types, list) else [] if types is None else [types]:
        if not isinstance(t, str) or t not in TYPES:
            return f"'{where}' has an unknown type {t!r}"
    required = node.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        return f"'{where}' required must be an array of strings"
    if "enum" in node and (not isinstance(node["enum"], list) or not node["enum"]):
        return f"'{where}' enum must be a non-empty array"
    if "$ref" in node and not isinstance(node["$ref"], str):
        return f"'{where}' $ref must be a string"
    for key in _COUNTS:
        value = node.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"'{where}' {key} must be a non-negative integer"
    for key in _NUMBERS:
        value = node.get(key, 0)
        if not isinstance(value, int | float) or isinstance(value, bool):
            return f"'{where}' {key} must be a number"
    if "multipleOf" in node and node["multipleOf"] <= 0:
        return f"'{where}' multipleOf must be greater than 0"
    for key in ("pattern", "format"):
        if key in node and not isinstance(node[key], str):
            return f"'{where}' {key} must be a string"
    if "pattern" in node and not _is_regex(node["pattern"]):
        return f"'{where}' pattern is not a valid regular expression"
    return None


def _is_regex(pattern: str) -> bool:
    """Whether ``pattern`` reads as a regular expression: ECMA-262's subset that
    ``schema_pattern`` parses, or anything Python's ``re`` compiles (lookarounds and the
    like: well-formed, though no grammar enforces them)."""
    try:
        parse_pattern(pattern)
        return True
    except PatternError:
        pass
    try:
        re.compile(pattern)
        return True
    except re.error:
        return False


def schema_problem(node: Any, path: str = "", depth: int = 0) -> str | None:
    """The first structural problem in the schema ``node`` (at JSON pointer ``path``), or
    ``None``."""
    where = path or "/"
    if isinstance(node, bool):
        return None
    if not isinstance(node, dict):
        return f"the schema at '{where}' must be an object"
    if depth > MAX_DEPTH:
        return f"the schema at '{where}' is nested deeper than {MAX_DEPTH} levels"
    if (found := _own_problem(node, where)) is not None:
        return found
    for key in _SCHEMA_MAPS:
        if key in node:
            if not isinstance(node[key], dict):
                return f"'{where}' {key} must be an object"
            for name, sub in node[key].items():
                if found := schema_problem(sub, f"{path}/{key}/{name}", depth + 1):
                    return found
    for key in _SCHEMA_ONE:
        if key in node and (found := schema_problem(node[key], f"{path}/{key}", depth + 1)):
            return found
    for key in _SCHEMA_LISTS:
        if key in node:
            if not isinstance(node[key], list) or not node[key]:
                return f"'{where}' {key} must be a non-empty array"
            for i, sub in enumerate(node[key]):
                if found := schema_problem(sub, f"{path}/{key}/{i}", depth + 1):
                    return found
    return None


__all__ = ["TYPES", "schema_problem"]
