"""What happened and who hears of it: audit events, lifecycle events, webhook endpoints and deliveries, notifications.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.core.extensions import db
from shared.models.base import UTCDateTime, utc_now

if TYPE_CHECKING:
    from shared.models.identity import User
    from shared.models.organizations import Organization
    from shared.models.tokens import ApiToken



class DeliveryStatus(StrEnum):
    """A webhook delivery's state: pending until it succeeds or runs out of attempts."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class AuditEvent(db.Model):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_org_time", "organization_id", "created_at"),
        Index("ix_audit_target", "target_type", "target_id"),  # a token's history on its detail page
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor_token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str] = mapped_column(String(64))
    source_ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    actor_user: Mapped[User | None] = relationship()
    actor_token: Mapped[ApiToken | None] = relationship()


class WebhookEndpoint(db.Model):
    """Where an organization wants token events delivered, signed with its own secret.

    The signing secret must be kept to sign; it is shown once and never displayed again.
    """

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    event_types: Mapped[list[str]] = mapped_column(JSON)
    signing_secret: Mapped[str] = mapped_column(String(80))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)  # failed events in a row
    # While a worker sends one of its deliveries: when that lease runs out. A claim skips endpoints
    # with a live lease, so each endpoint has at most one delivery in flight, across every worker.
    delivering_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookDelivery(db.Model):
    """One event for one endpoint: retried with backoff until delivered or given up."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id", name="uq_delivery_endpoint_event"),
        Index("ix_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id"), index=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending / succeeded / failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    endpoint: Mapped[WebhookEndpoint] = relationship()
    event: Mapped[Event] = relationship()


class WebhookAttempt(db.Model):
    """Every delivery attempt, as the delivery log shows it."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(300))
    response_excerpt: Mapped[str | None] = mapped_column(Text)  # the answer's first kilobyte, as text


class Event(db.Model):
    """A token lifecycle event, added in the transaction of the change that caused it.

    The outbox: the worker picks up events not yet dispatched (webhook deliveries), so an event
    survives a queue outage. `data` holds the token object, never a secret.
    """

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_undispatched", "dispatched_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    type: Mapped[str] = mapped_column(String(40))
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"), index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Notification(db.Model):
    """Something a user should know , added in the transaction of its cause.

    Emailed by the worker when KEYWARD_SMTP_URL is set (email_sent_at records it).
    """

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_user_unread", "user_id", "read_at", "id"),
        Index("ix_notifications_unsent", "email_sent_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    kind: Mapped[str] = mapped_column(String(40))
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"))
    message: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    email_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()
    organization: Mapped[Organization] = relationship()
    token: Mapped[ApiToken | None] = relationship()
