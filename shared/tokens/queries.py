"""Listing tokens for a page or the API (filters, newest first) and the token object both return.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from shared.audit.record import Actor
from shared.core import clock
from shared.core.db import contains_pattern
from shared.core.errors import (
    PermissionDenied,
)
from shared.core.extensions import db
from shared.identity import roles
from shared.identity.roles import Capability
from shared.models import ApiToken, Membership
from shared.tokens.access import visible_tokens_query
from shared.tokens.status import EXPIRING_SOON

if TYPE_CHECKING:
    pass


LIST_STATUSES = ("active", "inactive", "expired", "expiring", "revoked")


@dataclass
class TokenFilters:
    tab: str = "active"  # active (not revoked) / deleted (revoked)
    name: str = ""
    type: str = ""
    status: str = ""
    project_id: int | None = None
    page: int = 1
    per_page: int = 25


def filtered_tokens_query(actor: Actor, filters: TokenFilters):
    """The list both UIs and the API show: visibility, tab, filters, newest first."""
    now = clock.now()
    query = visible_tokens_query(actor)
    if filters.tab == "deleted":
        query = query.where(ApiToken.revoked_at.is_not(None))
    else:
        query = query.where(ApiToken.revoked_at.is_(None))
    if filters.name:
        query = query.where(func.lower(ApiToken.name).like(contains_pattern(filters.name), escape="\\"))
    if filters.type:
        query = query.where(ApiToken.type == filters.type)
    if filters.project_id is not None:
        query = query.where(ApiToken.project_id == filters.project_id)
    not_expired = (ApiToken.expires_at.is_(None)) | (ApiToken.expires_at > now)
    if filters.status == "active":
        query = query.where(ApiToken.is_active.is_(True), not_expired, ApiToken.revoked_at.is_(None))
    elif filters.status == "inactive":
        query = query.where(ApiToken.is_active.is_(False), not_expired, ApiToken.revoked_at.is_(None))
    elif filters.status == "expired":
        query = query.where(ApiToken.expires_at <= now, ApiToken.revoked_at.is_(None))
    elif filters.status == "expiring":
        query = query.where(ApiToken.is_active.is_(True), ApiToken.expires_at > now,
                            ApiToken.expires_at <= now + EXPIRING_SOON, ApiToken.revoked_at.is_(None))
    elif filters.status == "revoked":
        query = query.where(ApiToken.revoked_at.is_not(None))
    return query.order_by(ApiToken.created_at.desc(), ApiToken.id.desc())


def list_tokens(actor: Actor, filters: TokenFilters) -> tuple[list[ApiToken], int]:
    if not roles.can(actor.role, Capability.MANAGE_OWN_TOKENS):
        raise PermissionDenied("Your role cannot manage API tokens")
    query = filtered_tokens_query(actor, filters)
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    items = db.session.scalars(
        query.options(joinedload(ApiToken.creator).joinedload(Membership.user),
                      joinedload(ApiToken.creator).joinedload(Membership.partner),
                      joinedload(ApiToken.project))
        .limit(filters.per_page).offset((filters.page - 1) * filters.per_page)
    ).unique().all()
    return list(items), total




