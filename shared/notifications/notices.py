"""Notifications: who hears of what about a token, the in-app list, and their emails.

Rows are added in the transaction of their cause (like events); the worker emails the ones not
yet sent when KEYWARD_SMTP_URL is set. A notification never holds a secret: it names the token
and what happened.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from sqlalchemy import func, insert, select, update

from shared.core import clock
from shared.core.db import write_transaction
from shared.core.errors import NotFound
from shared.core.extensions import db
from shared.events import outbox
from shared.identity.roles import Role
from shared.models import ApiToken, Membership, Notification, TokenType
from shared.tokens import format as token_format


class NotificationKind(StrEnum):
    """What a notification is about; its label completes the sentence "Token “name” …"."""

    label: str

    def __new__(cls, value: str, label: str):
        kind = str.__new__(cls, value)
        kind._value_ = value
        kind.label = label
        return kind

    EXPIRING_7D = "expiring_7d", "expires in 7 days"
    EXPIRING_1D = "expiring_1d", "expires tomorrow"
    EXPIRED = "expired", "has expired"
    EXPOSED = "exposed", "was reported as exposed and has been revoked"
    ANOMALY = "anomaly", "was used from a new network"
    WEBHOOK_DISABLED = "webhook_disabled", "webhook endpoint disabled"
    CANARY_USED = "canary_used", "(a canary) was presented"
    TRANSFERRED = "transferred", "was transferred"
    BULK_REVOKED = "bulk_revoked", "was revoked in a bulk revocation"
    DEACTIVATED_UNUSED = "deactivated_unused", "was deactivated because it went unused"


KINDS = frozenset(kind.value for kind in NotificationKind)
MANAGER_ROLES = (Role.OWNER, Role.ADMIN)


def org_user_ids(organization_id: int, roles: Iterable[str], *, connection=None) -> set[int]:
    """Users holding one of these roles in the org now (live memberships)."""
    return set((connection or db.session).scalars(
        select(Membership.user_id).where(Membership.organization_id == organization_id,
                                         Membership.removed_at.is_(None),
                                         Membership.role.in_([str(r) for r in roles]))
    ))


def recipients(organization_id: int, creator_user_id: int, token_type: str, *, always_managers: bool = False,
               connection=None) -> set[int]:
    """The creator; plus the org's owners and admins for organization and project tokens (which
    serve automation) or when the notice is serious enough for them (`always_managers`)."""
    users = {creator_user_id}
    if always_managers or token_type != TokenType.PERSONAL:
        users |= org_user_ids(organization_id, MANAGER_ROLES, connection=connection)
    return users


def token_recipients(token: ApiToken, *, always_managers: bool = False) -> set[int]:
    return recipients(token.organization_id, token.creator.user_id, token.type, always_managers=always_managers)


def token_message(kind: str, token: ApiToken, detail: str = "") -> str:
    message = f"Token “{token.name}” {NotificationKind(kind).label}"
    return f"{message}: {detail}" if detail else message


def redact_secrets(text: str) -> str:
    """A detail copied from outside (a leak report's URL) could carry a token value, and a
    notification, which is also emailed, must never hold a secret: token-shaped values are masked."""
    return token_format.mask_secrets(text)


def notify(user_ids: Iterable[int], organization_id: int, kind: str, message: str,
           token_id: int | None = None, *, connection=None) -> int:
    """Add one notification per user to the current transaction; how many.

    With `connection` (a Core connection in a transaction: the API's hot path) the rows are
    inserted there, and the caller pokes the queue after its commit.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown notification kind {kind}")
    message = redact_secrets(message)[:500]
    rows = [{"user_id": user_id, "organization_id": organization_id, "kind": kind, "token_id": token_id,
             "message": message, "created_at": clock.now()} for user_id in sorted(set(user_ids))]
    if rows and connection is not None:
        connection.execute(insert(Notification), rows)
    elif rows:
        db.session.add_all([Notification(**row) for row in rows])
        outbox.mark_outbox()
    return len(rows)


def notify_about_token(kind: str, token: ApiToken, *, always_managers: bool = False,
                       detail: str = "") -> int:
    return notify(token_recipients(token, always_managers=always_managers), token.organization_id, kind,
                  token_message(kind, token, detail), token.id)


# --------------------------------------------------------------------------- the user's list


def unread_count(user_id: int, organization_id: int) -> int:
    return db.session.scalar(select(func.count(Notification.id)).where(
        Notification.user_id == user_id, Notification.organization_id == organization_id,
        Notification.read_at.is_(None))) or 0


def list_for(user_id: int, organization_id: int, limit: int = 100) -> list[Notification]:
    return list(db.session.scalars(
        select(Notification).where(Notification.user_id == user_id,
                                   Notification.organization_id == organization_id)
        .order_by(Notification.id.desc()).limit(limit)))


def get_for(user_id: int, organization_id: int, notification_id: int) -> Notification:
    """The user's notification in this org, or NotFound (also for anyone else's: never reveal it).

    :raise NotFound:
    """
    notification = db.session.scalar(select(Notification).where(
        Notification.id == notification_id, Notification.user_id == user_id,
        Notification.organization_id == organization_id).execution_options(populate_existing=True))
    if notification is None:
        raise NotFound("Notification not found")
    return notification


def mark_one_read(user_id: int, organization_id: int, notification_id: int) -> Notification:
    """Mark the user's notification as read (if it is not already) and return it.

    :raise NotFound: for an id that is not this user's in this org
    """
    get_for(user_id, organization_id, notification_id)
    mark_read(user_id, organization_id, notification_id)
    return get_for(user_id, organization_id, notification_id)


def mark_read(user_id: int, organization_id: int, notification_id: int | None = None) -> int:
    """Mark one (by id) or all of the user's unread notifications in this org as read; how many."""
    statement = update(Notification).where(
        Notification.user_id == user_id, Notification.organization_id == organization_id,
        Notification.read_at.is_(None))
    if notification_id is not None:
        statement = statement.where(Notification.id == notification_id)
    with write_transaction() as session:
        return session.execute(statement.values(read_at=clock.now())
                               .execution_options(synchronize_session=False)).rowcount


# --------------------------------------------------------------------------- email bookkeeping
# `email_sent_at` means "the email was dealt with": sent, or skipped because email is off.


def unsent_ids(limit: int = 100) -> list[int]:
    return list(db.session.scalars(
        select(Notification.id).where(Notification.email_sent_at.is_(None)).order_by(Notification.id).limit(limit)))


def claim_for_email(notification_id: int) -> Notification | None:
    """Take one unsent notification for sending (committed), or None when another worker has it.

    Claiming before sending means two workers never send the same email; a failed send gives the
    claim back (release_email_claim) so the next run tries again.
    """
    with write_transaction() as session:
        claimed = session.execute(
            update(Notification).where(Notification.id == notification_id, Notification.email_sent_at.is_(None))
            .values(email_sent_at=clock.now()).execution_options(synchronize_session=False)).rowcount
    return db.session.get(Notification, notification_id, populate_existing=True) if claimed else None


def release_email_claim(notification_id: int) -> None:
    with write_transaction() as session:
        session.execute(update(Notification).where(Notification.id == notification_id)
                        .values(email_sent_at=None).execution_options(synchronize_session=False))


def mark_all_emails_handled() -> int:
    """Email is off: every unsent notification counts as dealt with (it stays in the app)."""
    with write_transaction() as session:
        return session.execute(update(Notification).where(Notification.email_sent_at.is_(None))
                               .values(email_sent_at=clock.now())
                               .execution_options(synchronize_session=False)).rowcount
