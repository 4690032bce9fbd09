"""The SSRF guard (shared/webhooks/ssrf.py) and address parsing (shared/core/netaddr.py), held on
every branch without the network: what a webhook URL may be, what its host may resolve to, and
how addresses and ranges are read."""

from __future__ import annotations

import socket
from ipaddress import ip_address, ip_network

import pytest

from shared.core.errors import InvalidRequest
from shared.core.netaddr import network_of, parse_network
from shared.webhooks import ssrf


@pytest.fixture
def guard(app_with):
    """An app context in which private addresses are refused (the production default)."""
    with app_with(KEYWARD_WEBHOOK_ALLOW_PRIVATE=False).app_context():
        yield


def answering(monkeypatch, *addresses: str) -> None:
    def getaddrinfo(host, port, *args, **kwargs):
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (a, port, 0, 0) if ":" in a else (a, port)) for a in addresses]

    monkeypatch.setattr(ssrf.socket, "getaddrinfo", getaddrinfo)


# --------------------------------------------------------------------------- parse_url


@pytest.mark.parametrize(("value", "message"), [
    (None, "Enter the URL that receives the events"),
    (42, "Enter the URL that receives the events"),
    ("   ", "Enter the URL that receives the events"),
    ("https://example.com/" + "a" * 2000, "At most 2000 characters"),
    ("https://example.com/\x00", "A URL cannot contain spaces or control characters"),
    ("https://example.com/\ud800", "A URL cannot contain spaces or control characters"),
    ("https://example.com/a b", "A URL cannot contain spaces or control characters"),
    ("http://[::1/", "This is not a valid URL"),
    ("ftp://example.com/", "Use an http:// or https:// URL"),
    ("https://user@example.com/", "Leave credentials out of the URL; verify Keyward's signature instead"),
    ("https://:secret@example.com/", "Leave credentials out of the URL; verify Keyward's signature instead"),
    ("https://example.com:65536/", "The port must be a number from 1 to 65535"),
    ("https://example.com:0/", "The port must be a number from 1 to 65535"),
    ("https://:443/", "The URL needs a host name"),
])
def test_a_url_that_cannot_be_a_webhook_is_refused_with_the_reason(value, message):
    with pytest.raises(InvalidRequest) as refused:
        ssrf.parse_url(value)
    assert refused.value.fields == {"url": message}


@pytest.mark.parametrize(("value", "expected"), [
    ("https://Hooks.Example.com/in?x=1", ("https", "hooks.example.com", 443, "/in?x=1")),
    ("HTTP://hooks.example.com", ("http", "hooks.example.com", 80, "/")),
    ("  http://hooks.example.com:8080/a/b  ", ("http", "hooks.example.com", 8080, "/a/b")),
    ("https://[2606:2800:220:1::1]:8443/", ("https", "2606:2800:220:1::1", 8443, "/")),
    ("https://example.com/" + "a" * 1980, ("https", "example.com", 443, "/" + "a" * 1980)),
])
def test_a_good_url_is_split_for_sending(value, expected):
    destination = ssrf.parse_url(value)
    assert (destination.scheme, destination.host, destination.port, destination.target) == expected
    assert destination.url == value.strip()


# --------------------------------------------------------------------------- resolve_destination


def test_a_literal_address_is_checked_without_dns(guard, monkeypatch):
    monkeypatch.setattr(ssrf.socket, "getaddrinfo", lambda *a, **k: pytest.fail("no DNS for a literal"))
    assert ssrf.resolve_destination("93.184.216.34", 443) == ["93.184.216.34"]
    with pytest.raises(ssrf.RefusedDestination) as refused:
        ssrf.resolve_destination("10.0.0.1", 443)
    assert str(refused.value) == "10.0.0.1 is a private address; webhooks only go to public addresses"


def test_every_distinct_answer_is_kept_once_and_scope_ids_are_dropped(guard, monkeypatch):
    answering(monkeypatch, "93.184.216.34", "93.184.216.34", "2606:2800:220:1::1%eth0", "2606:2800:220:1::1")
    assert ssrf.resolve_destination("hooks.example.com", 443) == ["93.184.216.34", "2606:2800:220:1::1"]


def test_one_refused_answer_refuses_the_name(guard, monkeypatch):
    answering(monkeypatch, "93.184.216.34", "127.0.0.1")
    with pytest.raises(ssrf.RefusedDestination) as refused:
        ssrf.resolve_destination("hooks.example.com", 443)
    assert str(refused.value) == ("hooks.example.com resolves to 127.0.0.1, which is a loopback address; "
                                  "webhooks only go to public addresses")


@pytest.mark.parametrize("error", [socket.gaierror(socket.EAI_NONAME, "unknown"), UnicodeError("label"),
                                   ValueError("bad")])
def test_a_name_that_does_not_resolve_is_refused(guard, monkeypatch, error):
    def getaddrinfo(*args, **kwargs):
        raise error

    monkeypatch.setattr(ssrf.socket, "getaddrinfo", getaddrinfo)
    with pytest.raises(ssrf.RefusedDestination, match=r"^Could not resolve gone\.example\.com$"):
        ssrf.resolve_destination("gone.example.com", 443)


def test_check_url_turns_a_refusal_into_a_field_error(guard, monkeypatch):
    answering(monkeypatch, "10.1.2.3")
    with pytest.raises(InvalidRequest) as refused:
        ssrf.check_url("https://hooks.example.com/")
    assert refused.value.fields["url"].startswith("hooks.example.com resolves to 10.1.2.3, which is a private")
    answering(monkeypatch, "93.184.216.34")
    assert ssrf.check_url("https://hooks.example.com/").host == "hooks.example.com"


# --------------------------------------------------------------------------- address_refusal


@pytest.mark.parametrize(("address", "strict", "relaxed"), [
    ("169.254.169.254", "a cloud metadata address", "a cloud metadata address"),
    ("fd00:ec2::254", "a cloud metadata address", "a cloud metadata address"),
    ("::ffff:169.254.169.254", "a cloud metadata address", "a cloud metadata address"),
    ("64:ff9b::a9fe:a9fe", "a cloud metadata address", "a cloud metadata address"),  # NAT64
    ("0.0.0.0", "an unspecified address", "an unspecified address"),
    ("::", "an unspecified address", "an unspecified address"),
    ("224.0.0.1", "a multicast address", "a multicast address"),
    ("ff02::1", "a multicast address", "a multicast address"),
    ("127.0.0.1", "a loopback address", None),
    ("::1", "a loopback address", None),
    ("64:ff9b::7f00:1", "a loopback address", None),  # NAT64 of 127.0.0.1
    ("169.254.1.1", "a link-local address", None),
    ("fe80::1", "a link-local address", None),
    ("10.0.0.1", "a private address", None),
    ("fd12:3456::1", "a private address", None),
    ("100.64.0.1", "a reserved address", None),  # shared address space: not private, not global
    ("240.0.0.1", "a private address", None),
    ("93.184.216.34", None, None),
    ("64:ff9b::5db8:d822", None, None),  # NAT64 of a public address
    ("2606:2800:220:1::1", None, None),
])
def test_each_kind_of_address_is_refused_for_its_reason(address, strict, relaxed):
    assert ssrf.address_refusal(ip_address(address), allow_private=False) == strict
    assert ssrf.address_refusal(ip_address(address), allow_private=True) == relaxed


def test_an_ipv4_address_carries_no_other_address():
    assert ssrf._embedded_ipv4(ip_address("10.0.0.1")) is None
    assert ssrf._embedded_ipv4(ip_address("2606:2800:220:1::1")) is None


# --------------------------------------------------------------------------- netaddr


@pytest.mark.parametrize(("text", "network"), [
    ("192.0.2.7", "192.0.2.7/32"), (" 192.0.2.0/24 ", "192.0.2.0/24"), ("192.0.2.9/24", "192.0.2.0/24"),
    ("2001:db8::1", "2001:db8::1/128"), ("2001:db8::/32", "2001:db8::/32"),
])
def test_parse_network_reads_addresses_and_ranges(text, network):
    assert parse_network(text) == ip_network(network)


@pytest.mark.parametrize("text", ["", "not-an-ip", "10.0.0.0/33", "300.1.1.1", "2001:db8::/129"])
def test_parse_network_refuses_anything_else_readably(text):
    with pytest.raises(ValueError) as refused:
        parse_network(text)
    assert str(refused.value) == f"'{text.strip()}' is not an IP address or CIDR range"


@pytest.mark.parametrize(("address", "network"), [
    ("192.0.2.77", "192.0.2.0/24"), ("::ffff:192.0.2.77", "192.0.2.0/24"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"), ("not an address", "not an address"),
    ("", "unknown"), ("x" * 100, "x" * 64),
])
def test_network_of_groups_requests_by_network(address, network):
    assert network_of(address) == network
