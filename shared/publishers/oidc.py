"""Verifying a CI platform's OpenID Connect identity token (GitHub Actions, GitLab CI, ...).

`verify_oidc_token` answers a `VerifiedIdentity` or raises `OidcRefused` with a machine-readable
reason. It checks the issuer against an allowlist before any network traffic, the signature with
the issuer's published keys (discovery document -> `jwks_uri`, cached per process), the algorithm,
`iss`, `aud`, `exp`, `nbf`/`iat` and the presence of `jti`. Matching a trusted publisher
(`conditions_match`) and refusing a `jti` seen before are the caller's part: they need the database.

All JWT parsing and signature checking is PyJWT's; this module only chooses the key and the rules.
"""

from __future__ import annotations

import json
import math
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import jwt

from shared.core import clock
from shared.core.oidc_issuers import (  # noqa: F401  (the verifier's public names)
    BUILTIN_ISSUERS,
    GITHUB_ACTIONS_ISSUER,
    GITLAB_ISSUER,
    is_loopback_host,
    issuer_url_problem,
    trusted_issuers,
)

# Asymmetric algorithms only, each bound to the one key type that may verify it: a token may never
# pick HMAC (where a public key would become the shared secret) or `none`.
ALGORITHM_FOR_KEY = {("RSA", None): "RS256", ("EC", "P-256"): "ES256"}
ALGORITHMS = frozenset(ALGORITHM_FOR_KEY.values())
MIN_RSA_BITS = 2048

# Clock skew between the CI platform and us: a token minted "now" may look a little early.
# `exp` gets no leeway: a token is dead when its issuer says so.
TIME_LEEWAY = timedelta(seconds=60)

FETCH_TIMEOUT_SECONDS = 3
MAX_DOCUMENT_BYTES = 256 * 1024
MAX_TOKEN_CHARS = 16 * 1024
MAX_JTI_CHARS = 255
# Keys are trusted for at most this long without asking the issuer again, so a key the issuer
# withdraws stops working within the hour.
KEYS_MAX_AGE = timedelta(hours=1)
# A token naming an unknown `kid` may mean the issuer rotated its keys, so we ask again, but at most
# this often per issuer: otherwise anyone could make us hammer the issuer with made-up kids.
UNKNOWN_KID_REFRESH_INTERVAL = timedelta(minutes=1)
# After a failed discovery or key fetch, exchanges fail fast for a while instead of each one
# waiting for the same timeout.
FAILED_FETCH_BACKOFF = timedelta(seconds=10)


class RefusalReason(StrEnum):
    """Why an OIDC token was not exchanged; the API answers it as `reason`."""

    AUDIENCE = "audience"
    EXPIRED = "expired"
    ISSUER = "issuer"
    NO_MATCHING_PUBLISHER = "no_matching_publisher"
    REPLAYED = "replayed"
    SIGNATURE = "signature"


class OidcRefused(Exception):
    """The token is not exchanged. `reason` is for machines, `message` for the person debugging CI."""

    def __init__(self, reason: RefusalReason, message: str):
        super().__init__(message)
        self.reason = RefusalReason(reason)
        self.message = message


class IssuerUnavailable(OidcRefused):
    """The issuer's discovery document or keys could not be fetched or made no sense.

    A refusal like any other (reason `issuer`), so a caller that only knows `OidcRefused` stays
    safe; a caller may answer it as "try again later" instead, since the token may be fine.
    """

    def __init__(self, message: str):
        super().__init__(RefusalReason.ISSUER, message)


@dataclass(frozen=True)
class VerifiedIdentity:
    """The claims of a token whose signature, issuer, audience and lifetime were checked."""

    issuer: str
    audiences: tuple[str, ...]
    jti: str
    expires_at: datetime
    claims: dict[str, Any]


# --------------------------------------------------------------------------- fetching keys


class _FetchError(Exception):
    pass


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect could lead from https to http or to another host: the issuer must answer itself."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def _fetch_json(url: str) -> dict[str, Any]:
    """GET a small JSON object with a short timeout; anything else is a _FetchError."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with _opener.open(request, timeout=FETCH_TIMEOUT_SECONDS) as response:
            body = response.read(MAX_DOCUMENT_BYTES + 1)
    except urllib.error.HTTPError as error:
        error.close()
        raise _FetchError(f"{url} answered HTTP {error.code}") from None
    except (OSError, ValueError) as error:
        raise _FetchError(f"{url} could not be fetched ({error.__class__.__name__})") from None
    if len(body) > MAX_DOCUMENT_BYTES:
        raise _FetchError(f"{url} answered more than {MAX_DOCUMENT_BYTES} bytes")
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise _FetchError(f"{url} did not answer JSON") from None
    if not isinstance(document, dict):
        raise _FetchError(f"{url} did not answer a JSON object")
    return document


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def _jwks_uri_from(issuer: str, document: dict[str, Any]) -> str:
    # The document must name the issuer we asked, or it is describing someone else's keys.
    if document.get("issuer") != issuer:
        raise _FetchError("the discovery document names another issuer")
    jwks_uri = document.get("jwks_uri")
    if not isinstance(jwks_uri, str):
        raise _FetchError("the discovery document has no jwks_uri")
    # The keys are fetched as securely as the issuer itself: same scheme, and plain http only on
    # loopback (a test issuer).
    problem = issuer_url_problem(jwks_uri)
    if problem or urlsplit(jwks_uri).scheme != urlsplit(issuer).scheme:
        raise _FetchError(f"jwks_uri {problem or 'uses another scheme than the issuer'}")
    return jwks_uri


def _signing_keys_from(document: dict[str, Any]) -> dict[str, jwt.PyJWK]:
    """The usable signature keys of a JWKS by kid; keys of other types or uses are skipped."""
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise _FetchError("the JWKS has no keys list")
    keys: dict[str, jwt.PyJWK] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid or entry.get("use", "sig") != "sig":
            continue
        crv = entry.get("crv") if entry.get("kty") == "EC" else None
        algorithm = ALGORITHM_FOR_KEY.get((entry.get("kty"), crv))
        if algorithm is None or entry.get("alg", algorithm) != algorithm:
            continue
        try:
            key = jwt.PyJWK(entry, algorithm=algorithm)
        except (jwt.PyJWTError, TypeError, ValueError):
            continue
        if algorithm == "RS256" and key.key.key_size < MIN_RSA_BITS:
            continue
        keys[kid] = key
    if not keys:
        raise _FetchError("the JWKS holds no RS256 or ES256 signing key")
    return keys


@dataclass
class _IssuerKeys:
    lock: threading.Lock = field(default_factory=threading.Lock)
    jwks_uri: str | None = None
    discovered_at: datetime | None = None
    keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    keys_fetched_at: datetime | None = None
    unknown_kid_refresh_at: datetime | None = None
    failed_at: datetime | None = None


# Per process: each worker asks the issuer on its own, at most once an hour plus rotations. The
# outer lock guards the dict; each issuer's lock is held across its fetch, so concurrent requests
# wait for one fetch instead of each starting their own.
_cache: dict[str, _IssuerKeys] = {}
_cache_lock = threading.Lock()


def clear_key_cache() -> None:
    """Forget every issuer's keys (tests; an operator never needs it: keys expire in an hour)."""
    with _cache_lock:
        _cache.clear()


def _within(since: datetime | None, now: datetime, interval: timedelta) -> bool:
    return since is not None and now - since < interval


def _refresh(issuer: str, state: _IssuerKeys, now: datetime) -> None:
    try:
        if not _within(state.discovered_at, now, KEYS_MAX_AGE) or state.jwks_uri is None:
            state.jwks_uri = _jwks_uri_from(issuer, _fetch_json(discovery_url(issuer)))
            state.discovered_at = now
        state.keys = _signing_keys_from(_fetch_json(state.jwks_uri))
        state.keys_fetched_at = now
        state.failed_at = None
    except _FetchError as error:
        state.failed_at = now
        raise IssuerUnavailable(f"the issuer's keys are unavailable: {error}") from None


def _signing_key(issuer: str, kid: str) -> jwt.PyJWK:
    with _cache_lock:
        state = _cache.setdefault(issuer, _IssuerKeys())
    with state.lock:
        now = clock.now()
        if not _within(state.keys_fetched_at, now, KEYS_MAX_AGE):
            if _within(state.failed_at, now, FAILED_FETCH_BACKOFF):
                raise IssuerUnavailable("the issuer's keys could not be fetched a moment ago")
            state.keys = {}
            _refresh(issuer, state, now)
        elif kid not in state.keys and not _within(
                state.unknown_kid_refresh_at, now, UNKNOWN_KID_REFRESH_INTERVAL):
            state.unknown_kid_refresh_at = now
            _refresh(issuer, state, now)
        key = state.keys.get(kid)
    if key is None:
        raise OidcRefused(RefusalReason.SIGNATURE, "the issuer publishes no key with the token's kid")
    return key


# --------------------------------------------------------------------------- verification


def _refused_for(error: jwt.PyJWTError) -> OidcRefused:
    if isinstance(error, jwt.MissingRequiredClaimError):
        reason = {"aud": RefusalReason.AUDIENCE, "iss": RefusalReason.ISSUER,
                  "exp": RefusalReason.EXPIRED}.get(error.claim, RefusalReason.SIGNATURE)
        return OidcRefused(reason, f"the token has no '{error.claim}' claim")
    if isinstance(error, jwt.InvalidAudienceError):
        return OidcRefused(RefusalReason.AUDIENCE, "the token is not meant for this audience")
    if isinstance(error, jwt.InvalidIssuerError):
        return OidcRefused(RefusalReason.ISSUER, "the token's issuer does not match")
    return OidcRefused(RefusalReason.SIGNATURE, f"the token is not validly signed ({error})")


def _timestamp(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise OidcRefused(RefusalReason.SIGNATURE, f"the token's '{name}' claim is not a time")
    return float(value)


def _check_lifetime(claims: dict[str, Any], now: datetime) -> datetime:
    """The token's expiry, if it is within its lifetime now; `exp` is required."""
    moment = now.timestamp()
    leeway = TIME_LEEWAY.total_seconds()
    expires = _timestamp(claims, "exp")
    if expires is None:
        raise OidcRefused(RefusalReason.EXPIRED, "the token has no 'exp' claim")
    for name in ("nbf", "iat"):
        start = _timestamp(claims, name)
        if start is not None and start > moment + leeway:
            raise OidcRefused(RefusalReason.EXPIRED, f"the token is not valid yet ('{name}')")
    if moment >= expires:
        raise OidcRefused(RefusalReason.EXPIRED, "the token has expired")
    try:
        return datetime.fromtimestamp(expires, UTC)
    except (OverflowError, OSError, ValueError):
        raise OidcRefused(RefusalReason.SIGNATURE, "the token's 'exp' claim is not a time") from None


def verify_oidc_token(
    raw_jwt: str,
    *,
    allowed_issuers: Collection[str],
    audience_for: Callable[[str], Collection[str]],
    now: datetime | None = None,
) -> VerifiedIdentity:
    """Verify an OIDC identity token, or raise `OidcRefused`.

    `allowed_issuers` usually comes from `trusted_issuers(...)`. `audience_for(issuer)` answers
    the audiences accepted for that issuer (those of its trusted publishers); the token's `aud`
    must hold one of them, and an issuer nobody registered is refused before any network traffic.
    """
    if isinstance(allowed_issuers, str):
        raise TypeError("allowed_issuers is a collection of issuer URLs, not one string")
    now = now or clock.now()
    if not isinstance(raw_jwt, str) or not raw_jwt or len(raw_jwt) > MAX_TOKEN_CHARS:
        raise OidcRefused(RefusalReason.SIGNATURE, "the token is not a JWT")
    try:
        header = jwt.get_unverified_header(raw_jwt)
        # Read unverified only to choose the issuer; nothing else is believed before the signature.
        unverified = jwt.decode(raw_jwt, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise OidcRefused(RefusalReason.SIGNATURE, "the token is not a JWT") from None

    algorithm = header.get("alg")
    if algorithm not in ALGORITHMS:
        raise OidcRefused(RefusalReason.SIGNATURE, "the token's algorithm is not RS256 or ES256")
    issuer = unverified.get("iss")
    if not isinstance(issuer, str) or issuer not in allowed_issuers or issuer_url_problem(issuer):
        raise OidcRefused(RefusalReason.ISSUER, "the token's issuer is not trusted here")
    audiences = [audience for audience in audience_for(issuer) if audience]
    if not audiences:
        raise OidcRefused(RefusalReason.AUDIENCE, "no trusted publisher expects this issuer")
    # GitHub and GitLab always name the key; trying every key of the issuer instead would only
    # multiply the work an anonymous caller can make us do.
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise OidcRefused(RefusalReason.SIGNATURE, "the token names no key (kid)")

    key = _signing_key(issuer, kid)
    if key.algorithm_name != algorithm:
        raise OidcRefused(RefusalReason.SIGNATURE, "the token's algorithm does not fit its key")
    try:
        claims = jwt.decode(
            raw_jwt,
            key,
            algorithms=[key.algorithm_name],
            audience=audiences,
            issuer=issuer,
            # PyJWT reads the wall clock for time claims; ours is injectable, so they are checked
            # below. A token without `jti` cannot be held to single use, so it is malformed for
            # us and refused as `signature` (GitHub and GitLab always send one).
            options={"require": ["iss", "aud", "exp", "jti"], "verify_exp": False,
                     "verify_nbf": False, "verify_iat": False, "enforce_minimum_key_length": True},
        )
    except jwt.PyJWTError as error:
        raise _refused_for(error) from None

    expires_at = _check_lifetime(claims, now)
    jti = claims["jti"]
    if not isinstance(jti, str) or not jti.strip() or len(jti) > MAX_JTI_CHARS:
        raise OidcRefused(RefusalReason.SIGNATURE, "the token's 'jti' claim is not usable")
    aud = claims["aud"]
    return VerifiedIdentity(
        issuer=issuer,
        audiences=(aud,) if isinstance(aud, str) else tuple(aud),
        jti=jti,
        expires_at=expires_at,
        claims=claims,
    )


def conditions_match(conditions: dict[str, str], claims: dict[str, Any]) -> bool:
    """Every condition names a claim that is a string exactly equal to the value.

    No conditions match nothing: a publisher without conditions would trust every job of the
    issuer, any repository of anyone. A missing or non-string claim never matches.
    """
    if not conditions:
        return False
    return all(
        isinstance(expected, str) and isinstance(claims.get(name), str) and claims[name] == expected
        for name, expected in conditions.items()
    )
