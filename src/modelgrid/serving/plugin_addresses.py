"""Which addresses an app's plugin (``serving.plugin_http``) may be called at: pure rules.

Security by default against server-side request forgery: a plugin URL is written by a tenant,
and the gateway calls it from inside the operator's network. Every address the URL's host
names (a literal IP, or every address its name resolves to) must be a public unicast
address: refused are loopback, private (RFC 1918, ``fc00::/7``), link-local (including the
cloud metadata address ``169.254.169.254``), multicast, unspecified, reserved, the shared
address space of carrier-grade NAT (``100.64.0.0/10``, RFC 6598) and the IPv4-mapped or
-translated IPv6 forms of those, unless the address falls in one of the operator's
``apps.plugin_allowed_networks`` (``config.AppsSettings``). Parsing is the standard
library's ``ipaddress``; its ``is_global`` follows IANA's special-purpose registries.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
LOCAL_NAMES = ("localhost", "localhost.localdomain")
_NUMERIC = re.compile(r"[0-9A-Fa-fXx.]+")


def a_or_an(word: str) -> str:
    """``word`` with its indefinite article, by its first letter (``an unspecified``)."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def networks(cidrs: Iterable[str | Network]) -> tuple[Network, ...]:
    """The allow-list as networks (a CIDR string, or a network already).

    Raises:
        ValueError: a string that is no CIDR (``ipaddress.ip_network``, ``strict=False``).
    """
    return tuple(
        c
        if isinstance(c, ipaddress.IPv4Network | ipaddress.IPv6Network)
        else ipaddress.ip_network(c, strict=False)
        for c in cidrs
    )


def literal_ip(host: str) -> Address | None:
    """The address when ``host`` is a literal IP (``[::1]``'s brackets removed), else ``None``.

    A literal IPv4 is also any numeric form the system resolver reads as one (``inet_aton``,
    POSIX: ``2130706433``, ``127.1``, ``0x7f.1``, ``0177.0.0.1`` are all ``127.0.0.1``): a host
    of digits, hex digits, ``x`` and dots only that ``socket.inet_aton`` accepts."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    if not _NUMERIC.fullmatch(host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries: IPv4-mapped (``::ffff:a.b.c.d``), 6to4
    (``2002::/16``), or NAT64's well-known prefix (``64:ff9b::/96``)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in ipaddress.IPv6Network("64:ff9b::/96"):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: Address, allowed: Sequence[Network] = ()) -> str | None:
    """Why a plugin may not be called at ``address`` (``None``: it may).

    Args:
        address: One address the plugin's host names.
        allowed: The operator's allow-list: an address in one of them is always allowed.

    Returns:
        A short reason (``"loopback"``, ``"private"``, ``"link-local"``, ``"multicast"``,
        ``"unspecified"``, ``"reserved"``, ``"shared (CGNAT)"``, ``"not global"``), or
        ``None``.
    """
    if any(address.version == n.version and address in n for n in allowed):
        return None
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_v4(address)
        if inner is not None:
            return refusal(inner, allowed)
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("shared (CGNAT)", isinstance(address, ipaddress.IPv4Address) and address in _CGNAT),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("not global", not address.is_global),
    )
    return next((why for why, hit in checks if hit), None)


def host_refusal(host: str, allowed: Sequence[Network] = ()) -> str | None:
    """Why a plugin URL's ``host`` is refused as written, before any lookup: a literal IP
    ``refusal`` refuses, or a local name (``localhost``, ``*.localhost``) unless the
    allow-list holds the loopback addresses. ``None``: a name to resolve (and check) at call
    time, or an allowed literal."""
    ip = literal_ip(host)
    if ip is not None:
        return refusal(ip, allowed)
    name = host.rstrip(".").lower()
    if name in LOCAL_NAMES or name.endswith(".localhost"):
        loopback = ipaddress.IPv4Address("127.0.0.1")
        return None if refusal(loopback, allowed) is None else "loopback"
    return None


__all__ = [
    "LOCAL_NAMES",
    "Address",
    "Network",
    "a_or_an",
    "host_refusal",
    "literal_ip",
    "networks",
    "refusal",
]
