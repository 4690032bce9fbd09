"""The real client address: forwarded headers count only from configured proxy hops."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from shared.core import current


def client_address() -> str:
    """The peer address, or the address the trusted proxies saw (KEYWARD_TRUSTED_PROXIES hops).

    With N trusted hops, the client is the N-th address from the right of X-Forwarded-For:
    each trusted proxy appends the address it received the request from, so everything further
    left was written by the client and cannot be trusted.
    """
    served = current.request()
    peer = served.remote_addr or ""
    hops = current.app().config.get("KEYWARD_TRUSTED_PROXIES", 0)
    if hops <= 0:
        return peer
    forwarded = [part.strip() for part in served.headers.get("X-Forwarded-For", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if len(forwarded) < hops:
        return peer
    candidate = forwarded[-hops]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return peer


def parse_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An address or CIDR as a network; raises ValueError with a readable message."""
    text = text.strip()
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"'{text}' is not an IP address or CIDR range") from None


def address_allowed(address: str, allowlist: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in ipaddress.ip_network(entry, strict=False) for entry in allowlist)


@lru_cache(maxsize=4096)  # parsing costs more than the lookup; clients repeat their addresses
def network_of(address: str) -> str:
    """The network a request came from, as insight groups them: /24 for IPv4, /64 for
    IPv6 (an IPv4-mapped IPv6 address counts as IPv4). Unparseable addresses group as themselves."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64] or "unknown"
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
