"""People: users, their server-side sessions, memberships (a role in one organization) and invitations.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.core.extensions import db
from shared.models.base import UTCDateTime, utc_now

if TYPE_CHECKING:
    from shared.models.organizations import Organization, Partner, VisibilityGroup



class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)  # stored lower-cased
    display_name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)

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
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)

    user: Mapped[User] = relationship()


membership_groups = Table(
    "membership_groups",
    db.metadata,
    Column("membership_id", ForeignKey("memberships.id", ondelete="CASCADE"), primary_key=True),
    Column("group_id", ForeignKey("visibility_groups.id", ondelete="CASCADE"), primary_key=True),
)


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
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
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


class Invitation(db.Model):
    """An invitation to join an organization with a role (as a partner's user when `partner_id`).

    Nobody joins without saying yes and nobody chooses another person's password: the invited
    person opens a single-use link and either sets their own name and password (a new account)
    or accepts while signed in as the account of that email. Only a hash of the link's secret is
    kept. Until accepted the person is no member of anything. Pending: neither accepted nor
    revoked (one at most per organization and email; a new one replaces it); usable until
    `expires_at`.
    """

    __tablename__ = "invitations"
    __table_args__ = (
        Index(
            "uq_invitation_pending",
            "organization_id",
            "email",
            unique=True,
            sqlite_where=text("accepted_at IS NULL AND revoked_at IS NULL"),
            postgresql_where=text("accepted_at IS NULL AND revoked_at IS NULL"),
        ),
        CheckConstraint(
            "role IN ('owner', 'admin', 'security_manager', 'maintainer', 'editor', 'viewer',"
            " 'partner_admin', 'partner_member')",
            name="ck_invitation_role",
        ),
        CheckConstraint(
            "(partner_id IS NULL) = (role NOT IN ('partner_admin', 'partner_member'))",
            name="ck_invitation_partner_role",
        ),
        CheckConstraint("accepted_at IS NULL OR revoked_at IS NULL", name="ck_invitation_outcome"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    email: Mapped[str] = mapped_column(String(254))  # stored lower-cased
    role: Mapped[str] = mapped_column(String(32))
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))  # None: the operator (CLI)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    organization: Mapped[Organization] = relationship()
    partner: Mapped[Partner | None] = relationship()
    invited_by: Mapped[User | None] = relationship()
