"""API tokens and what is counted about them: usage per day, network and scope, flushed batches, notices sent.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.core.extensions import db
from shared.models.base import UTCDateTime, utc_now

if TYPE_CHECKING:
    from shared.models.identity import Membership, User
    from shared.models.organizations import Organization, Project
    from shared.models.publishers import TrustedPublisher



class TokenType(StrEnum):
    PERSONAL = "personal"
    ORGANIZATION = "organization"
    PROJECT = "project"


TOKEN_TYPES = tuple(kind.value for kind in TokenType)


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
    # For each scope, the permissions the token holds there: {"documents": ["read", "write"]}.
    # The only record of what it may do (shared.tokens.rights); the token object derives its
    # `scopes` and `permissions` from it.
    rights: Mapped[dict[str, list[str]]] = mapped_column(JSON)
    ip_allowlist: Mapped[list[str]] = mapped_column(JSON, default=list)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    display_suffix: Mapped[str] = mapped_column(String(4))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_ip: Mapped[str | None] = mapped_column(String(45))
    usage_count: Mapped[int] = mapped_column(BigInteger, default=0)
    documents_processed: Mapped[int] = mapped_column(BigInteger, default=0)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    revoked_reason: Mapped[str | None] = mapped_column(String(32))
    # Rotation with a grace period: the value before the last regeneration keeps
    # authenticating until previous_expires_at. At most one; both null when there is none.
    previous_token_hash: Mapped[str | None] = mapped_column(String(64))
    previous_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Insight: when a request last came from a network the token had not used before.
    new_network_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Security team tools: a canary grants nothing and raises token.canary_used when presented.
    is_canary: Mapped[bool] = mapped_column(Boolean, default=False)
    canary_trips: Mapped[int] = mapped_column(Integer, default=0)
    # Minted by an OIDC exchange: short-lived, never regenerated or edited, revoked with its publisher.
    trusted_publisher_id: Mapped[int | None] = mapped_column(
        ForeignKey("trusted_publishers.id", name="fk_api_tokens_trusted_publisher_id"), index=True)

    organization: Mapped[Organization] = relationship()
    creator: Mapped[Membership] = relationship()
    project: Mapped[Project | None] = relationship()
    trusted_publisher: Mapped[TrustedPublisher | None] = relationship()

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


class TokenNetwork(db.Model):
    """The networks (/24 IPv4, /64 IPv6) a token was used from: first and last seen, requests."""

    __tablename__ = "token_networks"
    __table_args__ = (UniqueConstraint("token_id", "network", name="uq_token_network"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id"))
    network: Mapped[str] = mapped_column(String(64))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)


class TokenScopeUsage(db.Model):
    """Which scope × method a token was allowed to use, and when last (narrow to observed use)."""

    __tablename__ = "token_scope_usage"
    __table_args__ = (UniqueConstraint("token_id", "scope", "method", name="uq_token_scope_usage"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id"))
    scope: Mapped[str] = mapped_column(String(50))
    method: Mapped[str] = mapped_column(String(10))
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)


class UsageFlush(db.Model):
    """How far the usage tallies of one source reached the database: `last_batch` is the number of
    the last batch applied, written in that batch's own transaction, so a batch whose commit went
    unanswered is recognized when it is tried again (never counted twice). A source is one web
    process (its tallies in memory) or one Redis (the tallies of every process)."""

    __tablename__ = "usage_flushes"

    source: Mapped[str] = mapped_column(String(120), primary_key=True)
    last_batch: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)


class TokenNotice(db.Model):
    """One row per token and notice kind that was sent (expiring_7d, expiring_1d, expired): the
    unique key makes reminders exactly-once however often, and however concurrently, the sweep runs."""

    __tablename__ = "token_notices"
    __table_args__ = (UniqueConstraint("token_id", "kind", name="uq_token_notice"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id"))
    kind: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
