"""An organization and what it owns: plan, partners, projects, visibility groups, templates, documents.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.core.extensions import db
from shared.models.base import UTCDateTime, utc_now

if TYPE_CHECKING:
    from shared.models.tokens import ApiToken



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
    # "Deactivate tokens unused for N days" (Insight), applied by the sweep; None: never.
    policy_deactivate_unused_days: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)


class Partner(db.Model):
    __tablename__ = "partners"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    organization: Mapped[Organization] = relationship()


class Project(db.Model):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)


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
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now, onupdate=utc_now)

    created_by_token: Mapped[ApiToken | None] = relationship()
