"""The SSRF guard: a webhook URL may name only a public address, checked when it is saved and again
at delivery time (DNS can change), and the connection is pinned to the address that was checked.
"""

from __future__ import annotations

import ipaddress
import socket
import unicodedata
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import current_app

from shared.core.errors import InvalidRequest

# Cloud instance metadata services: never a destination, whatever KEYWARD_WEBHOOK_ALLOW_PRIVATE says.
METADATA_ADDRESSES = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})



MAX_URL_LENGTH = 2000
NAT64 = ipaddress.ip_network("64:ff9b::/96")

class RefusedDestination(Exception):
    """The URL's host is, or resolves to, an address webhooks must not reach (or does not resolve)."""


def _embedded_ipv4(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64): it is what gets reached."""
    if address.version != 6:
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_private: bool) -> str | None:
    """Why webhooks may not reach this address, or None when they may."""
    address = _embedded_ipv4(address) or address
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if allow_private:
        return None
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_private:
        return "a private address"
    if address.is_reserved or not address.is_global:
        return "a reserved address"
    return None


def allow_private() -> bool:
    return bool(current_app.config.get("KEYWARD_WEBHOOK_ALLOW_PRIVATE"))


def resolve_destination(host: str, port: int) -> list[str]:
    """The addresses to connect to for host:port, every one of them checked.

    A host with any refused address is refused as a whole: a name answering both a public and a
    private address must not reach the private one on a lucky connection.

    :raise RefusedDestination:
    """
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        candidates = [literal]
    else:
        try:
            answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError, ValueError):
            raise RefusedDestination(f"Could not resolve {host}") from None
        candidates = []
        for *_, sockaddr in answers:
            address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
            if address not in candidates:
                candidates.append(address)
    if not candidates:
        raise RefusedDestination(f"Could not resolve {host}")
    private_ok = allow_private()
    for address in candidates:
        reason = address_refusal(address, private_ok)
        if reason:
            shown = host if literal is not None else f"{host} resolves to {address}, which"
            raise RefusedDestination(f"{shown} is {reason}; webhooks only go to public addresses")
    return [str(address) for address in candidates]


@dataclass(frozen=True)
class Destination:
    url: str
    scheme: str
    host: str
    port: int
    target: str  # path and query, as sent in the request line


def parse_url(value: object) -> Destination:
    """A well-formed http(s) URL without credentials, split for sending (no DNS here).

    :raise InvalidRequest: with the reason under `url`
    """
    def refuse(message: str) -> InvalidRequest:
        return InvalidRequest(message, fields={"url": message})

    if not isinstance(value, str) or not value.strip():
        raise refuse("Enter the URL that receives the events")
    url = value.strip()
    if len(url) > MAX_URL_LENGTH:
        raise refuse(f"At most {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or unicodedata.category(ch) in {"Cc", "Cs"} for ch in url):
        raise refuse("A URL cannot contain spaces or control characters")
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        raise refuse("This is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise refuse("Use an http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise refuse("Leave credentials out of the URL; verify Keyward's signature instead")
    try:
        port = parts.port
    except ValueError:
        raise refuse("The port must be a number from 1 to 65535") from None
    host = parts.hostname
    if not host:
        raise refuse("The URL needs a host name")
    if port == 0:
        raise refuse("The port must be a number from 1 to 65535")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Destination(url, scheme, host, port or (443 if scheme == "https" else 80), target)


def check_url(value: object) -> Destination:
    """parse_url, then the SSRF guard on what the host resolves to now.

    :raise InvalidRequest:
    """
    destination = parse_url(value)
    try:
        resolve_destination(destination.host, destination.port)
    except RefusedDestination as refused:
        raise InvalidRequest(str(refused), fields={"url": str(refused)}) from None
    return destination
