"""Audit events, added to the caller's transaction so a change and its record commit together."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert

from shared.core import clock
from shared.core.extensions import db
from shared.models import ApiToken, AuditEvent, Membership
from shared.tokens.format import mask_secrets


@dataclass(frozen=True)
class Actor:
    """Who is acting: a signed-in member, or a token acting as its creator (then `token` is set)."""

    membership: Membership
    token: ApiToken | None = None
    ip: str | None = None
    user_agent: str | None = None

    @property
    def organization_id(self) -> int:
        return self.membership.organization_id

    @property
    def role(self) -> str:
        return self.membership.role

    @property
    def user_id(self) -> int:
        return self.membership.user_id


def record(actor: Actor | None, organization_id: int, action: str, target_type: str, target_id: str,
           details: dict[str, Any] | None = None, *, source_ip: str | None = None,
           user_agent: str | None = None, connection=None) -> None:
    """Add the record to the current transaction (or to `connection`'s, a Core connection's).
    `source_ip` and `user_agent` describe the request when nobody signed in acted (a leak report,
    a canary token presented)."""
    details = _masked(details or {})
    values = dict(
        organization_id=organization_id,
        actor_user_id=actor.user_id if actor else None,
        actor_token_id=actor.token.id if actor and actor.token else None,
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        source_ip=actor.ip if actor else source_ip,
        user_agent=mask_secrets((actor.user_agent if actor else user_agent) or "")[:300] or None,
        details=details,
        created_at=clock.now(),
    )
    if connection is not None:
        connection.execute(insert(AuditEvent), values)
    else:
        db.session.add(AuditEvent(**values))


def _masked(value: Any) -> Any:
    """Details with every token-shaped text masked: the audit log, its export and a token's history
    are read by many and kept for long, and details copied from outside (a leak report's URL, a
    path) may carry a secret."""
    if isinstance(value, str):
        return mask_secrets(value)
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(item) for item in value]
    return value
