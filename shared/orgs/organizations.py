"""An organization's settings: plan and token policy, projects; the Organization page's services.

Changes take effect on tokens at once: a token's rights are computed from its creator's current
role and the organization's current policy on every request.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from shared.audit import record as audit
from shared.audit.record import Actor
from shared.core import clock
from shared.core.db import write_transaction
from shared.core.errors import InvalidRequest, NotFound
from shared.core.extensions import db
from shared.core.validation import FieldErrors
from shared.identity.roles import Capability, require
from shared.models import PLANS, ApiToken, Membership, Organization, Partner, Plan, Project, User
from shared.tokens.payload import clean_labels

MAX_LIFETIME_DAYS = 3650


PLAN_LABELS = {Plan.NONE: "No plan", Plan.FREE: "Free", Plan.BUSINESS: "Business",
               Plan.ENTERPRISE: "Enterprise"}


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


def working_token_count(organization_id: int) -> int:
    """Tokens that authenticate requests now: not revoked, active, not expired, creator still a member.
    Canaries aside: they never grant anything."""
    now = clock.now()
    return db.session.scalar(
        select(func.count()).select_from(ApiToken)
        .join(Membership, Membership.id == ApiToken.created_by_membership_id)
        .join(User, User.id == Membership.user_id)
        .outerjoin(Partner, Partner.id == Membership.partner_id)
        .where(ApiToken.organization_id == organization_id, ApiToken.revoked_at.is_(None),
               ApiToken.is_active.is_(True), ApiToken.is_canary.is_(False),
               (ApiToken.expires_at.is_(None)) | (ApiToken.expires_at > now),
               Membership.removed_at.is_(None), User.is_active.is_(True), Partner.removed_at.is_(None)))


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
    if plan not in PLANS:
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
    with write_transaction():
        return _update_plan_and_policy(actor, actor.membership.organization, data)


def _update_plan_and_policy(actor: Actor, org: Organization, data: PolicyInput) -> Organization:
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
    return org


def _policy_changes(before: PolicyInput, after: PolicyInput) -> dict[str, Any]:
    names = ("max_lifetime_days", "allow_no_expiry", "allowed_scopes", "require_allowlist", "deactivate_unused_days")
    return {name: {"from": getattr(before, name), "to": getattr(after, name)}
            for name in names if getattr(before, name) != getattr(after, name)}


def slugify(name: str) -> str:
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug or "org"


def create_organization(name: str, plan: str = Plan.FREE) -> Organization:
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidRequest("Organization name must be 1–100 characters", fields={"name": "1–100 characters"})
    if plan not in PLANS:
        raise InvalidRequest(f"Plan must be one of {', '.join(PLANS)}", fields={"plan": "Unknown plan"})
    base = slugify(name)
    with write_transaction() as session:  # the free slug is found and taken under the write lock
        slug, n = base, 1
        while session.scalar(select(Organization.id).where(Organization.slug == slug)) is not None:
            n += 1
            slug = f"{base}-{n}"
        org = Organization(name=name, slug=slug, plan=plan)
        session.add(org)
    return org


def get_organization(slug: str) -> Organization:
    org = db.session.scalars(select(Organization).where(Organization.slug == slug)).first()
    if org is None:
        raise NotFound(f"No organization with slug '{slug}'")
    return org


def create_project(org: Organization, name: str) -> Project:
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidRequest("Project name must be 1–100 characters", fields={"name": "1–100 characters"})
    with write_transaction() as session:
        project = Project(organization_id=org.id, name=name)
        session.add(project)
    return project


def find_project(org: Organization, name: str) -> Project:
    project = db.session.scalars(select(Project).where(
        Project.organization_id == org.id, func.lower(Project.name) == name.strip().lower())).first()
    if project is None:
        raise NotFound(f"No project named '{name}' in {org.slug}")
    return project
