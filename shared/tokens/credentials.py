"""Reading the presented API key from the request headers; anything malformed is simply no key.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared.core.errors import (
    AuthError,
)

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class Credentials:
    """What a request presented: the raw value (never logged) or the reason it is unusable."""

    value: str | None
    problem: str | None = None


def extract_credentials(authorization: str | None, api_key: str | None) -> Credentials:
    """`Authorization: Bearer <token>` or `X-API-Key: <token>`; both must agree when both are sent."""
    bearer = None
    if authorization is not None:
        scheme, _, rest = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not rest.strip():
            return Credentials(None, "The Authorization header must be 'Bearer <token>'")
        bearer = rest.strip()
    key = api_key.strip() if api_key is not None else None
    if bearer is not None and key is not None and not hmac.compare_digest(bearer.encode(), key.encode()):
        return Credentials(None, "Authorization and X-API-Key carry different tokens")
    value = bearer if bearer is not None else key
    if not value:
        return Credentials(None, "Send a token in 'Authorization: Bearer <token>' or 'X-API-Key'")
    return Credentials(value)


def invalid_api_key(message: str = "The API key is missing, malformed, unknown or revoked") -> AuthError:
    return AuthError(401, "invalid_api_key", message)
