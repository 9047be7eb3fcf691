"""``response_format`` on the OpenAI wire -> core.

Reference: https://platform.openai.com/docs/api-reference/chat/create#chat-create-response_format
(``{"type": "text"}``, ``{"type": "json_object"}``, ``{"type": "json_schema", "json_schema":
{"name", "description", "schema", "strict"}}``). DashScope's ``parameters.response_format``
has the same shape. A ``json_schema`` is checked here, in the gateway, for every keyword the
grammar must enforce (``protocol.json_schema``): what cannot be enforced is a 400 naming the
keyword and its place in the schema, before any replica is chosen. ``strict`` is accepted
either way: every schema modelgrid accepts is enforced.
"""

from __future__ import annotations

import re
from typing import Any

from modelgrid.core.errors import InvalidRequestError
from modelgrid.core.types import ResponseFormat, ResponseFormatKind
from modelgrid.protocol.json_schema import check_schema, enforceable_schema

_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


def schema_format(schema: Any, name: str | None, param: str) -> ResponseFormat:
    """A ``json_schema`` response format for ``schema``, which the grammar must enforce
    (what the Responses API's ``text.format`` and any other protocol build too).

    Raises:
        InvalidRequestError, UnsupportedParameterError: see
            ``protocol.json_schema.enforceable_schema`` (``param``).
    """
    enforceable_schema(schema, param)
    return ResponseFormat(ResponseFormatKind.JSON_SCHEMA, schema, name)


def response_format_in(
    value: dict[str, Any] | None, param: str = "response_format"
) -> ResponseFormat | None:
    """``response_format`` as a core ``ResponseFormat`` (``None`` for plain text).

    Args:
        value: The wire object.
        param: Where it is in the request (``parameters.response_format`` on DashScope).

    Raises:
        InvalidRequestError: an unknown type, a missing or malformed ``json_schema``, a schema
            that cannot be enforced (``param``).
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
            f"Invalid value for '{param}.type': {kind!r}. Supported values are "
            "'text', 'json_object' and 'json_schema'.",
            param=param,
        )
    spec = value.get("json_schema")
    if not isinstance(spec, dict):
        raise InvalidRequestError(
            f"'{param}' of type 'json_schema' needs a 'json_schema' object.", param=param
        )
    name = spec.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidRequestError(
            f"'{param}.json_schema.name' is required: 1 to 64 characters from "
            "a-z, A-Z, 0-9, '_' and '-'.",
            param=param,
        )
    return schema_format(spec.get("schema", {}), name, param)


__all__ = ["check_schema", "response_format_in", "schema_format"]
