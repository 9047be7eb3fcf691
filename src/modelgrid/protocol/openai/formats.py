"""``response_format`` on the OpenAI wire -> core, and a structural check of JSON Schemas.

Reference: https://platform.openai.com/docs/api-reference/chat/create#chat-create-response_format
(``{"type": "text"}``, ``{"type": "json_object"}``, ``{"type": "json_schema", "json_schema":
{"name", "description", "schema", "strict"}}``). ``check_schema`` catches schemas that are
malformed as JSON Schema (wrong keyword types, unknown ``type`` names) before anything is
generated; whether a well-formed schema can be enforced is the engine's call.
"""

from __future__ import annotations

import re
from typing import Any

from modelgrid.core.errors import InvalidRequestError
from modelgrid.core.types import ResponseFormat, ResponseFormatKind

_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_ONE = ("items", "additionalProperties", "additionalItems", "not", "contains", "if")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_COUNTS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")
_NUMBERS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")


def _problem(node: Any, path: str) -> str | None:
    """The first structural problem in the schema ``node`` (at JSON pointer ``path``)."""
    where = path or "/"
    if isinstance(node, bool):
        return None
    if not isinstance(node, dict):
        return f"the schema at '{where}' must be an object"
    types = node.get("type")
    for t in types if isinstance(types, list) else [] if types is None else [types]:
        if not isinstance(t, str) or t not in _TYPES:
            return f"'{where}' has an unknown type {t!r}"
    for key in _SCHEMA_MAPS:
        if key in node:
            if not isinstance(node[key], dict):
                return f"'{where}' {key} must be an object"
            for name, sub in node[key].items():
                if found := _problem(sub, f"{path}/{key}/{name}"):
                    return found
    for key in _SCHEMA_ONE:
        if key in node and (found := _problem(node[key], f"{path}/{key}")):
            return found
    for key in _SCHEMA_LISTS:
        if key in node:
            if not isinstance(node[key], list) or not node[key]:
                return f"'{where}' {key} must be a non-empty array"
            for i, sub in enumerate(node[key]):
                if found := _problem(sub, f"{path}/{key}/{i}"):
                    return found
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
    if "pattern" in node:
        try:
            re.compile(node["pattern"])
        except (re.error, TypeError):
            return f"'{where}' pattern is not a valid regular expression"
    return None


def check_schema(schema: Any, param: str) -> None:
    """Raise unless ``schema`` is a structurally valid JSON Schema.

    Raises:
        InvalidRequestError: with ``param`` and the first problem found.
    """
    if (found := _problem(schema, "")) is not None:
        raise InvalidRequestError(f"Invalid JSON schema in '{param}': {found}.", param=param)


def response_format_in(value: dict[str, Any] | None) -> ResponseFormat | None:
    """``response_format`` as a core ``ResponseFormat`` (``None`` for plain text).

    Raises:
        InvalidRequestError: an unknown type, a missing or malformed ``json_schema``
            (``param="response_format"``).
    """
    if value is None:
        return None
    kind = value.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat(ResponseFormatKind.JSON_OBJECT)
    if kind != "json_schema":
        raise InvalidRequestError(
            f"Invalid value for 'response_format.type': {kind!r}. Supported values are "
            "'text', 'json_object' and 'json_schema'.",
            param="response_format",
        )
    spec = value.get("json_schema")
    if not isinstance(spec, dict):
        raise InvalidRequestError(
            "'response_format' of type 'json_schema' needs a 'json_schema' object.",
            param="response_format",
        )
    name = spec.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidRequestError(
            "'response_format.json_schema.name' is required: 1 to 64 characters from "
            "a-z, A-Z, 0-9, '_' and '-'.",
            param="response_format",
        )
    schema = spec.get("schema", {})
    check_schema(schema, "response_format")
    return ResponseFormat(ResponseFormatKind.JSON_SCHEMA, schema, name)


__all__ = ["check_schema", "response_format_in"]
