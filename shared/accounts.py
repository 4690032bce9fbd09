"""Organizations, users, memberships, partners and projects: the services the CLI and portal share."""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import joinedload

from shared import audit, clock, roles
from shared.audit import Actor
from shared.errors import InvalidRequest, NotFound
from shared.extensions import db
from shared.models import Membership, Organization, Partner, Plan, Project, User, UserSession

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# Verifying against this keeps the time of a login for an unknown email like a real one.
_DUMMY_HASH = _hasher.hash("keyward-dummy-password")
MIN_PASSWORD_LENGTH = 8


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(user: User | None, password: str) -> bool:
    """Verify, and rehash in place when the argon2 parameters have changed since it was stored."""
    if user is None:
        try:
            _hasher.verify(_DUMMY_HASH, password)
        except VerificationError:
            pass
        return False
    try:
        _hasher.verify(user.password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
        db.session.commit()
    return True


def normalize_email(email: str) -> str:
    return email.strip().lower()


def find_user(email: str) -> User | None:
    return db.session.scalars(select(User).where(User.email == normalize_email(email))).first()


def slugify(name: str) -> str:
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug or "org"


def create_organization(name: str, plan: str = Plan.FREE) -> Organization:
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidRequest("Organization name must be 1–100 characters", fields={"name": "1–100 characters"})
    if plan not in Plan.ALL:
        raise InvalidRequest(f"Plan must be one of {', '.join(Plan.ALL)}", fields={"plan": "Unknown plan"})
    base = slugify(name)
    slug, n = base, 1
    while db.session.scalar(select(Organization.id).where(Organization.slug == slug)) is not None:
        n += 1
        slug = f"{base}-{n}"
    org = Organization(name=name, slug=slug, plan=plan)
    db.session.add(org)
    db.session.commit()
    return org


def get_organization(slug: str) -> Organization:
    org = db.session.scalars(select(Organization).where(Organization.slug == slug)).first()
    if org is None:
        raise NotFound(f"No organization with slug '{slug}'")
    return org


def _validate_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidRequest(f"Password must be at least {MIN_PASSWORD_LENGTH} characters",
                             fields={"password": f"At least {MIN_PASSWORD_LENGTH} characters"})


def create_partner(org: Organization, name: str, actor: Actor | None = None) -> Partner:
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidRequest("Partner name must be 1–100 characters", fields={"name": "1–100 characters"})
    existing = db.session.scalars(select(Partner).where(
        Partner.organization_id == org.id, func.lower(Partner.name) == name.lower(),
        Partner.removed_at.is_(None))).first()
    if existing:
        raise InvalidRequest(f"A partner named {name} exists", fields={"name": "Already exists"})
    partner = Partner(organization_id=org.id, name=name)
    db.session.add(partner)
    db.session.flush()
    audit.record(actor, org.id, "partner.created", "partner", str(partner.id), {"name": name})
    db.session.commit()
    return partner


def find_partner(org: Organization, name: str) -> Partner:
    partner = db.session.scalars(select(Partner).where(
        Partner.organization_id == org.id, func.lower(Partner.name) == name.strip().lower(),
        Partner.removed_at.is_(None))).first()
    if partner is None:
        raise NotFound(f"No partner named '{name}' in {org.slug}")
    return partner


def remove_partner(partner: Partner, actor: Actor | None = None) -> list[Membership]:
    """Remove a partner company: its users' memberships end, their tokens stop and their sessions end at once.

    The rows stay (tokens point at them); `Membership.is_live` refuses a removed partner's
    memberships too, so nothing of the partner can come back to life.
    """
    now = clock.now()
    users = list(db.session.scalars(select(Membership).where(
        Membership.partner_id == partner.id, Membership.removed_at.is_(None)).order_by(Membership.id)).all())
    partner.removed_at = now
    for membership in users:
        membership.removed_at = now
        end_sessions(membership.user)
    audit.record(actor, partner.organization_id, "partner.removed", "partner", str(partner.id),
                 {"name": partner.name, "users": [m.user.email for m in users]})
    db.session.commit()
    return users


def create_project(org: Organization, name: str) -> Project:
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidRequest("Project name must be 1–100 characters", fields={"name": "1–100 characters"})
    project = Project(organization_id=org.id, name=name)
    db.session.add(project)
    db.session.commit()
    return project


def find_project(org: Organization, name: str) -> Project:
    project = db.session.scalars(select(Project).where(
        Project.organization_id == org.id, func.lower(Project.name) == name.strip().lower())).first()
    if project is None:
        raise NotFound(f"No project named '{name}' in {org.slug}")
    return project


def live_membership(user: User, org: Organization) -> Membership | None:
    return db.session.scalars(select(Membership).where(
        Membership.user_id == user.id, Membership.organization_id == org.id,
        Membership.removed_at.is_(None))).first()


def add_member(org: Organization, email: str, role: str, *, password: str | None = None,
               display_name: str | None = None, partner: Partner | None = None,
               actor: Actor | None = None) -> Membership:
    """Create the user if new (a password is then required) and give them a role in `org`."""
    email = normalize_email(email)
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email) or len(email) > 254:
        raise InvalidRequest("Enter a valid email address", fields={"email": "Enter a valid email address"})
    if not roles.is_valid_role(role):
        raise InvalidRequest(f"Unknown role '{role}'", fields={"role": "Unknown role"})
    if roles.is_partner_role(role) != (partner is not None):
        message = "Partner roles need a partner" if partner is None else "Partner users need a partner role"
        raise InvalidRequest(message, fields={"role": message})
    user = find_user(email)
    if user is None:
        if password is None:
            raise InvalidRequest("A new user needs a password", fields={"password": "Required for a new user"})
        _validate_password(password)
        user = User(email=email, display_name=(display_name or email.split("@")[0])[:100],
                    password_hash=hash_password(password))
        db.session.add(user)
        db.session.flush()
    elif live_membership(user, org) is not None:
        raise InvalidRequest(f"{email} is already a member of {org.name}", fields={"email": "Already a member"})
    membership = Membership(user_id=user.id, organization_id=org.id, role=role,
                            partner_id=partner.id if partner else None)
    db.session.add(membership)
    db.session.flush()
    audit.record(actor, org.id, "member.added", "membership", str(membership.id),
                 {"email": email, "role": role, "partner": partner.name if partner else None})
    db.session.commit()
    return membership


def get_membership(org: Organization, email: str) -> Membership:
    user = find_user(email)
    membership = live_membership(user, org) if user else None
    if membership is None:
        raise NotFound(f"{email} is not a member of {org.slug}")
    return membership


def set_role(membership: Membership, role: str, actor: Actor | None = None) -> Membership:
    """Takes effect on the member's tokens from their next request (rights are computed live)."""
    if not roles.is_valid_role(role):
        raise InvalidRequest(f"Unknown role '{role}'", fields={"role": "Unknown role"})
    if roles.is_partner_role(role) != (membership.partner_id is not None):
        raise InvalidRequest("Staff and partner roles cannot be swapped", fields={"role": "Not allowed"})
    previous = membership.role
    membership.role = role
    audit.record(actor, membership.organization_id, "member.role_changed", "membership", str(membership.id),
                 {"email": membership.user.email, "from": previous, "to": role})
    db.session.commit()
    return membership


def remove_member(membership: Membership, actor: Actor | None = None) -> None:
    """End the membership: the member's tokens stop at once, their sessions end."""
    membership.removed_at = clock.now()
    end_sessions(membership.user)
    audit.record(actor, membership.organization_id, "member.removed", "membership", str(membership.id),
                 {"email": membership.user.email, "role": membership.role})
    db.session.commit()


def set_password(user: User, password: str) -> None:
    """A new password ends every session of the user."""
    _validate_password(password)
    user.password_hash = hash_password(password)
    end_sessions(user)
    db.session.commit()


# --------------------------------------------------------------------------- browser sessions


def _session_key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def start_session(user: User) -> str:
    """A new server-side session; its key goes into the (signed) cookie."""
    key = secrets.token_urlsafe(32)
    db.session.add(UserSession(key_hash=_session_key_hash(key), user_id=user.id))
    db.session.commit()
    user.session_key = key
    return key


def user_for_session(key: str) -> User | None:
    """The signed-in user for a session key, or None when it ended or the user is inactive."""
    row = db.session.scalars(
        select(UserSession).where(UserSession.key_hash == _session_key_hash(key))
        .options(joinedload(UserSession.user))).first()
    if row is None or not row.user.is_active:
        return None
    row.user.session_key = key
    return row.user


def end_session(key: str | None) -> None:
    if key:
        db.session.execute(delete(UserSession).where(UserSession.key_hash == _session_key_hash(key)))
        db.session.commit()


def end_sessions(user: User) -> None:
    """Sign the user out everywhere (removal, new password, deactivation)."""
    db.session.execute(delete(UserSession).where(UserSession.user_id == user.id))
