"""The rules across an app's tools (``protocol.app_tools``), checked when an app is created or
its tools replaced: each a 400 ``InvalidRequestError`` naming the field (``tools[2].url``).

- names unique within the app (they are the functions the model sees);
- ``parameters``: a structurally valid JSON Schema of an object (as chat's
  ``tools[].function.parameters``, ``protocol.openai.formats.check_schema``); with
  ``tool_choice: "required"`` the model-visible part must be one the grammar can enforce
  (``protocol.json_schema.check_forced_tools``, as chat's ``tool_choice: "required"``);
- ``parameters``: no ``$ref`` / ``$dynamicRef`` outside the schema itself (jsonschema would
  fetch it, over http or from a file, when checking arguments);
- ``user_params``: distinct names of ``parameters.properties``;
- ``user_token_header``: not also one of ``headers``;
- header values: no control character but TAB (``protocol.app_tools.control_character``),
  ``tools[i].headers.<name>``; on update, a value equal to the mask ``****`` keeps the stored
  value (``restore_masked``);
- the URL's host: a literal IP the address rules refuse, or ``localhost``, is refused here
  already (``serving.plugin_addresses``; the operator's ``apps.plugin_allowed_networks``
  lifts it); a name is resolved and checked on every call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from modelgrid.core.errors import InvalidRequestError
from modelgrid.core.types import Tool, ToolChoice, ToolChoiceMode
from modelgrid.protocol.app_tools import MASK, AppTool, control_character, visible_schema
from modelgrid.protocol.json_schema import check_forced_tools
from modelgrid.protocol.openai.formats import check_schema
from modelgrid.serving.plugin_addresses import Network, a_or_an, host_refusal

_REFERENCES = ("$ref", "$dynamicRef")


def _remote_reference(node: Any, path: str) -> str | None:
    """The path of the first ``$ref`` / ``$dynamicRef`` in ``node`` that points outside the
    schema itself (anything but ``#…``), or ``None``."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}"
            if key in _REFERENCES and not (isinstance(value, str) and value.startswith("#")):
                return here
            found = _remote_reference(value, here)
            if found is not None:
                return found
    elif isinstance(node, list):
        for j, value in enumerate(node):
            found = _remote_reference(value, f"{path}[{j}]")
            if found is not None:
                return found
    return None


def _check_one(i: int, tool: AppTool, allowed: Sequence[Network]) -> None:
    where = f"tools[{i}]"
    remote = _remote_reference(tool.parameters, f"{where}.parameters")
    if remote is not None:  # the gateway would fetch it when checking arguments: SSRF
        raise InvalidRequestError(
            f"'{remote}' must point within the schema ('#/$defs/…'): a plugin's schema may "
            "not reference other documents.",
            param=remote,
        )
    check_schema(tool.parameters, f"{where}.parameters")
    if tool.parameters.get("type", "object") != "object":
        raise InvalidRequestError(
            f"'{where}.parameters' must be the JSON Schema of an object ('type': 'object').",
            param=f"{where}.parameters.type",
        )
    props: Any = tool.parameters.get("properties") or {}
    for j, name in enumerate(tool.user_params):
        if name not in props or tool.user_params.index(name) != j:
            raise InvalidRequestError(
                f"'{where}.user_params' names '{name[:64]}', which is no property of "
                "'parameters' (or appears twice).",
                param=f"{where}.user_params[{j}]",
            )
    if tool.user_token_header is not None and tool.user_token_header.lower() in {
        h.lower() for h in tool.headers
    }:
        raise InvalidRequestError(
            f"The header '{tool.user_token_header}' is both in 'headers' and the "
            "'user_token_header'.",
            param=f"{where}.user_token_header",
        )
    for name, value in tool.headers.items():
        bad = control_character(value)
        if bad is not None:
            raise InvalidRequestError(
                f"The value of '{where}.headers.{name}' holds the control character {bad}: "
                "a header value may hold TAB, spaces and visible characters only.",
                param=f"{where}.headers.{name}",
            )
    host = urlsplit(tool.url).hostname or ""
    why = host_refusal(host, allowed)
    if why is not None:
        raise InvalidRequestError(
            f"'{where}.url': the host '{host[:200]}' is {a_or_an(why)} address, which plugins may "
            "not call (the operator may allow it: apps.plugin_allowed_networks).",
            param=f"{where}.url",
            code="plugin_address_refused",
        )


def restore_masked(tools: Sequence[AppTool], stored: Sequence[AppTool]) -> list[AppTool]:
    """``tools`` with every header value equal to ``MASK`` (``****``, how responses show a
    stored value) replaced by the stored value of the same header (name compared without
    case) of the stored tool of the same name, so that an app read and sent back unchanged
    keeps its secrets.

    Raises:
        InvalidRequestError: a ``MASK`` value with no stored value to keep
            (``tools[i].headers.<name>``).
    """
    by_name = {t.name: t for t in stored}
    out: list[AppTool] = []
    for i, tool in enumerate(tools):
        if MASK not in tool.headers.values():
            out.append(tool)
            continue
        old = by_name.get(tool.name)
        kept = {k.lower(): v for k, v in (old.headers if old else {}).items()}
        headers: dict[str, str] = {}
        for name, value in tool.headers.items():
            if value == MASK:
                if name.lower() not in kept:
                    raise InvalidRequestError(
                        f"'tools[{i}].headers.{name}': '{MASK}' is the mask of a stored value; "
                        "send the value.",
                        param=f"tools[{i}].headers.{name}",
                    )
                value = kept[name.lower()]
            headers[name] = value
        out.append(tool.model_copy(update={"headers": headers}))
    return out


def check_tools(
    tools: Sequence[AppTool], tool_choice: str, allowed: Sequence[Network] = ()
) -> None:
    """Check an app's tools (see the module docstring).

    Args:
        tools: The app's tools, as sent.
        tool_choice: The app's ``tool_choice`` (``auto`` | ``required``).
        allowed: The operator's allow-list of networks.

    Raises:
        InvalidRequestError: naming the field (``tools[i].name``, ``tools[i].parameters…``,
            ``tools[i].user_params[j]``, ``tools[i].user_token_header``, ``tools[i].url``);
            ``tool_choice`` ``required`` without tools.
        UnsupportedParameterError: with ``required``, a model-visible schema the grammar
            cannot enforce (``tools[i].parameters``).
    """
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        if tool.name in seen:
            raise InvalidRequestError(
                f"Tool names must be unique within an app; '{tool.name}' appears twice.",
                param=f"tools[{i}].name",
            )
        seen.add(tool.name)
        _check_one(i, tool, allowed)
    if tool_choice == "required":
        if not tools:
            raise InvalidRequestError(
                "'tool_choice' 'required' needs at least one tool.", param="tool_choice"
            )
        core = [Tool(t.name, t.description, visible_schema(t)) for t in tools]
        check_forced_tools(
            core, ToolChoice(ToolChoiceMode.REQUIRED), lambda i: f"tools[{i}].parameters"
        )


__all__ = ["check_tools", "restore_masked"]
