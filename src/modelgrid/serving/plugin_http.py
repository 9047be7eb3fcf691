"""Calling an app's plugin over HTTP, safely (``serving.app_tools`` decides what to call).

One call = one fresh ``aiohttp`` session, with these rules (security by default against
server-side request forgery, ``serving.plugin_addresses``):

- the URL's host is resolved first (a literal IP is taken as is), and every address it
  names must pass ``plugin_addresses.refusal`` (or lie in ``apps.plugin_allowed_networks``);
  the connection is then pinned to exactly those checked addresses by a resolver that
  answers with them (``_PinnedResolver``): no second lookup, no DNS-rebinding gap;
- redirects are not followed (a 3xx is the call's failure), no proxy is taken from the
  environment (``trust_env=False``), no cookie is kept (``DummyCookieJar``);
- the whole call has the tool's ``timeout_s``; the response is read up to ``MAX_RESPONSE_BYTES``
  (one byte more tells an oversize one, which fails).

Every failure (refused address, bad arguments for a ``GET``, a request aiohttp refuses to
build (``ValueError``), timeout, connection error, non-2xx
status, redirect, oversize) is a ``PluginResult`` whose ``text`` is ``{"error": …}`` (with
``status`` where the plugin answered one), never an exception: the model reads it and may try
again. Each call is counted (``Metrics.count_plugin_call``); a failure is logged at WARNING with
the app id, tool name, outcome and elapsed ms — never the headers, the token or the arguments.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from modelgrid.protocol.app_tools import AppTool, control_character
from modelgrid.serving.metrics import Metrics
from modelgrid.serving.plugin_addresses import (
    Address,
    Network,
    a_or_an,
    literal_ip,
    refusal,
)

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "modelgrid-plugin/1"


@dataclass(frozen=True, slots=True)
class PluginResult:
    """A plugin call's outcome: ``text`` is what the model reads (the response's text, or
    ``{"error": …}``); ``outcome`` is the metric's label; ``status`` the HTTP status, if any."""

    ok: bool
    text: str
    outcome: str
    status: int | None = None
    elapsed_ms: float = 0.0
    log_detail: str | None = None  # for the WARNING line only (a refused resolved address)


def _error(message: str, status: int | None = None, body: str | None = None) -> str:
    obj: dict[str, Any] = {"error": message}
    if status is not None:
        obj["status"] = status
    if body:
        obj["body"] = body
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


class _PinnedResolver(AbstractResolver):
    """Answers every lookup with the addresses already checked (the connector's only source)."""

    def __init__(self, addresses: Sequence[Address]) -> None:
        self._addresses = list(addresses)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=str(a),
                port=port,
                family=socket.AF_INET6 if a.version == 6 else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for a in self._addresses
        ]

    async def close(self) -> None:
        return None


async def checked_addresses(
    host: str, port: int, allowed: Sequence[Network]
) -> tuple[list[Address], str | None, str | None]:
    """The addresses ``host`` names, why they are refused if one is (``None``: all pass), and
    for the log only, the refused address a name resolved to.

    A literal IP (``plugin_addresses.literal_ip``) is its own address; a name is resolved with
    the system's resolver. A name that does not resolve gives ``([], "its host name does not
    resolve", None)``. The reason for a name never shows the address it resolved to: it is
    read by end users, and the operator's internal addresses are none of theirs.
    """
    ip = literal_ip(host)
    if ip is not None:
        why = refusal(ip, allowed)
        return [ip], (f"{ip} is {a_or_an(why)} address" if why else None), None
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return [], "its host name does not resolve", None
    found: list[Address] = []
    for info in infos:
        addr = literal_ip(str(info[4][0]).split("%", 1)[0])
        if addr is not None and addr not in found:
            found.append(addr)
    for addr in found:
        why = refusal(addr, allowed)
        if why is not None:
            return found, f"its host resolves to a refused address ({why})", str(addr)
    return found, None if found else "its host name does not resolve", None


def _query(arguments: dict[str, Any]) -> dict[str, str] | None:
    """``GET`` query parameters (``None``: a value is no scalar)."""
    out: dict[str, str] = {}
    for key, value in arguments.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            out[key] = str(value)
        else:
            return None
    return out


class PluginCaller:
    """Calls plugins by the rules of the module docstring.

    Args:
        metrics: Where each call is counted.
        allowed: The operator's allow-list (``apps.plugin_allowed_networks``).
    """

    def __init__(self, metrics: Metrics, allowed: Sequence[Network] = ()) -> None:
        self._metrics = metrics
        self._allowed = tuple(allowed)

    async def call(
        self,
        tool: AppTool,
        arguments: dict[str, Any],
        user_token: str | None,
        *,
        app_id: str,
    ) -> PluginResult:
        """Call ``tool`` with ``arguments`` (``user_token``: for its ``user_token_header``).

        Returns:
            The call's ``PluginResult`` (never raises for the plugin's failures).
        """
        started = time.perf_counter()
        result = await self._call(tool, arguments, user_token)
        elapsed_s = time.perf_counter() - started
        result = replace(result, elapsed_ms=round(elapsed_s * 1000, 1))
        self._metrics.count_plugin_call(result.outcome, elapsed_s)
        if result.ok:
            log.debug("plugin %s of app %s: ok in %.0f ms", tool.name, app_id, result.elapsed_ms)
        else:
            log.warning(
                "plugin call failed: app=%s tool=%s outcome=%s status=%s elapsed_ms=%.0f%s",
                app_id,
                tool.name,
                result.outcome,
                result.status,
                result.elapsed_ms,
                f" address={result.log_detail}" if result.log_detail else "",
            )
        return result

    async def _call(
        self, tool: AppTool, arguments: dict[str, Any], user_token: str | None
    ) -> PluginResult:
        parts = urlsplit(tool.url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses, why, resolved = await checked_addresses(host, port, self._allowed)
        if why is not None:
            text = _error(f"The plugin's address is refused: {why}.")
            return PluginResult(False, text, "address_refused", log_detail=resolved)
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **tool.headers}
        if tool.user_token_header is not None and user_token is not None:
            bearer = tool.user_token_header.lower() == "authorization"
            headers[tool.user_token_header] = f"Bearer {user_token}" if bearer else user_token
        if any(control_character(v) is not None for v in headers.values()):
            # refused at creation and before the first round already: one stored before
            message = "The plugin request could not be built (a header value is invalid)."
            return PluginResult(False, _error(message), "bad_request")
        kwargs: dict[str, Any] = {}
        if tool.method == "GET":
            query = _query(arguments)
            if query is None:
                message = "A GET plugin takes scalar arguments only (no objects or arrays)."
                return PluginResult(False, _error(message), "bad_request")
            kwargs["params"] = query
        else:
            kwargs["json"] = arguments
        connector = aiohttp.TCPConnector(
            resolver=_PinnedResolver(addresses), use_dns_cache=False, force_close=True
        )
        try:
            async with (
                aiohttp.ClientSession(
                    connector=connector,
                    cookie_jar=aiohttp.DummyCookieJar(),
                    trust_env=False,
                    timeout=aiohttp.ClientTimeout(total=tool.timeout_s),
                ) as session,
                session.request(
                    tool.method, tool.url, headers=headers, allow_redirects=False, **kwargs
                ) as response,
            ):
                body = await _read_capped(response)
                status = response.status
        except TimeoutError:
            message = f"The plugin did not answer within {tool.timeout_s} s."
            return PluginResult(False, _error(message), "timeout")
        except (aiohttp.ClientError, OSError):
            return PluginResult(False, _error("The plugin could not be reached."), "connect_error")
        except ValueError:  # aiohttp refuses the request as built (the last guard)
            message = "The plugin request could not be built (a header or the URL is invalid)."
            return PluginResult(False, _error(message), "bad_request")
        if body is None:
            message = f"The plugin's response is over {MAX_RESPONSE_BYTES} bytes."
            return PluginResult(False, _error(message, status), "too_large", status)
        text = body.decode("utf-8", errors="replace")
        if 300 <= status < 400:
            message = f"The plugin answered with a redirect (HTTP {status}), which is not followed."
            return PluginResult(False, _error(message, status), "redirect", status)
        if not 200 <= status < 300:
            message = f"The plugin answered HTTP {status}."
            return PluginResult(False, _error(message, status, text[:1024]), "http_error", status)
        return PluginResult(True, text, "ok", status)


async def _read_capped(response: aiohttp.ClientResponse) -> bytes | None:
    """The body, or ``None`` when it is over ``MAX_RESPONSE_BYTES`` (read no further)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(16 * 1024):
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


__all__ = ["MAX_RESPONSE_BYTES", "PluginCaller", "PluginResult", "checked_addresses"]
