"""Invitations: how a person joins an organization (staff, or a partner's user).

Users are global (one account per email, many organizations), so an administrator never creates
an account with a password of their choosing and never adds an existing account without its
consent: both would let one organization's administrator prepare an account that another
organization later trusts. Instead:

- `invite` (owners and admins; `invite_as_operator` for the command line) records a pending
  invitation with a random secret, of which only a SHA-256 hash is kept, valid for 7 days. The
  link `/invite/<secret>` is emailed when email is configured and shown once to the inviter.
  Whether the email already has an account changes nothing in the answer.
- `accept_as_new_user` (no account for that email yet): the person chooses their name and
  password. `accept_as_user`: the person signed in as the account of that very email.
  Either consumes the invitation (single use) and creates the membership in one transaction.
- `resend` issues a new secret (the old link stops working) and a new 7-day window; `revoke`
  ends it. Inviting an email that has a pending invitation replaces it.

Until accepted the person is no member: nothing (a token, a transfer, a role) can be made for
them in that organization. Audit: `member.invited` (also for a resend), `invitation.accepted`,
`invitation.revoked`; never the secret or its hash.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app, has_request_context, request
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from shared.audit import record as audit
from shared.audit.record import Actor
from shared.core import clock
from shared.core.db import write_transaction
from shared.core.errors import InvalidRequest, NotFound, PermissionDenied
from shared.core.extensions import db
from shared.core.validation import FieldErrors, has_control_characters
from shared.identity import accounts, roles
from shared.identity.roles import Capability
from shared.models import Invitation, Membership, Organization, Partner, User
from shared.notifications import mailer

VALID_FOR = timedelta(days=7)
SECRET_BYTES = 32  # 64 hex characters: 256 bits, and token-shaped, so log masking hides it too
LOCAL_BASE_URL = "http://127.0.0.1:5000"  # `make run`, when neither KEYWARD_BASE_URL nor a request says


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def link_for(secret: str) -> str:
    """The absolute link: KEYWARD_BASE_URL when set (so a link never depends on a request's Host
    header), else the address this request came to, else the local default."""
    base = current_app.config.get("KEYWARD_BASE_URL")
    if not base:
        base = request.host_url.rstrip("/") if has_request_context() else LOCAL_BASE_URL
    return f"{base}/invite/{secret}"


def is_pending(invitation: Invitation, now: datetime | None = None) -> bool:
    """Can it still be accepted? Not accepted, not revoked, not expired, its partner not removed."""
    now = now or clock.now()
    return (invitation.accepted_at is None and invitation.revoked_at is None and invitation.expires_at > now
            and (invitation.partner is None or invitation.partner.removed_at is None))


def is_expired(invitation: Invitation) -> bool:
    return invitation.expires_at <= clock.now()


def role_label(role: str) -> str:
    return role.replace("_", " ")


@dataclass(frozen=True)
class Issued:
    """A new (or resent) invitation and its link: the only moment the link exists in clear."""

    invitation: Invitation
    link: str
    emailed: bool  # sent just now
    email_failed: bool  # email is configured but the server did not take it


# --------------------------------------------------------------------------- inviting


def _capabilities(role: str) -> frozenset[Capability]:
    known = roles.as_role(role)
    return roles.CAPABILITIES[known] if known else frozenset()


def may_handle(actor: Actor, invitation: Invitation) -> bool:
    """Owners and admins handle (resend, revoke) invitations for roles within their own rights."""
    capability = Capability.MANAGE_PARTNERS if invitation.partner_id else Capability.MANAGE_MEMBERS
    return roles.can(actor.role, capability) and _capabilities(invitation.role) <= _capabilities(actor.role)


def _partner_of(actor: Actor, partner_id: int | None) -> Partner | None:
    if partner_id is None:
        return None
    partner = db.session.get(Partner, partner_id)
    if partner is None or partner.organization_id != actor.organization_id or partner.removed_at is not None:
        raise InvalidRequest("No such partner", fields={"partner_id": "No such partner"})
    return partner


def invite(actor: Actor, email: str, role: str, *, partner_id: int | None = None) -> Issued:
    """Invite `email` into the actor's organization with `role` (a partner role with `partner_id`).

    :raise PermissionDenied: for a role that cannot manage members (or partners).
    :raise InvalidRequest: with `fields` for an unusable email, role or partner, a role beyond the
        actor's own, or an email that is already a member of this organization.
    """
    roles.require(actor, Capability.MANAGE_MEMBERS if partner_id is None else Capability.MANAGE_PARTNERS,
                  "Your role cannot invite people")
    if roles.is_valid_role(role) and not _capabilities(role) <= _capabilities(actor.role):
        message = "You cannot grant a role with more rights than your own"
        raise InvalidRequest(message, fields={"role": message})
    partner = _partner_of(actor, partner_id)
    return _issue(actor.membership.organization, email, role, partner, actor)


def invite_as_operator(org: Organization, email: str, role: str, partner: Partner | None = None) -> Issued:
    """`flask users invite`: the operator on the server invites with any role."""
    return _issue(org, email, role, partner, None)


def _issue(org: Organization, email: str, role: str, partner: Partner | None, actor: Actor | None) -> Issued:
    email = accounts.check_email(email)
    accounts.check_role_and_partner(role, partner)
    secret = secrets.token_hex(SECRET_BYTES)
    with write_transaction() as session:
        user = accounts.find_user(email)
        if user is not None and accounts.live_membership(user, org) is not None:
            # Visible on the Members page anyway: this says nothing about other organizations.
            raise InvalidRequest(f"{email} is already a member of {org.name}",
                                 fields={"email": "Already a member of this organization"})
        now = clock.now()
        replaced = list(session.scalars(select(Invitation).where(
            Invitation.organization_id == org.id, Invitation.email == email,
            Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None))))
        for old in replaced:
            old.revoked_at = now
        session.flush()  # the pending slot (one per organization and email) is free again
        invitation = Invitation(organization_id=org.id, email=email, role=role,
                                partner_id=partner.id if partner else None, token_hash=_hash(secret),
                                invited_by_user_id=actor.user_id if actor else None,
                                created_at=now, expires_at=now + VALID_FOR)
        session.add(invitation)
        session.flush()
        audit.record(actor, org.id, "member.invited", "invitation", str(invitation.id),
                     {"email": email, "role": role, "partner": partner.name if partner else None,
                      "expires_at": invitation.expires_at.isoformat(), "replaced": len(replaced) or None})
    return _deliver(invitation, secret)


def _deliver(invitation: Invitation, secret: str) -> Issued:
    """Email the link (when email is on), outside any transaction; the caller shows it either way."""
    link = link_for(secret)
    inviter = invitation.invited_by
    emailed = mailer.send_now(
        invitation.email, f"you are invited to {invitation.organization.name}", "invitation",
        invitation=invitation, link=link, organization=invitation.organization, partner=invitation.partner,
        role_label=role_label(invitation.role),
        inviter=(inviter.display_name or inviter.email) if inviter else "An operator")
    return Issued(invitation, link, emailed, email_failed=not emailed and mailer.email_enabled())


# --------------------------------------------------------------------------- pending ones


def pending_invitations(actor: Actor) -> list[Invitation]:
    """The organization's open invitations (expired ones too, until resent or revoked), newest first."""
    query = (select(Invitation).where(Invitation.organization_id == actor.organization_id,
                                      Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None))
             .options(joinedload(Invitation.partner), joinedload(Invitation.invited_by))
             .order_by(Invitation.created_at.desc(), Invitation.id.desc()))
    return [invitation for invitation in db.session.scalars(query)
            if invitation.partner is None or invitation.partner.removed_at is None]


def get_invitation_for(actor: Actor, invitation_id: int, partner_id: int | None = None) -> Invitation:
    """An open invitation of the actor's organization (of that partner, when given).

    :raise NotFound: for unknown ids, another organization's, accepted or revoked ones alike.
    :raise PermissionDenied: for one the actor may not handle (a role beyond their own).
    """
    invitation = db.session.get(Invitation, invitation_id)
    if (invitation is None or invitation.organization_id != actor.organization_id
            or invitation.accepted_at is not None or invitation.revoked_at is not None
            or (partner_id is not None and invitation.partner_id != partner_id)):
        raise NotFound("No such invitation")
    if not may_handle(actor, invitation):
        raise PermissionDenied("You cannot change an invitation for a role with more rights than yours")
    return invitation


def resend(actor: Actor, invitation: Invitation) -> Issued:
    """A new link (the old one stops working) valid for another 7 days, emailed and shown again."""
    if not may_handle(actor, invitation):
        raise PermissionDenied("You cannot change an invitation for a role with more rights than yours")
    secret = secrets.token_hex(SECRET_BYTES)
    with write_transaction() as session:
        invitation = _locked(session, Invitation.id == invitation.id)
        if invitation is None or invitation.accepted_at or invitation.revoked_at:
            raise NotFound("No such invitation")
        now = clock.now()
        invitation.token_hash, invitation.expires_at = _hash(secret), now + VALID_FOR
        invitation.invited_by_user_id = actor.user_id
        audit.record(actor, invitation.organization_id, "member.invited", "invitation", str(invitation.id),
                     {"email": invitation.email, "role": invitation.role,
                      "partner": invitation.partner.name if invitation.partner else None,
                      "expires_at": invitation.expires_at.isoformat(), "resent": True})
    return _deliver(invitation, secret)


def revoke(actor: Actor, invitation: Invitation) -> Invitation:
    if not may_handle(actor, invitation):
        raise PermissionDenied("You cannot change an invitation for a role with more rights than yours")
    with write_transaction() as session:
        invitation = _locked(session, Invitation.id == invitation.id)
        if invitation is None or invitation.accepted_at or invitation.revoked_at:
            raise NotFound("No such invitation")
        invitation.revoked_at = clock.now()
        audit.record(actor, invitation.organization_id, "invitation.revoked", "invitation",
                     str(invitation.id), {"email": invitation.email, "role": invitation.role})
    return invitation


def _locked(session, condition) -> Invitation | None:
    """Re-read under the write lock (row-locked on PostgreSQL): two acceptances, or an acceptance
    and a revocation, never both win."""
    return session.scalars(select(Invitation).where(condition).with_for_update()
                           .execution_options(populate_existing=True)).first()


# --------------------------------------------------------------------------- accepting


def find_pending(secret: str) -> Invitation | None:
    """The invitation this link names while it can be accepted, else None (unknown, used,
    revoked, replaced, expired: the page says the same for all)."""
    if not isinstance(secret, str) or len(secret) != 2 * SECRET_BYTES:
        return None
    invitation = db.session.scalars(
        select(Invitation).where(Invitation.token_hash == _hash(secret))
        .options(joinedload(Invitation.organization), joinedload(Invitation.partner))).first()
    return invitation if invitation is not None and is_pending(invitation) else None


def _pending_for_update(session, secret: str) -> Invitation:
    invitation = _locked(session, Invitation.token_hash == _hash(secret))
    if invitation is None or not is_pending(invitation):
        raise NotFound("This invitation can no longer be accepted")
    return invitation


def _join(session, invitation: Invitation, user: User, *, ip: str | None, user_agent: str | None,
          new_account: bool) -> Membership:
    """Inside the caller's write transaction: the membership, the invitation used, the audit record."""
    org = invitation.organization
    if accounts.live_membership(user, org) is not None:
        raise InvalidRequest(f"You are already a member of {org.name}",
                             fields={"invitation": f"You are already a member of {org.name}"})
    membership = Membership(user_id=user.id, organization_id=org.id, role=invitation.role,
                            partner_id=invitation.partner_id)
    session.add(membership)
    invitation.accepted_at = clock.now()
    session.flush()
    audit.record(Actor(membership=membership, ip=ip, user_agent=user_agent), org.id, "invitation.accepted",
                 "membership", str(membership.id),
                 {"email": user.email, "role": invitation.role, "invitation": invitation.id,
                  "partner": invitation.partner.name if invitation.partner else None,
                  "new_account": new_account})
    return membership


def check_new_account(name: str, password: str) -> str:
    """The name as kept; InvalidRequest with `fields` (name, password) for anything unusable."""
    errors = FieldErrors()
    name = (name or "").strip()
    if not name or len(name) > 100:
        errors.add("name", "Enter your name (1–100 characters)")
    elif has_control_characters(name):
        errors.add("name", "Your name cannot contain control characters")
    if len(password or "") < accounts.MIN_PASSWORD_LENGTH:
        errors.add("password", f"At least {accounts.MIN_PASSWORD_LENGTH} characters")
    elif len(password) > 1024:
        errors.add("password", "At most 1024 characters")
    errors.raise_if_any()
    return name


def accept_as_new_user(secret: str, name: str, password: str, *, ip: str | None = None,
                       user_agent: str | None = None) -> Membership:
    """A person without an account accepts: their account (their name, their password) and the
    membership are created together, and the link is used up.

    :raise NotFound: the link cannot be accepted (any more).
    :raise InvalidRequest: with fields `name`/`password`, or when the email has an account by now
        (then its owner must sign in to accept).
    """
    name = check_new_account(name, password)
    invitation = find_pending(secret)
    if invitation is None:
        raise NotFound("This invitation can no longer be accepted")
    if accounts.find_user(invitation.email) is not None:
        raise _sign_in_first(invitation)
    db.session.commit()  # end the read: the password is hashed outside any transaction
    password_hash = accounts.hash_password(password)
    with write_transaction() as session:
        invitation = _pending_for_update(session, secret)
        if accounts.find_user(invitation.email) is not None:  # created meanwhile
            raise _sign_in_first(invitation)
        user = User(email=invitation.email, display_name=name, password_hash=password_hash)
        session.add(user)
        session.flush()
        return _join(session, invitation, user, ip=ip, user_agent=user_agent, new_account=True)


def _sign_in_first(invitation: Invitation) -> InvalidRequest:
    message = f"{invitation.email} has a Keyward account: sign in as it to accept"
    return InvalidRequest(message, fields={"invitation": message})


def accept_as_user(secret: str, user: User, *, ip: str | None = None,
                   user_agent: str | None = None) -> Membership:
    """The signed-in account of the invited email accepts: the membership is created, the link used up.

    :raise NotFound: the link cannot be accepted (any more).
    :raise PermissionDenied: `user` is not the invited email's account.
    """
    with write_transaction() as session:
        invitation = _pending_for_update(session, secret)
        user = session.get(User, user.id)
        if user is None or not user.is_active or user.email != invitation.email:
            raise PermissionDenied("This invitation is for another account")
        return _join(session, invitation, user, ip=ip, user_agent=user_agent, new_account=False)
