"""Reading the audit log: one organization's events, filtered, newest first, a page at a time
(the Audit log page) or all of them (the export, shared/audit_export.py, with the same filters)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import joinedload
from werkzeug.datastructures import MultiDict

from shared.audit.record import Actor
from shared.core import dates
from shared.core.errors import PermissionDenied
from shared.core.extensions import db
from shared.core.validation import parse_id
from shared.identity import roles
from shared.identity.roles import Capability
from shared.models import AuditEvent, Membership, User

PER_PAGE = 50
MAX_PAGE = 100_000


@dataclass
class AuditFilters:
    action: str = ""
    actor_user_id: int | None = None
    since: date | None = None  # inclusive, UTC days
    until: date | None = None  # inclusive
    page: int = 1
    per_page: int = PER_PAGE

    def args(self, **changes) -> dict:
        """The query string of this view (links to pages), without empty values."""
        values = {
            "action": self.action or None,
            "actor": self.actor_user_id,
            "from": self.since.isoformat() if self.since else None,
            "to": self.until.isoformat() if self.until else None,
            "page": self.page if self.page != 1 else None,
        }
        values.update(changes)
        return {key: value for key, value in values.items() if value not in (None, "")}


def filters_from_args(args: MultiDict) -> AuditFilters:
    """The page's query string; anything unusable (not a day, not an id a row can have) is ignored
    rather than refused, and decided here, before any query runs or any export streams."""
    page = parse_id(args.get("page")) or 1
    return AuditFilters(action=args.get("action", "").strip()[:64], actor_user_id=parse_id(args.get("actor")),
                        since=dates.parse_day(args.get("from")), until=dates.parse_day(args.get("to")),
                        page=min(page, MAX_PAGE))


def require_reader(actor: Actor) -> None:
    """:raise PermissionDenied: unless the actor's role may read the audit log."""
    if not roles.can(actor.role, Capability.READ_AUDIT_LOG):
        raise PermissionDenied("Your role cannot read the audit log")


def matching(query, organization_id: int, filters: AuditFilters):
    """`query` (over AuditEvent) narrowed to the organization and the filters; no order, no page."""
    query = query.where(AuditEvent.organization_id == organization_id)
    if filters.action:
        query = query.where(AuditEvent.action == filters.action)
    if filters.actor_user_id is not None:
        query = query.where(AuditEvent.actor_user_id == filters.actor_user_id)
    if filters.since:
        query = query.where(AuditEvent.created_at >= dates.start_of_day(filters.since))
    if filters.until:
        query = query.where(AuditEvent.created_at <= dates.last_moment_of(filters.until))
    return query


def list_events(actor: Actor, filters: AuditFilters) -> tuple[list[AuditEvent], int]:
    """The actor's organization's events matching the filters, newest first, and their total."""
    require_reader(actor)
    query = matching(select(AuditEvent), actor.organization_id, filters)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    items = db.session.scalars(
        query.options(joinedload(AuditEvent.actor_user), joinedload(AuditEvent.actor_token))
        .order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
        .limit(filters.per_page).offset((filters.page - 1) * filters.per_page)).all()
    return list(items), total


def actions_in(actor: Actor) -> list[str]:
    """Every action that occurs in the organization's log (the filter's choices)."""
    require_reader(actor)
    return list(db.session.scalars(
        select(AuditEvent.action).where(AuditEvent.organization_id == actor.organization_id)
        .distinct().order_by(AuditEvent.action)).all())


def actors_in(actor: Actor) -> list[User]:
    """People who are or were members of the organization (the filter's choices)."""
    require_reader(actor)
    # A subquery instead of DISTINCT: PostgreSQL refuses DISTINCT with an ORDER BY expression.
    members = select(Membership.user_id).where(Membership.organization_id == actor.organization_id)
    return list(db.session.scalars(
        select(User).where(User.id.in_(members))
        .order_by(func.lower(User.display_name), User.email)).all())
