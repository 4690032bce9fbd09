"""Trusted publishers (CI identities exchanged for short-lived tokens) and the identity tokens already used.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    JSON,
    CheckConstraint,
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
    from shared.models.identity import Membership
    from shared.models.organizations import Organization, Project



class TrustedPublisher(db.Model):
    """A CI identity (issuer + exact claim conditions) allowed to exchange its OIDC token for a
    short-lived token acting as the member who registered it, with the rights given here."""

    __tablename__ = "trusted_publishers"
    __table_args__ = (
        CheckConstraint("lifetime_minutes BETWEEN 5 AND 60", name="ck_publisher_lifetime"),
        Index("ix_publishers_issuer_live", "issuer", "deleted_at"),  # an exchange's candidates
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    created_by_membership_id: Mapped[int] = mapped_column(ForeignKey("memberships.id"))
    name: Mapped[str] = mapped_column(String(100))
    issuer: Mapped[str] = mapped_column(String(500))
    audience: Mapped[str] = mapped_column(String(200), default="keyward")
    conditions: Mapped[dict[str, str]] = mapped_column(JSON)  # claim -> exact value, never empty
    rights: Mapped[dict[str, list[str]]] = mapped_column(JSON)  # scope -> permissions
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"))
    lifetime_minutes: Mapped[int] = mapped_column(Integer, default=15)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    organization: Mapped[Organization] = relationship()
    creator: Mapped[Membership] = relationship()
    project: Mapped[Project | None] = relationship()


class OidcUsedJti(db.Model):
    """An OIDC token already exchanged: the unique key refuses it a second time, however
    concurrently it is presented. Kept until the token itself has expired (the sweep deletes it)."""

    __tablename__ = "oidc_used_jtis"
    __table_args__ = (UniqueConstraint("issuer", "jti", name="uq_oidc_used_jti"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    issuer: Mapped[str] = mapped_column(String(500))
    jti: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    exchanged_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    publisher_id: Mapped[int] = mapped_column(ForeignKey("trusted_publishers.id"), index=True)
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"))
