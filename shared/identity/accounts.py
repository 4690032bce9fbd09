"""People: accounts (passwords with argon2id), users found by email, and their memberships.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select, update

from shared.audit import record as audit
from shared.audit.record import Actor
from shared.core import clock
from shared.core.db import write_transaction
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
    """argon2id: deliberately slow (~0.1-0.2 s), so never called inside a database transaction (a
    transaction held open that long blocks, or on SQLite loses, the race with other writers)."""
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Does `password` match? Without a stored hash (unknown email) a dummy is verified, so the
    answer takes as long either way. Touches no database."""
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class Verified:
    """A user whose password matched, and its new hash when the argon2 parameters changed."""

    user_id: int
    stored_hash: str
    new_hash: str | None


def authenticate(email: str, password: str) -> Verified | None:
    """The active user with this email and password, or None.

    The user is read, the read ends, and only then is the password verified (and rehashed when
    the parameters have changed): the caller writes the session in a write transaction of its own.
    """
    user = find_user(email)
    stored, user_id, active = (user.password_hash, user.id, user.is_active) if user else (None, None, False)
    db.session.commit()  # end the read before the slow part
    if not verify_password(stored, password) or not active:
        return None
    new_hash = _hasher.hash(password) if _hasher.check_needs_rehash(stored) else None
    return Verified(user_id, stored, new_hash)


def save_rehash(verified: Verified) -> None:
    """In the caller's write transaction: store the new hash unless the password changed meanwhile."""
    if verified.new_hash:
        db.session.execute(
            update(User).where(User.id == verified.user_id, User.password_hash == verified.stored_hash)
            .values(password_hash=verified.new_hash).execution_options(synchronize_session=False))


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


def check_email(email: str) -> str:
    """The email normalized; InvalidRequest with `fields["email"]` when it cannot be one."""
    email = normalize_email(email)
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email) or len(email) > 254:
        raise InvalidRequest("Enter a valid email address", fields={"email": "Enter a valid email address"})
    return email


def check_role_and_partner(role: str, partner: Partner | None) -> None:
    if not roles.is_valid_role(role):
        raise InvalidRequest(f"Unknown role '{role}'", fields={"role": "Unknown role"})
    if roles.is_partner_role(role) != (partner is not None):
        message = "Partner roles need a partner" if partner is None else "Partner users need a partner role"
        raise InvalidRequest(message, fields={"role": message})


def _password_required() -> InvalidRequest:
    return InvalidRequest("A new user needs a password", fields={"password": "Required for a new user"})


def add_member(org: Organization, email: str, role: str, *, password: str | None = None,
               display_name: str | None = None, partner: Partner | None = None,
               actor: Actor | None = None) -> Membership:
    """The operator's bootstrap (`users create`): create the user if new (a password is then
    required) and give them a role in `org`. People join through invitations everywhere else."""
    email = check_email(email)
    check_role_and_partner(role, partner)
    known = find_user(email) is not None
    db.session.commit()  # end the read: the password is hashed outside any transaction
    password_hash = None
    if not known:
        if password is None:
            raise _password_required()
        _validate_password(password)
        password_hash = hash_password(password)
    with write_transaction() as session:
        user = find_user(email)
        if user is None:
            if password_hash is None:  # deleted meanwhile: nothing to link, ask again
                raise _password_required()
            user = User(email=email, display_name=(display_name or email.split("@")[0])[:100],
                        password_hash=password_hash)
            session.add(user)
            session.flush()
        elif live_membership(user, org) is not None:
            raise InvalidRequest(f"{email} is already a member of {org.name}",
                                 fields={"email": "Already a member"})
        membership = Membership(user_id=user.id, organization_id=org.id, role=role,
                                partner_id=partner.id if partner else None)
        session.add(membership)
        session.flush()
        audit.record(actor, org.id, "member.added", "membership", str(membership.id),
                     {"email": email, "role": role, "partner": partner.name if partner else None})
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
    with write_transaction():
        previous = membership.role
        membership.role = role
        audit.record(actor, membership.organization_id, "member.role_changed", "membership",
                     str(membership.id), {"email": membership.user.email, "from": previous, "to": role})
    return membership


def remove_member(membership: Membership, actor: Actor | None = None) -> None:
    """End the membership: the member's tokens stop at once, and so does their access to this
    organization (a membership must be live on every request). Their sessions stay: a person who
    works in several organizations keeps working in the others."""
    with write_transaction():
        membership.removed_at = clock.now()
        audit.record(actor, membership.organization_id, "member.removed", "membership", str(membership.id),
                     {"email": membership.user.email, "role": membership.role})


def set_password(user: User, password: str) -> None:
    """A new password ends every session of the user."""
    _validate_password(password)
    password_hash = hash_password(password)  # before the transaction: argon2 is slow
    with write_transaction():
        user.password_hash = password_hash
        end_sessions(user)
