"""SQLAlchemy 2 typed models. Invariants that the database can hold, it holds."""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.core import clock
from shared.core.extensions import db


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in Python on every database (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _now() -> datetime:
    return clock.now()


class Plan(StrEnum):
    NONE = "none"
    FREE = "free"
    BUSINESS = "business"
    ENTERPRISE = "enterprise"


PLANS = tuple(plan.value for plan in Plan)


class Organization(db.Model):
    __tablename__ = "organizations"
    __table_args__ = (CheckConstraint("plan IN ('none', 'free', 'business', 'enterprise')", name="ck_org_plan"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    slug: Mapped[str] = mapped_column(String(120), unique=True)
    plan: Mapped[str] = mapped_column(String(20), default=Plan.FREE)
    credit_balance: Mapped[int] = mapped_column(Integer, default=0)
    # Token policy: None means "no cap" / "every scope".
    policy_max_lifetime_days: Mapped[int | None] = mapped_column(Integer)
    policy_allow_no_expiry: Mapped[bool] = mapped_column(Boolean, default=True)
    policy_allowed_scopes: Mapped[list[str] | None] = mapped_column(JSON)
    policy_require_allowlist: Mapped[bool] = mapped_column(Boolean, default=False)
    # "Deactivate tokens unused for N days" (SPEC 11 Insight), applied by the sweep; None: never.
    policy_deactivate_unused_days: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)  # stored lower-cased
    display_name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)

    memberships: Mapped[list[Membership]] = relationship(back_populates="user")

    # Flask-Login protocol. The "id" Flask-Login keeps in the cookie is the key of a server-side
    # UserSession, so signing out (or removal, or a new password) ends it on the server.
    session_key = None  # set per request by the session loader; not a column

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str | None:
        return self.session_key


class UserSession(db.Model):
    """A signed-in browser. The cookie holds the key; the database holds only its hash."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)

    user: Mapped[User] = relationship()


membership_groups = Table(
    "membership_groups",
    db.metadata,
    Column("membership_id", ForeignKey("memberships.id", ondelete="CASCADE"), primary_key=True),
    Column("group_id", ForeignKey("visibility_groups.id", ondelete="CASCADE"), primary_key=True),
)


class Partner(db.Model):
    __tablename__ = "partners"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    organization: Mapped[Organization] = relationship()


class Membership(db.Model):
    """A user's role in one organization. Removal keeps the row (tokens point at it)."""

    __tablename__ = "memberships"
    __table_args__ = (
        # One live membership per user and org; removed ones stay for history.
        Index(
            "uq_membership_live",
            "user_id",
            "organization_id",
            unique=True,
            sqlite_where=text("removed_at IS NULL"),
            postgresql_where=text("removed_at IS NULL"),
        ),
        CheckConstraint(
            "role IN ('owner', 'admin', 'security_manager', 'maintainer', 'editor', 'viewer',"
            " 'partner_admin', 'partner_member')",
            name="ck_membership_role",
        ),
        CheckConstraint(
            "(partner_id IS NULL) = (role NOT IN ('partner_admin', 'partner_member'))",
            name="ck_membership_partner_role",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"), index=True)
    role: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Taken (row-locked / written) while creating a token, so the free-plan limit holds under races.
    token_lock: Mapped[int] = mapped_column(Integer, default=0)

    user: Mapped[User] = relationship(back_populates="memberships")
    organization: Mapped[Organization] = relationship()
    partner: Mapped[Partner | None] = relationship()
    groups: Mapped[list[VisibilityGroup]] = relationship(secondary=membership_groups)

    @property
    def is_live(self) -> bool:
        return membership_is_live(self.removed_at, self.user.is_active,
                                  self.partner.removed_at if self.partner is not None else None)


def membership_is_live(removed_at: datetime | None, user_is_active: bool, partner_removed_at: datetime | None) -> bool:
    """May this membership act (sign in, its tokens authenticate)? Active user, membership not
    removed, partner (if any) not removed. The one rule, for ORM objects and the API's lookup row."""
    return removed_at is None and user_is_active and partner_removed_at is None


class Project(db.Model):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)


class VisibilityGroup(db.Model):
    __tablename__ = "visibility_groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))


class Template(db.Model):
    __tablename__ = "templates"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text, default="")


class Document(db.Model):
    __tablename__ = "documents"
    __table_args__ = (
        CheckConstraint("status IN ('draft', 'published', 'archived')", name="ck_document_status"),
        Index("ix_documents_org_created", "organization_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"), index=True)
    visibility_group_id: Mapped[int | None] = mapped_column(ForeignKey("visibility_groups.id"))
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default="draft")
    created_by_token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now, onupdate=_now)

    created_by_token: Mapped[ApiToken | None] = relationship()


class TokenType(StrEnum):
    PERSONAL = "personal"
    ORGANIZATION = "organization"
    PROJECT = "project"


TOKEN_TYPES = tuple(kind.value for kind in TokenType)


class DeliveryStatus(StrEnum):
    """A webhook delivery's state: pending until it succeeds or runs out of attempts."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ApiToken(db.Model):
    __tablename__ = "api_tokens"
    __table_args__ = (
        CheckConstraint("type IN ('personal', 'organization', 'project')", name="ck_token_type"),
        CheckConstraint("(type = 'project') = (project_id IS NOT NULL)", name="ck_token_project"),
        CheckConstraint("usage_count >= 0 AND documents_processed >= 0", name="ck_token_counts"),
        Index("ix_tokens_org_created", "organization_id", "created_at"),
        Index("ix_tokens_creator", "created_by_membership_id", "revoked_at"),
        Index("uq_tokens_previous_hash", "previous_token_hash", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    created_by_membership_id: Mapped[int] = mapped_column(ForeignKey("memberships.id"))
    type: Mapped[str] = mapped_column(String(20))
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"))
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(500), default="")
    permissions: Mapped[list[str]] = mapped_column(JSON)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    ip_allowlist: Mapped[list[str]] = mapped_column(JSON, default=list)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    display_suffix: Mapped[str] = mapped_column(String(4))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_ip: Mapped[str | None] = mapped_column(String(45))
    usage_count: Mapped[int] = mapped_column(BigInteger, default=0)
    documents_processed: Mapped[int] = mapped_column(BigInteger, default=0)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    revoked_reason: Mapped[str | None] = mapped_column(String(32))
    # Rotation with a grace period (SPEC 11): the value before the last regeneration keeps
    # authenticating until previous_expires_at. At most one; both null when there is none.
    previous_token_hash: Mapped[str | None] = mapped_column(String(64))
    previous_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Insight: when a request last came from a network the token had not used before.
    new_network_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Security team tools: a canary grants nothing and raises token.canary_used when presented.
    is_canary: Mapped[bool] = mapped_column(Boolean, default=False)
    canary_trips: Mapped[int] = mapped_column(Integer, default=0)

    organization: Mapped[Organization] = relationship()
    creator: Mapped[Membership] = relationship()
    project: Mapped[Project | None] = relationship()

    # The names the API's authenticated-token row uses too (shared.token_auth.AuthenticatedToken),
    # so rights and summaries are computed by one function for both.
    @property
    def creator_role(self) -> str:
        return self.creator.role

    @property
    def creator_user(self) -> User:
        return self.creator.user

    @property
    def plan(self) -> str:
        return self.organization.plan


class TokenDailyUsage(db.Model):
    """Accepted requests per token per UTC day, counted as they arrive (one upsert per request)."""

    __tablename__ = "token_daily_usage"
    __table_args__ = (UniqueConstraint("token_id", "day", name="uq_token_daily_usage"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id"))
    day: Mapped[date] = mapped_column(Date)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)


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
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    actor_user: Mapped[User | None] = relationship()
    actor_token: Mapped[ApiToken | None] = relationship()


class TokenNetwork(db.Model):
    """The networks (/24 IPv4, /64 IPv6) a token was used from: first and last seen, requests."""

    __tablename__ = "token_networks"
    __table_args__ = (UniqueConstraint("token_id", "network", name="uq_token_network"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id"))
    network: Mapped[str] = mapped_column(String(64))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)


class TokenScopeUsage(db.Model):
    """Which scope × method a token was allowed to use, and when last (narrow to observed use)."""

    __tablename__ = "token_scope_usage"
    __table_args__ = (UniqueConstraint("token_id", "scope", "method", name="uq_token_scope_usage"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id"))
    scope: Mapped[str] = mapped_column(String(50))
    method: Mapped[str] = mapped_column(String(10))
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)


class WebhookEndpoint(db.Model):
    """Where an organization wants token events delivered, signed with its own secret (SPEC 11).

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
    created_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)
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
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    endpoint: Mapped[WebhookEndpoint] = relationship()
    event: Mapped[Event] = relationship()


class WebhookAttempt(db.Model):
    """Every delivery attempt, as the delivery log shows it."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(300))
    response_excerpt: Mapped[str | None] = mapped_column(Text)  # the answer's first kilobyte, as text


class Event(db.Model):
    """A token lifecycle event (SPEC 11), added in the transaction of the change that caused it.

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
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Notification(db.Model):
    """Something a user should know (SPEC 11 kinds), added in the transaction of its cause.

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
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    email_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()
    organization: Mapped[Organization] = relationship()
    token: Mapped[ApiToken | None] = relationship()


class TokenNotice(db.Model):
    """One row per token and notice kind that was sent (expiring_7d, expiring_1d, expired): the
    unique key makes reminders exactly-once however often, and however concurrently, the sweep runs."""

    __tablename__ = "token_notices"
    __table_args__ = (UniqueConstraint("token_id", "kind", name="uq_token_notice"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id"))
    kind: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)


__all__ = [
    "ApiToken",
    "AuditEvent",
    "Document",
    "Event",
    "Membership",
    "Notification",
    "Organization",
    "Partner",
    "Plan",
    "Project",
    "Template",
    "TokenDailyUsage",
    "TokenNetwork",
    "TokenScopeUsage",
    "TokenNotice",
    "TokenType",
    "User",
    "UserSession",
    "UTCDateTime",
    "VisibilityGroup",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "func",
]
