"""An organization's settings: plan, token policy, projects, partners and member administration.

Service functions for the portal's Members and Organization pages. Each takes the acting
member (an Actor), checks the capability in shared.roles, changes, and audits in the same
commit. Changes take effect on tokens at once because a token's rights are computed from its
creator's current role and the org's current policy on every request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from shared import accounts, audit, roles
from shared.audit import Actor
from shared.errors import InvalidRequest, NotFound, PermissionDenied
from shared.extensions import db
from shared.models import ApiToken, Membership, Organization, Partner, Plan, Project, User
from shared.roles import Capability
from shared.tokens import FieldErrors, clean_labels

MAX_LIFETIME_DAYS = 3650
PLAN_LABELS = {Plan.NONE: "No plan", Plan.FREE: "Free", Plan.BUSINESS: "Business",
               Plan.ENTERPRISE: "Enterprise"}


def require(actor: Actor, capability: Capability, message: str) -> None:
    if not roles.can(actor.role, capability):
        raise PermissionDenied(message)


# --------------------------------------------------------------------------- tenant lists


def list_projects(organization_id: int) -> list[Project]:
    return list(db.session.scalars(
        select(Project).where(Project.organization_id == organization_id).order_by(Project.name)).all())


def list_partners(organization_id: int) -> list[Partner]:
    return list(db.session.scalars(
        select(Partner).where(Partner.organization_id == organization_id, Partner.removed_at.is_(None))
        .order_by(Partner.name)).all())


def live_token_counts(organization_id: int) -> dict[int, int]:
    """Tokens not revoked, per creating membership id, in one query."""
    return dict(db.session.execute(
        select(ApiToken.created_by_membership_id, func.count())
        .where(ApiToken.organization_id == organization_id, ApiToken.revoked_at.is_(None))
        .group_by(ApiToken.created_by_membership_id)).all())


# --------------------------------------------------------------------------- plan and policy


@dataclass
class PolicyInput:
    plan: str
    max_lifetime_days: int | None
    allow_no_expiry: bool
    allowed_scopes: list[str] | None  # None: every scope
    require_allowlist: bool
    deactivate_unused_days: int | None = None  # None: unused tokens stay active


def parse_policy_form(form) -> PolicyInput:
    """The Organization page's form; InvalidRequest with fields for anything unusable."""
    errors = FieldErrors()
    plan = form.get("plan", "")
    if plan not in Plan.ALL:
        errors.add("plan", "Choose a plan")
    lifetime = _days(form, "max_lifetime_days", errors, "or leave it empty for no limit")
    unused_days = _days(form, "deactivate_unused_days", errors, "or leave it empty to keep unused tokens active")
    scopes = None
    if form.get("restrict_scopes"):
        scopes = clean_labels(form.getlist("allowed_scopes"), "allowed_scopes", errors)
        if "allowed_scopes" in errors.errors:
            errors.errors["allowed_scopes"] = "Choose at least one scope tokens may use"
    errors.raise_if_any()
    return PolicyInput(plan=plan, max_lifetime_days=lifetime, allow_no_expiry=bool(form.get("allow_no_expiry")),
                       allowed_scopes=scopes, require_allowlist=bool(form.get("require_allowlist")),
                       deactivate_unused_days=unused_days)


def _days(form, name: str, errors: FieldErrors, empty_means: str) -> int | None:
    """An optional whole number of days from 1 to MAX_LIFETIME_DAYS; None when left empty."""
    text = form.get(name, "").strip()
    if not text:
        return None
    try:
        days = int(text)
    except ValueError:
        days = 0
    if not 1 <= days <= MAX_LIFETIME_DAYS:
        errors.add(name, f"Enter a whole number of days from 1 to {MAX_LIFETIME_DAYS}, {empty_means}")
    return days


def policy_of(org: Organization) -> PolicyInput:
    return PolicyInput(plan=org.plan, max_lifetime_days=org.policy_max_lifetime_days,
                       allow_no_expiry=org.policy_allow_no_expiry,
                       allowed_scopes=list(org.policy_allowed_scopes) if org.policy_allowed_scopes is not None
                       else None,
                       require_allowlist=org.policy_require_allowlist,
                       deactivate_unused_days=org.policy_deactivate_unused_days)


def update_plan_and_policy(actor: Actor, data: PolicyInput) -> Organization:
    """Change the actor's organization's plan and token policy; one audit event per kind of change.

    The policy applies to tokens created or edited from now on; existing tokens keep working.
    """
    require(actor, Capability.MANAGE_PLAN_AND_POLICY, "Only an owner can change the plan and token policy")
    org = actor.membership.organization
    before = policy_of(org)
    if data.plan != before.plan:
        org.plan = data.plan
        audit.record(actor, org.id, "organization.plan_changed", "organization", str(org.id),
                     {"from": before.plan, "to": data.plan})
    changes = _policy_changes(before, data)
    if changes:
        org.policy_max_lifetime_days = data.max_lifetime_days
        org.policy_allow_no_expiry = data.allow_no_expiry
        org.policy_allowed_scopes = data.allowed_scopes
        org.policy_require_allowlist = data.require_allowlist
        org.policy_deactivate_unused_days = data.deactivate_unused_days
        audit.record(actor, org.id, "organization.policy_changed", "organization", str(org.id),
                     {"changes": changes})
    db.session.commit()
    return org


def _policy_changes(before: PolicyInput, after: PolicyInput) -> dict[str, Any]:
    names = ("max_lifetime_days", "allow_no_expiry", "allowed_scopes", "require_allowlist", "deactivate_unused_days")
    return {name: {"from": getattr(before, name), "to": getattr(after, name)}
            for name in names if getattr(before, name) != getattr(after, name)}


# --------------------------------------------------------------------------- members


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


def add_member(actor: Actor, email: str, role: str, *, display_name: str | None, password: str | None,
               partner_id: int | None) -> Membership:
    require(actor, Capability.MANAGE_MEMBERS, "Your role cannot manage members")
    if roles.is_valid_role(role) and not _capabilities(role) <= _capabilities(actor.role):
        raise InvalidRequest("You cannot grant a role with more rights than your own",
                             fields={"role": "You cannot grant a role with more rights than your own"})
    partner = None
    if partner_id is not None:
        partner = db.session.get(Partner, partner_id)
        if partner is None or partner.organization_id != actor.organization_id or partner.removed_at:
            raise InvalidRequest("No such partner", fields={"partner_id": "No such partner"})
    return accounts.add_member(actor.membership.organization, email, role, password=password or None,
                               display_name=display_name or None, partner=partner, actor=actor)


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
