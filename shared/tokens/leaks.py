"""Leaked-token reports: what a secret scanner calls when it finds a Keyward token.

Every reported value that is a live token's current value, or its previous value during a grace
period, revokes that token at once with reason `exposed`: audited with where it was found, an
event, and a notification to its creator and the org's owners and admins. The caller learns
nothing: the answer is the same whatever matched.
"""

from __future__ import annotations

from sqlalchemy import or_, select

from shared.core import clock
from shared.core.db import write_transaction
from shared.models import ApiToken
from shared.notifications import notices
from shared.tokens import format as token_format
from shared.tokens import lifecycle
from shared.tokens import status as token_status

MAX_VALUES = 100


def report(values: list[str], url: str, reporter_ip: str | None) -> int:
    """Revoke every live token among `values`; returns how many values were received."""
    hashes = {token_format.hash_secret(value) for value in values if token_format.is_well_formed(value)}
    if not hashes:
        return len(values)
    with write_transaction() as session:
        matches = session.scalars(
            select(ApiToken)
            .where(or_(ApiToken.token_hash.in_(hashes), ApiToken.previous_token_hash.in_(hashes)),
                   ApiToken.revoked_at.is_(None))
            .with_for_update()
        ).all()
        now = clock.now()
        for token in matches:
            if token.token_hash not in hashes and token_status.grace_until(token, now) is None:
                continue  # only its old value, whose grace period is over: that value is dead already
            lifecycle.mark_revoked(token, None, lifecycle.REVOKED_EXPOSED, {"url": url}, source_ip=reporter_ip)
            notices.notify_about_token("exposed", token, always_managers=True, detail=url)
    return len(values)
