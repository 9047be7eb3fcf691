"""An app's tools: Model Studio's custom plugins (``docs/applications.md``, "Tools (plugins)").

A plugin is an HTTP API the platform calls when the app's model decides to (Model Studio's
plugin definition: name, description, URL, method, input parameters as a JSON Schema,
service-level auth headers kept with the plugin, or user-level auth: each call carries the end
user's token, https://help.aliyun.com/zh/model-studio/plugin-overview). At call time the
client fills pass-through parameters and user tokens through ``input.biz_params``
(``user_defined_params`` / ``user_defined_tokens``, keyed by the plugin's ``name``).

Shapes only, and the rules a single tool can be checked by; the rules across an app's tools
and against the operator's settings (unique names, schemas, the URL's host) are
``control.app_tools``'.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

TOOL_NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
MAX_TOOLS = 16
MAX_HEADERS = 16
MAX_URL_CHARS = 2048
MASK = "****"  # a header value as every response shows it (they are write-only)
ToolChoiceSetting = Literal["auto", "required"]
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")  # an HTTP field name (RFC 9110 5.1)
_RESERVED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "content-type", "cookie"}
)


def control_character(text: str) -> str | None:
    """The first character of ``text`` an HTTP field value may not hold, as ``U+XXXX``
    (``None``: none): a C0 control other than TAB, DEL or a C1 control (RFC 9110 5.5 allows
    TAB, SP and visible characters; aiohttp refuses the others when it sends the request)."""
    for c in text:
        o = ord(c)
        if (o < 0x20 and c != "\t") or 0x7F <= o <= 0x9F:
            return f"U+{o:04X}"
    return None


def _header_name(name: str) -> str:
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"'{name[:64]}' is no HTTP header name")
    if name.lower() in _RESERVED_HEADERS:
        raise ValueError(f"the header '{name}' is set by the gateway, not by a plugin")
    return name


class AppTool(BaseModel):
    """One plugin of an app.

    Attributes:
        type: ``plugin``, the only kind.
        name: The function name the model sees, and the plugin's key in ``biz_params``;
            unique within the app.
        description: What it does (shown to the model), 1..1024 characters.
        parameters: JSON Schema of its arguments object (the ``user_params`` included; the
            model sees the schema without them).
        url: ``http`` or ``https``, no user info, at most 2048 characters.
        method: ``POST`` (the arguments as a JSON body) or ``GET`` (as query parameters:
            scalar values only).
        headers: Service-level auth sent with every call, at most 16; the values are
            write-only (``MASK`` in every response; never logged).
        user_params: Parameters filled from ``biz_params.user_defined_params[name]``, hidden
            from the model.
        user_token_header: The header that carries ``biz_params.user_defined_tokens[name]
            .user_token`` (``Bearer <token>`` for ``Authorization``, verbatim otherwise).
        timeout_s: The whole call's time limit, 1..30 s.
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["plugin"] = "plugin"
    name: str = Field(pattern=TOOL_NAME)
    description: str = Field(min_length=1, max_length=1024)
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    url: str = Field(min_length=1, max_length=MAX_URL_CHARS)
    method: Literal["GET", "POST"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict, max_length=MAX_HEADERS)
    user_params: list[str] = Field(default_factory=list, max_length=64)
    user_token_header: str | None = None
    timeout_s: StrictInt = Field(default=10, ge=1, le=30)

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        # first: urlsplit's own messages quote the URL's parts as they are (a DEL in the port
        # came back raw in the error)
        if any(c.isspace() or ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in url):
            raise ValueError("the URL may not contain spaces or control characters")
        try:
            parts = urlsplit(url)
            port = parts.port  # raises on a port out of 0..65535
        except ValueError as exc:
            raise ValueError(f"not a valid URL ({exc})") from None
        if port == 0:
            raise ValueError("the URL's port must be 1..65535")
        if parts.scheme not in ("http", "https"):
            raise ValueError("the URL's scheme must be http or https")
        if not parts.hostname:
            raise ValueError("the URL has no host")
        if parts.username is not None or parts.password is not None:
            raise ValueError("the URL may not carry user info: put credentials in 'headers'")
        return url

    @field_validator("headers")
    @classmethod
    def _headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            _header_name(name)
            if len(value) > 4096:  # control characters: ``control.app_tools`` (names the header)
                raise ValueError(f"the value of '{name}' is over 4096 characters")
        if len({n.lower() for n in headers}) < len(headers):
            raise ValueError("a header name appears twice")
        return headers

    @field_validator("user_token_header")
    @classmethod
    def _token_header(cls, name: str | None) -> str | None:
        return None if name is None else _header_name(name)


def visible_schema(tool: AppTool) -> dict[str, Any]:
    """The ``parameters`` the model sees: without the ``user_params`` (under
    ``properties`` and in ``required``)."""
    hidden = set(tool.user_params)
    schema = dict(tool.parameters)
    if not hidden:
        return schema
    props = schema.get("properties")
    if isinstance(props, dict):
        schema["properties"] = {k: v for k, v in props.items() if k not in hidden}
    required = schema.get("required")
    if isinstance(required, list):
        schema["required"] = [r for r in required if r not in hidden]
    return schema


__all__ = [
    "MASK",
    "MAX_HEADERS",
    "MAX_TOOLS",
    "TOOL_NAME",
    "AppTool",
    "ToolChoiceSetting",
    "control_character",
    "visible_schema",
]
