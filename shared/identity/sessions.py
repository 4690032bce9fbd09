"""Server-side sessions: the cookie holds a random key whose hash names a row, so sign-out and a
new password end sessions for real.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import delete, select
from sqlalchemy.orm import joinedload

from shared.core.db import write_transaction
from shared.core.extensions import db
from shared.models import User, UserSession


def _session_key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def start_session(user_id: int) -> User:
    """A new server-side session for the user, in a write transaction of its own (or the caller's);
    the user comes back with its `session_key`, which goes into the (signed) cookie."""
    key = secrets.token_urlsafe(32)
    with write_transaction() as session:
        session.add(UserSession(key_hash=_session_key_hash(key), user_id=user_id))
    user = db.session.get(User, user_id)
    user.session_key = key
    return user


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
        # The request has read this very row (it signed the user in): the delete starts as a write.
        with write_transaction() as session:
            session.execute(delete(UserSession).where(UserSession.key_hash == _session_key_hash(key)))


def end_sessions(user: User) -> None:
    """Sign the user out everywhere (a new password, deactivation), in the caller's transaction."""
    db.session.execute(delete(UserSession).where(UserSession.user_id == user.id))
