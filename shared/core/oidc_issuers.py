"""Which OIDC issuers Keyward trusts: the built-in CI platforms plus KEYWARD_OIDC_ISSUERS.

A leaf (standard library only): the configuration reads it at start-up, before anything else of
the app is imported, so a bad entry stops the app instead of refusing every exchange later.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

GITHUB_ACTIONS_ISSUER = "https://token.actions.githubusercontent.com"
GITLAB_ISSUER = "https://gitlab.com"
BUILTIN_ISSUERS = (GITHUB_ACTIONS_ISSUER, GITLAB_ISSUER)
ISSUER_LABELS = {GITHUB_ACTIONS_ISSUER: "GitHub Actions", GITLAB_ISSUER: "GitLab CI"}
MAX_ISSUER_LENGTH = 500  # the column that stores it


class InvalidIssuerConfig(ValueError):
    """An entry of KEYWARD_OIDC_ISSUERS cannot be a trusted issuer (the config turns it into ConfigError)."""


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def issuer_url_problem(url: str) -> str | None:
    """Why `url` cannot be a trusted issuer (None when it can): https only, plain http only for a
    loopback host (a test issuer on this machine); no credentials, query or fragment."""
    if len(url) > MAX_ISSUER_LENGTH:
        return f"is longer than {MAX_ISSUER_LENGTH} characters"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("https", "http") or not host:
        return "must be an https:// URL"
    if parts.scheme == "http" and not is_loopback_host(host):
        return "must use https (plain http is only for a loopback test issuer)"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials"
    if parts.query or parts.fragment or url != url.strip():
        return "must not carry a query, a fragment or spaces"
    return None


def trusted_issuers(configured: str | Iterable[str] | None = None) -> frozenset[str]:
    """The built-in issuers plus the configured ones (KEYWARD_OIDC_ISSUERS, comma separated).

    Entries are compared with a token's `iss` exactly (a trailing slash makes another issuer).

    :raise InvalidIssuerConfig: naming the bad entry
    """
    if configured is None:
        entries: list[str] = []
    elif isinstance(configured, str):
        entries = [part.strip() for part in configured.split(",")]
    else:
        entries = [part.strip() for part in configured]
    issuers = set(BUILTIN_ISSUERS)
    for entry in entries:
        if not entry:
            continue
        problem = issuer_url_problem(entry)
        if problem:
            raise InvalidIssuerConfig(f"KEYWARD_OIDC_ISSUERS: '{entry}' {problem}")
        issuers.add(entry)
    return frozenset(issuers)


def issuer_label(issuer: str) -> str:
    """How a page names an issuer: the platform for the built-in ones, else its URL."""
    label = ISSUER_LABELS.get(issuer)
    return f"{label} ({issuer})" if label else issuer
