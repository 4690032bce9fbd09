"""The unused-token policy (Insight): "Deactivate tokens unused for N days".

An owner sets N on the Organization page (Organization.policy_deactivate_unused_days; None:
never). The worker's sweep calls `deactivate_unused` every minute. A token is deactivated when it
is live, active and not a canary, has had no request for N days (insight.unused_for, the rule
behind the Dormant badge) and nobody changed it in those N days either: a token someone just
reactivated or edited is theirs to keep for another N days, not the next sweep's.

Each deactivation is one transaction: the token re-read under the write lock (row-locked on
PostgreSQL) and checked again, the change, its `token.deactivated` audit record (reason
"unused", no actor), its event and its notifications. So concurrent or repeated sweeps deactivate
a token exactly once, and an already inactive token is never touched again.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import func, select

from shared.audit import record as audit
from shared.core import clock
from shared.core.dates import day, iso
from shared.core.db import write_transaction
from shared.core.extensions import db
from shared.events import outbox
from shared.models import ApiToken, Organization
from shared.notifications import notices
from shared.tokens import insight, lifecycle, summary

log = logging.getLogger("keyward.dormant")
REASON = "unused"
NOTICE = "deactivated_unused"


def is_due(token: ApiToken, days: int, now: datetime) -> bool:
    """Should the policy "deactivate tokens unused for `days` days" deactivate this token now?"""
    untouched = token.updated_at <= now - timedelta(days=days)
    # A trusted publisher's token lives minutes: "unused for days" is its normal end, not news.
    minted = token.trusted_publisher_id is not None
    return (token.revoked_at is None and token.is_active and not token.is_canary and not minted
            and insight.unused_for(token, days, now) and untouched)


def _policies() -> list[tuple[int, int]]:
    """(organization id, days) for every organization with the policy set."""
    return list(db.session.execute(
        select(Organization.id, Organization.policy_deactivate_unused_days)
        .where(Organization.policy_deactivate_unused_days.is_not(None)).order_by(Organization.id)))


def _candidate_ids(organization_id: int, days: int, now: datetime) -> list[int]:
    """The organization's tokens `is_due` may accept, found by the database (then asked again)."""
    cutoff = now - timedelta(days=days)
    return list(db.session.scalars(
        select(ApiToken.id).where(
            ApiToken.organization_id == organization_id, ApiToken.revoked_at.is_(None),
            ApiToken.is_active.is_(True), ApiToken.is_canary.is_(False),
            ApiToken.trusted_publisher_id.is_(None),
            func.coalesce(ApiToken.last_used_at, ApiToken.created_at) <= cutoff,
            ApiToken.updated_at <= cutoff,
        ).order_by(ApiToken.id)))


def deactivate_unused(now: datetime | None = None) -> int:
    """Apply every organization's unused-token policy; how many tokens were deactivated."""
    now = now or clock.now()
    deactivated = 0
    for organization_id, days in _policies():
        for token_id in _candidate_ids(organization_id, days, now):
            if _deactivate_once(token_id, days, now):
                deactivated += 1
    db.session.commit()  # end the read transaction
    return deactivated


def _deactivate_once(token_id: int, days: int, now: datetime) -> bool:
    with write_transaction() as session:
        token = session.scalars(select(ApiToken).where(ApiToken.id == token_id).with_for_update()
                                .execution_options(populate_existing=True)).one()
        if not is_due(token, days, now):
            return False  # used, changed or deactivated meanwhile (another sweep, a person)
        token.is_active = False
        token.updated_at = now
        lifecycle.drop_previous_value(token)  # deactivating ends the old value's grace, as set_active does
        last = insight.last_activity(token)
        audit.record(None, token.organization_id, "token.deactivated", "token", token.public_id,
                     {"name": token.name, "reason": REASON, "unused_days": days,
                      "last_used_at": iso(token.last_used_at)})
        outbox.emit("token.deactivated", token.organization_id, token.id,
                    {"token": summary.token_summary(token), "reason": REASON})
        since = f"last used {day(last)}" if token.last_used_at else f"never used since {day(last)}"
        notices.notify_about_token(NOTICE, token, detail=f"{since}; the organization deactivates "
                                                               f"tokens unused for {days} days")
    log.info("deactivated token %s: unused for %s days", token.public_id, days)
    return True
