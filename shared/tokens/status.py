"""A token's status as people and integrations see it: Active, Inactive, Expired, Revoked, Expires soon.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from shared.core import clock
from shared.models import ApiToken

if TYPE_CHECKING:
    pass


EXPIRING_SOON = timedelta(days=7)


class TokenStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    EXPIRED = "expired"
    REVOKED = "revoked"


def status_of(token: ApiToken, now: datetime | None = None) -> TokenStatus:
    now = now or clock.now()
    if token.revoked_at is not None:
        return TokenStatus.REVOKED
    if token.expires_at is not None and token.expires_at <= now:
        return TokenStatus.EXPIRED
    if not token.is_active:
        return TokenStatus.INACTIVE
    return TokenStatus.ACTIVE


def expires_soon(token: ApiToken, now: datetime | None = None) -> bool:
    now = now or clock.now()
    return (
        status_of(token, now) == TokenStatus.ACTIVE
        and token.expires_at is not None
        and token.expires_at - now <= EXPIRING_SOON
    )


def is_partner_token(token: ApiToken) -> bool:
    return token.creator.partner_id is not None


def grace_until(token: ApiToken, now: datetime | None = None) -> datetime | None:
    """Until when the previous value still works, or None when there is none (or it has ended)."""
    if token.previous_expires_at is None or token.previous_expires_at <= (now or clock.now()):
        return None
    return token.previous_expires_at
