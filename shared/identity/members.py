"""Member administration for the Members page: list, change a role, remove, within the actor's rights.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from shared.audit.record import Actor
from shared.core.errors import NotFound, PermissionDenied
from shared.core.extensions import db
from shared.identity import accounts, roles
from shared.identity.roles import Capability, require
from shared.models import Membership, User
from shared.orgs.organizations import live_token_counts


@dataclass(frozen=True)
class MemberRow:
    membership: Membership
    live_tokens: int
    may_change: bool  # the actor may change this member's role or remove them
    is_self: bool


def list_members(actor: Actor) -> list[MemberRow]:
    require(actor, Capability.MANAGE_MEMBERS, "Your role cannot manage members")
    memberships = db.session.scalars(
        select(Membership).join(User, User.id == Membership.user_id)
        .where(Membership.organization_id == actor.organization_id, Membership.removed_at.is_(None))
        .options(joinedload(Membership.user), joinedload(Membership.partner))
        .order_by(func.lower(User.display_name), User.email)).all()
    counts = live_token_counts(actor.organization_id)
    return [MemberRow(m, counts.get(m.id, 0), _may_manage(actor, m) is None, m.id == actor.membership.id)
            for m in memberships]


def get_member(actor: Actor, membership_id: int) -> Membership:
    """A live membership of the actor's organization.

    :raise NotFound: for unknown ids and another organization's members alike.
    """
    require(actor, Capability.MANAGE_MEMBERS, "Your role cannot manage members")
    membership = db.session.get(Membership, membership_id)
    if membership is None or membership.organization_id != actor.organization_id or membership.removed_at:
        raise NotFound("No such member")
    return membership


def _capabilities(role: str) -> frozenset[Capability]:
    role = roles.as_role(role)
    return roles.CAPABILITIES[role] if role else frozenset()


def _may_manage(actor: Actor, target: Membership, new_role: str | None = None) -> str | None:
    """Why the actor may not change `target` (and give it `new_role`), or None when they may.

    Nobody changes their own membership here (so an org cannot lose its last owner by accident),
    and nobody manages a member, or grants a role, with capabilities beyond their own: an admin
    cannot touch an owner or make anyone one.
    """
    if target.id == actor.membership.id:
        return "You cannot change your own membership; ask another owner or admin"
    mine = _capabilities(actor.role)
    if not _capabilities(target.role) <= mine:
        return "You cannot change a member whose role has more rights than yours"
    if new_role is not None and not _capabilities(new_role) <= mine:
        return "You cannot grant a role with more rights than your own"
    return None


def change_role(actor: Actor, membership: Membership, role: str) -> Membership:
    require(actor, Capability.MANAGE_MEMBERS, "Your role cannot manage members")
    if role == membership.role:
        return membership
    reason = _may_manage(actor, membership, role if roles.is_valid_role(role) else None)
    if reason:
        raise PermissionDenied(reason)
    return accounts.set_role(membership, role, actor=actor)


def remove_member(actor: Actor, membership: Membership) -> None:
    require(actor, Capability.MANAGE_MEMBERS, "Your role cannot manage members")
    reason = _may_manage(actor, membership)
    if reason:
        raise PermissionDenied(reason)
    accounts.remove_member(membership, actor=actor)


def assignable_roles(actor: Actor, membership: Membership | None = None) -> list[str]:
    """Roles the actor may give: staff roles to staff, partner roles to partner users."""
    mine = _capabilities(actor.role)
    if membership is None:
        candidates = roles.ALL_ROLES
    else:
        candidates = roles.PARTNER_ROLES if membership.partner_id is not None else roles.STAFF_ROLES
    return [role.value for role in candidates if _capabilities(role) <= mine]
