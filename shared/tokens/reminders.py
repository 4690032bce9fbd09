"""Expiry reminders: "expires in 7 days", "expires tomorrow", "has expired".

The worker's sweep calls `send_expiry_reminders` every minute. Each reminder goes out exactly
once per token and threshold, however often and however concurrently the sweep runs: its
TokenNotice row (unique per token and kind), its notifications and its event are written in one
transaction, and a second writer of the same notice fails on the unique key and sends nothing.

Only the threshold a token is at now is sent: a worker that was down while a token crossed the
7-day mark and expired sends "has expired", not three stale reminders at once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from shared.core import clock
from shared.core.dates import exact
from shared.core.db import write_transaction
from shared.core.extensions import db
from shared.events import outbox
from shared.models import ApiToken, TokenNotice
from shared.notifications import notices
from shared.tokens import summary

log = logging.getLogger("keyward.reminders")

# (notice kind, how long before expiry it is due), nearest first.
THRESHOLDS = (
    ("expired", timedelta(0)),
    ("expiring_1d", timedelta(days=1)),
    ("expiring_7d", timedelta(days=7)),
)
EVENT_TYPES = {"expired": "token.expired", "expiring_1d": "token.expiring", "expiring_7d": "token.expiring"}
# An "expired" notice is sent only this long after expiry: a sweep catching up after a long outage
# (or a first deployment) does not announce tokens that expired long ago.
EXPIRED_NOTICE_WINDOW = timedelta(days=7)


def due_notice(token: ApiToken, now: datetime) -> tuple[str, datetime] | None:
    """The notice a token is due now and the moment it became due, or None."""
    if token.expires_at is None:
        return None
    remaining = token.expires_at - now
    for kind, before in THRESHOLDS:
        if remaining <= before:
            return kind, token.expires_at - before
    return None


def _candidates(now: datetime) -> list[ApiToken]:
    """Live, active tokens within 7 days of expiry or recently expired. Not those a trusted
    publisher minted: they expire minutes after each CI job by design, nobody is to be told."""
    return list(db.session.scalars(
        select(ApiToken).where(
            ApiToken.revoked_at.is_(None), ApiToken.is_active.is_(True), ApiToken.expires_at.is_not(None),
            ApiToken.trusted_publisher_id.is_(None),
            ApiToken.expires_at <= now + THRESHOLDS[-1][1],
            ApiToken.expires_at > now - EXPIRED_NOTICE_WINDOW,
        ).order_by(ApiToken.id)))


def _notices(candidates: list[ApiToken]) -> dict[tuple[int, str], datetime]:
    """When each notice of these tokens was last sent, by (token id, kind): one query."""
    if not candidates:
        return {}
    rows = db.session.execute(select(TokenNotice.token_id, TokenNotice.kind, TokenNotice.created_at)
                              .where(TokenNotice.token_id.in_([t.id for t in candidates])))
    return {(token_id, kind): created_at for token_id, kind, created_at in rows}


def send_expiry_reminders(now: datetime | None = None) -> int:
    """Send every due reminder not sent yet; how many were sent."""
    now = now or clock.now()
    candidates = _candidates(now)
    sent_at = _notices(candidates)
    sent = 0
    for token in candidates:
        due = due_notice(token, now)
        if due is None:
            continue
        kind, due_since = due
        last_sent = sent_at.get((token.id, kind))
        if last_sent is not None and last_sent >= due_since:
            continue  # already sent (checked again, under the write lock, before sending)
        if token.created_at > due_since or not token.creator.is_live:
            # Created inside this window (its creator just chose the date), or it cannot work anyway.
            continue
        try:
            if _send_once(token, kind, due_since, now):
                sent += 1
        except IntegrityError:  # another sweep sent it at the same moment
            db.session.rollback()
    return sent


def _send_once(token: ApiToken, kind: str, due_since: datetime, now: datetime) -> bool:
    """One notice in one transaction: the TokenNotice row, the notifications, the event."""
    with write_transaction() as session:
        notice = session.scalar(select(TokenNotice).where(TokenNotice.token_id == token.id,
                                                          TokenNotice.kind == kind))
        if notice is not None and notice.created_at >= due_since:
            return False  # already sent for this expiry
        if notice is not None:
            # Sent for an earlier expiry date (the expiry was moved since): re-arm it, claiming the
            # row so that only one sweep wins.
            claimed = session.execute(
                update(TokenNotice).where(TokenNotice.id == notice.id, TokenNotice.created_at == notice.created_at)
                .values(created_at=now).execution_options(synchronize_session=False)).rowcount
            if not claimed:
                return False
        else:
            session.add(TokenNotice(token_id=token.id, kind=kind, created_at=now))
            session.flush()  # the unique key decides here, before anyone is told
        detail = "" if kind == "expired" else f"at {exact(token.expires_at)}"
        notices.notify_about_token(kind, token, detail=detail)
        data = {"token": summary.token_summary(token)}
        if kind != "expired":
            data["threshold"] = "1d" if kind == "expiring_1d" else "7d"
        outbox.emit(EVENT_TYPES[kind], token.organization_id, token.id, data)
    log.info("sent %s notice for token %s", kind, token.public_id)
    return True
