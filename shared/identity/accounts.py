"""People: accounts (passwords with argon2id), users found by email, and their memberships.
"""

from __future__ import annotations

import contextlib
import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select

from shared.audit import record as audit
from shared.audit.record import Actor
from shared.core import clock
from shared.core.errors import InvalidRequest, NotFound
from shared.core.extensions import db
from shared.identity import roles
from shared.identity.sessions import end_sessions
from shared.models import Membership, Organization, Partner, User

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters


# Verifying against this keeps the time of a login for an unknown email like a real one.
_DUMMY_HASH = _hasher.hash("keyward-dummy-password")


MIN_PASSWORD_LENGTH = 8


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(user: User | None, password: str) -> bool:
    """Verify, and rehash in place when the argon2 parameters have changed since it was stored."""
    if user is None:
        with contextlib.suppress(VerificationError):
            _hasher.verify(_DUMMY_HASH, password)
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


def _validate_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidRequest(f"Password must be at least {MIN_PASSWORD_LENGTH} characters",
                             fields={"password": f"At least {MIN_PASSWORD_LENGTH} characters"})


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
