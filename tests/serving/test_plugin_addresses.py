"""The address rules of apps' plugins (``serving.plugin_addresses``): pure functions."""

from __future__ import annotations

import ipaddress

import pytest

from modelgrid.serving.plugin_addresses import (
    a_or_an,
    host_refusal,
    literal_ip,
    networks,
    refusal,
)


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("100.64.0.1", "shared (CGNAT)"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.1", "private"),  # TEST-NET-1 (documentation)
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "link-local"),
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("2002:a00:1::", "private"),  # 6to4 of 10.0.0.1
    ],
)
def test_refused(address: str, why: str) -> None:
    assert refusal(ipaddress.ip_address(address)) == why


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "1.1.1.1"])
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


def test_the_allow_list_lifts_a_refusal() -> None:
    allowed = networks(["127.0.0.1/32", "10.20.0.0/16"])
    assert refusal(ipaddress.ip_address("127.0.0.1"), allowed) is None
    assert refusal(ipaddress.ip_address("10.20.3.4"), allowed) is None
    assert refusal(ipaddress.ip_address("10.21.0.1"), allowed) == "private"
    assert refusal(ipaddress.ip_address("127.0.0.2"), allowed) == "loopback"
    # the mapped form of an allowed address is allowed too
    assert refusal(ipaddress.ip_address("::ffff:127.0.0.1"), allowed) is None
    assert refusal(ipaddress.ip_address("::1"), allowed) == "loopback"


def test_hosts_as_written() -> None:
    assert literal_ip("[::1]") == ipaddress.ip_address("::1")
    assert literal_ip("example.com") is None
    assert host_refusal("[::1]") == "loopback"
    assert host_refusal("169.254.169.254") == "link-local"
    assert host_refusal("localhost") == "loopback"
    assert host_refusal("LOCALHOST.") == "loopback"
    assert host_refusal("api.localhost") == "loopback"
    assert host_refusal("api.example.com") is None  # resolved and checked at call time
    assert host_refusal("8.8.8.8") is None
    assert host_refusal("localhost", networks(["127.0.0.0/8"])) is None
    assert host_refusal("127.0.0.1", networks(["127.0.0.1/32"])) is None
    with pytest.raises(ValueError):
        networks(["not-a-cidr"])


def test_the_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelgrid.config import Settings

    monkeypatch.setenv("MODELGRID_APPS__PLUGIN_ALLOWED_NETWORKS", '["127.0.0.1/32", "fd00::/8"]')
    allowed = networks(Settings().apps.plugin_allowed_networks)
    assert allowed == (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("fd00::/8"))
    assert refusal(ipaddress.ip_address("fd12::1"), allowed) is None


@pytest.mark.parametrize("host", ["2130706433", "127.1", "0x7f.1", "0177.0.0.1"])
def test_numeric_ipv4_forms_are_literals(host: str) -> None:
    # the system resolver (inet_aton) reads each of these as 127.0.0.1
    assert literal_ip(host) == ipaddress.ip_address("127.0.0.1")
    assert host_refusal(host) == "loopback"
    assert host_refusal(host, networks(["127.0.0.1/32"])) is None


def test_names_that_look_numeric_are_names() -> None:
    assert literal_ip("deadbeef") is None  # inet_aton wants 0x before hex digits
    assert literal_ip("1.2.3.4.5") is None
    assert host_refusal("cafe.example.com") is None


def test_articles() -> None:
    assert [a_or_an(w) for w in ("unspecified", "loopback", "link-local")] == [
        "an unspecified",
        "a loopback",
        "a link-local",
    ]
