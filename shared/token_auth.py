"""The authenticated API request's hot path: one lookup, the SPEC 5 checks, and no write.

Every API request pays for this, so it runs on a SQLAlchemy Core connection with one prepared
SQL text and builds no ORM objects: the lookup row becomes an `AuthenticatedToken`, which is all
that authentication, the scope decision and GET /me need. Endpoints that work with the token's
relationships load the ORM object afterwards (api.auth.current_token). Measured with bench/micro.py:
the ORM version of this path cost about three times as much. Counting the request is a tally in
memory or Redis (shared/usage_flush.py); the decision itself is never cached, so a revoked token
is refused on its very next request, on every worker.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Integer, column, text

from shared import clock, roles, usage_tally
from shared.db import AUTOCOMMIT_BIND
from shared.extensions import db
from shared.errors import AuthError, PlanRequired
from shared.models import (
    ApiToken,
    Membership,
    Organization,
    Partner,
    Plan,
    User,
    membership_is_live,
)
from shared.netaddr import address_allowed
from shared.tokens import Credentials, hash_secret, invalid_api_key, is_well_formed

# The token's own columns (never its hashes), then what the checks and /me need of its creator and org.
_HASHES = ("token_hash", "previous_token_hash")
_TOKEN_COLUMNS = [c for c in ApiToken.__table__.columns if c.name not in _HASHES]
_RELATED_COLUMNS = {
    "creator_role": ("m", Membership.__table__.c.role),
    "membership_removed_at": ("m", Membership.__table__.c.removed_at),
    "creator_user_id": ("u", User.__table__.c.id),
    "creator_email": ("u", User.__table__.c.email),
    "user_is_active": ("u", User.__table__.c.is_active),
    "partner_removed_at": ("p", Partner.__table__.c.removed_at),
    "plan": ("o", Organization.__table__.c.plan),
    "organization_name": ("o", Organization.__table__.c.name),
    "organization_slug": ("o", Organization.__table__.c.slug),
}
_SELECTED = ", ".join([f"t.{c.name}" for c in _TOKEN_COLUMNS]
                      + [f"{alias}.{c.name} AS {label}" for label, (alias, c) in _RELATED_COLUMNS.items()]
                      + ["CASE WHEN t.token_hash = :token_hash THEN 1 ELSE 0 END AS current_value"])
_FROM = (" FROM api_tokens t"
         " JOIN memberships m ON m.id = t.created_by_membership_id"
         " JOIN users u ON u.id = m.user_id"
         " JOIN organizations o ON o.id = t.organization_id"
         " LEFT JOIN partners p ON p.id = m.partner_id")
_RESULT_COLUMNS = [*[column(c.name, c.type) for c in _TOKEN_COLUMNS],
                   *[column(label, c.type) for label, (_, c) in _RELATED_COLUMNS.items()],
                   column("current_value", Integer)]
_LOOKUP = text(
    f"SELECT {_SELECTED}{_FROM}"
    # The current value, or the previous one during a grace period (checked below).
    " WHERE t.token_hash = :token_hash OR t.previous_token_hash = :token_hash"
).columns(*_RESULT_COLUMNS)
_BY_ID = text(f"SELECT {_SELECTED}{_FROM} WHERE t.id = :token_id").columns(*_RESULT_COLUMNS)


@dataclass(frozen=True, slots=True)
class CreatorRef:
    """The creating user as the token summary shows it."""

    id: int
    email: str


@dataclass(frozen=True, slots=True)
class AuthenticatedToken:
    """One token as authentication read it: the token's columns (same names as ApiToken's) and its
    creator's role and liveness and its organization's plan. Never the hash, never the secret."""

    id: int
    public_id: str
    organization_id: int
    created_by_membership_id: int
    type: str
    project_id: int | None
    name: str
    description: str
    permissions: list[str]
    scopes: list[str]
    ip_allowlist: list[str]
    display_suffix: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    is_active: bool
    last_used_at: datetime | None
    last_used_ip: str | None
    usage_count: int
    documents_processed: int
    revoked_at: datetime | None
    revoked_by_user_id: int | None
    revoked_reason: str | None
    previous_expires_at: datetime | None
    new_network_at: datetime | None
    is_canary: bool
    canary_trips: int
    current_value: bool  # False: authenticated with the previous value (grace period)
    creator_role: str
    creator_live: bool
    creator_user: CreatorRef
    plan: str
    organization_name: str
    organization_slug: str

    @classmethod
    def from_row(cls, row: Any) -> AuthenticatedToken:
        values = row._mapping
        token = {c.name: values[c.name] for c in _TOKEN_COLUMNS}
        return cls(
            **token,
            current_value=bool(values["current_value"]),
            creator_role=values["creator_role"],
            creator_live=membership_is_live(values["membership_removed_at"], values["user_is_active"],
                                            values["partner_removed_at"]),
            creator_user=CreatorRef(values["creator_user_id"], values["creator_email"]),
            plan=values["plan"],
            organization_name=values["organization_name"],
            organization_slug=values["organization_slug"],
        )

    def counted(self, usage_count: int, now: datetime, client_ip: str) -> AuthenticatedToken:
        """This token as it is after counting one more request."""
        return replace(self, usage_count=usage_count, last_used_at=now, last_used_ip=client_ip)


def connect() -> Connection:
    """The connection the hot path runs on: on PostgreSQL from an autocommit engine (the lookup
    needs no transaction), which saves the BEGIN and COMMIT round trips; on SQLite the app's engine."""
    return db.engines[AUTOCOMMIT_BIND if AUTOCOMMIT_BIND in db.engines else None].connect()


def find_token(connection: Connection, token_hash: str) -> AuthenticatedToken | None:
    row = connection.execute(_LOOKUP, {"token_hash": token_hash}).first()
    # End the read at once: a SQLite read transaction left open would pin an old snapshot. With
    # autocommit (PostgreSQL) it is a no-op.
    connection.commit()
    return AuthenticatedToken.from_row(row) if row is not None else None


def find_token_by_id(connection: Connection, token_id: int) -> AuthenticatedToken | None:
    """The token as authentication reads it, by id (the usage flusher's alerts describe it so)."""
    row = connection.execute(_BY_ID, {"token_id": token_id, "token_hash": ""}).first()
    return AuthenticatedToken.from_row(row) if row is not None else None


def authenticate(connection: Connection, credentials: Credentials, client_ip: str, *,
                 user_agent: str | None = None, path: str = "") -> AuthenticatedToken:
    """Every check of SPEC 5 up to the plan, in order; raises AuthError.

    A canary is answered exactly as an unknown value (SPEC 11), after tallying the trip: the
    usage flusher counts it and raises its alerts, so the request path writes nothing.
    """
    if credentials.value is None:
        raise invalid_api_key(credentials.problem or "The API key is missing")
    if not is_well_formed(credentials.value):
        raise invalid_api_key()
    token = find_token(connection, hash_secret(credentials.value))
    if token is None or token.revoked_at is not None:
        raise invalid_api_key()
    if token.is_canary:
        usage_tally.accounting().count_trip(token, client_ip, user_agent, path)
        raise invalid_api_key()
    if not token.current_value and (token.previous_expires_at is None or token.previous_expires_at <= clock.now()):
        raise invalid_api_key()  # an old value after its grace period
    if not token.is_active:
        raise AuthError(401, "token_inactive", "This token is deactivated")
    if token.expires_at is not None and token.expires_at <= clock.now():
        raise AuthError(401, "token_expired", "This token has expired")
    if not token.creator_live or not roles.is_valid_role(token.creator_role):
        raise invalid_api_key()
    if token.ip_allowlist and not address_allowed(client_ip, token.ip_allowlist):
        raise AuthError(403, "ip_not_allowed", "Requests from this address are not allowed for this token")
    if token.plan == Plan.NONE:
        raise PlanRequired("The organization has no plan; choose a plan to use API tokens")
    return token
