"""The portal's Partners page: an organization's partner companies and their hub users.

Service functions taking the acting member (an Actor): each checks Capability.MANAGE_PARTNERS
(owners and admins), loads only the actor's organization's rows, and changes through
register_partner and dissolve_partner below, which audit in the same commit. Removing a partner user or a whole partner
stops their tokens at once: a token's creator must be live on every request
(`Membership.is_live`, which also refuses a removed partner).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from shared.audit import record as audit
from shared.audit.record import Actor
from shared.core import clock
from shared.core.db import write_transaction
from shared.core.errors import InvalidRequest, NotFound
from shared.core.extensions import db
from shared.identity import accounts, invitations, roles
from shared.identity.roles import Capability, require
from shared.models import Membership, Organization, Partner, User
from shared.orgs.organizations import list_partners, live_token_counts

NOT_ALLOWED = "Your role cannot manage partners"


@dataclass(frozen=True)
class PartnerUser:
    membership: Membership
    live_tokens: int


@dataclass(frozen=True)
class PartnerCard:
    """One partner as the Partners page shows it: its users and how many tokens they hold."""

    partner: Partner
    users: list[PartnerUser]

    @property
    def live_tokens(self) -> int:
        return sum(user.live_tokens for user in self.users)


def partner_roles() -> list[str]:
    return [role.value for role in roles.PARTNER_ROLES]


def list_partner_cards(actor: Actor) -> list[PartnerCard]:
    require(actor, Capability.MANAGE_PARTNERS, NOT_ALLOWED)
    partners = list_partners(actor.organization_id)
    memberships = db.session.scalars(
        select(Membership).join(User, User.id == Membership.user_id)
        .where(Membership.organization_id == actor.organization_id, Membership.partner_id.is_not(None),
               Membership.removed_at.is_(None))
        .options(joinedload(Membership.user))
        .order_by(func.lower(User.display_name), User.email)).all()
    counts = live_token_counts(actor.organization_id)
    return [PartnerCard(partner, [PartnerUser(m, counts.get(m.id, 0)) for m in memberships
                                  if m.partner_id == partner.id])
            for partner in partners]


def get_partner(actor: Actor, partner_id: int) -> Partner:
    """A partner of the actor's organization that has not been removed.

    :raise NotFound: for unknown ids, removed partners and another organization's partners alike.
    """
    require(actor, Capability.MANAGE_PARTNERS, NOT_ALLOWED)
    partner = db.session.get(Partner, partner_id)
    if partner is None or partner.organization_id != actor.organization_id or partner.removed_at is not None:
        raise NotFound("No such partner")
    return partner


def get_partner_user(actor: Actor, partner: Partner, membership_id: int) -> Membership:
    """:raise NotFound: unless a live user of this partner (of the actor's organization)."""
    membership = db.session.get(Membership, membership_id)
    if membership is None or membership.partner_id != partner.id or membership.removed_at is not None:
        raise NotFound("No such partner user")
    return membership


def create_partner(actor: Actor, name: str) -> Partner:
    require(actor, Capability.MANAGE_PARTNERS, NOT_ALLOWED)
    return register_partner(actor.membership.organization, name, actor=actor)


def invite_partner_user(actor: Actor, partner: Partner, email: str, role: str) -> invitations.Issued:
    """Invite someone as partner_admin or partner_member of `partner`: once they accept, they use the hub."""
    require(actor, Capability.MANAGE_PARTNERS, NOT_ALLOWED)
    if not roles.is_partner_role(role):
        raise InvalidRequest("Choose a partner role", fields={"role": "Choose Partner admin or Partner member"})
    return invitations.invite(actor, email, role, partner_id=partner.id)


def remove_partner_user(actor: Actor, membership: Membership) -> None:
    require(actor, Capability.MANAGE_PARTNERS, NOT_ALLOWED)
    accounts.remove_member(membership, actor=actor)


def remove_partner(actor: Actor, partner: Partner) -> list[Membership]:
    require(actor, Capability.MANAGE_PARTNERS, NOT_ALLOWED)
    return dissolve_partner(partner, actor=actor)


def register_partner(org: Organization, name: str, actor: Actor | None = None) -> Partner:
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidRequest("Partner name must be 1–100 characters", fields={"name": "1–100 characters"})
    with write_transaction() as session:  # read the names and add one under the write lock
        existing = session.scalars(select(Partner).where(
            Partner.organization_id == org.id, func.lower(Partner.name) == name.lower(),
            Partner.removed_at.is_(None))).first()
        if existing:
            raise InvalidRequest(f"A partner named {name} exists", fields={"name": "Already exists"})
        partner = Partner(organization_id=org.id, name=name)
        session.add(partner)
        session.flush()
        audit.record(actor, org.id, "partner.created", "partner", str(partner.id), {"name": name})
    return partner


def find_partner(org: Organization, name: str) -> Partner:
    partner = db.session.scalars(select(Partner).where(
        Partner.organization_id == org.id, func.lower(Partner.name) == name.strip().lower(),
        Partner.removed_at.is_(None))).first()
    if partner is None:
        raise NotFound(f"No partner named '{name}' in {org.slug}")
    return partner


def dissolve_partner(partner: Partner, actor: Actor | None = None) -> list[Membership]:
    """Remove a partner company: its users' memberships end, so their tokens and their access to
    this organization stop at once (their sessions stay for any other organization they work in).

    The rows stay (tokens point at them); `Membership.is_live` refuses a removed partner's
    memberships too, so nothing of the partner can come back to life. Its pending invitations
    can no longer be accepted either.
    """
    with write_transaction() as session:
        now = clock.now()
        users = list(session.scalars(
            select(Membership).where(Membership.partner_id == partner.id, Membership.removed_at.is_(None))
            .order_by(Membership.id)).all())
        partner.removed_at = now
        for membership in users:
            membership.removed_at = now
        audit.record(actor, partner.organization_id, "partner.removed", "partner", str(partner.id),
                     {"name": partner.name, "users": [m.user.email for m in users]})
    return users
