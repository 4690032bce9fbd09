"""Server-side sessions: the cookie holds a random key whose hash names a row, so sign-out and a
new password end sessions for real.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import delete, select
from sqlalchemy.orm import joinedload

from shared.core.extensions import db
from shared.models import User, UserSession


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
