"""The authenticated API request's hot path: one lookup, the authentication checks, and no write.

Every API request pays for this, so it runs one fixed query on the driver itself and builds no
ORM objects: the lookup row becomes an `AuthenticatedToken`, which is all
that authentication, the scope decision and GET /me need. Endpoints that work with the token's
relationships load the ORM object afterwards (api.auth.current_token). Measured with bench/micro.py:
the ORM version of this path cost about three times as much. Counting the request is a tally in
memory or Redis (shared/usage_flush.py); the decision itself is never cached, so a revoked token
is refused on its very next request, on every worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from flask import Flask
from sqlalchemy import Connection, Engine, Integer, column, event, text
from sqlalchemy.exc import DBAPIError

from shared.core import clock, current
from shared.core.db import AUTOCOMMIT_BIND
from shared.core.errors import AuthError, PlanRequired
from shared.core.extensions import db
from shared.core.held import Held
from shared.core.netaddr import address_allowed
from shared.core.statements import Statement, statement_for
from shared.identity import roles
from shared.models import (
    ApiToken,
    Membership,
    Organization,
    Partner,
    Plan,
    User,
    membership_is_live,
)
from shared.tokens import usage_tally
from shared.tokens.credentials import Credentials, invalid_api_key
from shared.tokens.format import hash_secret, is_well_formed

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
_TOKEN_NAMES = [c.name for c in _TOKEN_COLUMNS]
_TOKEN_COUNT = len(_TOKEN_COLUMNS)
_RELATED = {label: _TOKEN_COUNT + index for index, label in enumerate(_RELATED_COLUMNS)}
_ROLE, _MEMBERSHIP_REMOVED_AT, _PARTNER_REMOVED_AT = (
    _RELATED["creator_role"], _RELATED["membership_removed_at"], _RELATED["partner_removed_at"])
_USER_ID, _USER_EMAIL, _USER_IS_ACTIVE = (
    _RELATED["creator_user_id"], _RELATED["creator_email"], _RELATED["user_is_active"])
_ORGANIZATION = _RELATED["plan"]  # then its name and slug, as the class's last fields
_CURRENT_VALUE = len(_RESULT_COLUMNS) - 1
# The current value, or the previous one during a grace period (checked below).
_LOOKUP_SQL = (f"SELECT {_SELECTED}{_FROM}"
               " WHERE t.token_hash = :token_hash OR t.previous_token_hash = :token_hash")
_BY_ID = text(f"SELECT {_SELECTED}{_FROM} WHERE t.id = :token_id").columns(*_RESULT_COLUMNS)
LOOKUP_EXTENSION = "keyward.token_lookup"


@dataclass(frozen=True, slots=True)
class CreatorRef:
    """The creating user as the token summary shows it."""

    id: int
    email: str


@dataclass(slots=True)
class AuthenticatedToken:
    """One token as authentication read it: the token's columns (same names as ApiToken's) and its
    creator's role and liveness and its organization's plan. Never the hash, never the secret.

    Made afresh by each request's lookup and owned by that request: counting it updates it in place
    (a frozen copy of its 35 fields cost more than the rate limit)."""

    id: int
    public_id: str
    organization_id: int
    created_by_membership_id: int
    type: str
    project_id: int | None
    name: str
    description: str
    rights: dict[str, list[str]]  # per scope; what rights.decide reads
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
    trusted_publisher_id: int | None
    current_value: bool  # False: authenticated with the previous value (grace period)
    creator_role: str
    creator_live: bool
    creator_user: CreatorRef
    plan: str
    organization_name: str
    organization_slug: str

    @classmethod
    def from_row(cls, values: Sequence[Any]) -> AuthenticatedToken:
        """From the lookup's columns, in order, converted to Python values. Positional: the token's
        columns are this class's first fields, in the same order (checked below)."""
        return cls(
            *values[:_TOKEN_COUNT],
            bool(values[_CURRENT_VALUE]),
            values[_ROLE],
            membership_is_live(values[_MEMBERSHIP_REMOVED_AT], values[_USER_IS_ACTIVE], values[_PARTNER_REMOVED_AT]),
            CreatorRef(values[_USER_ID], values[_USER_EMAIL]),
            *values[_ORGANIZATION:_CURRENT_VALUE],
        )

    def record_use(self, usage_count: int, now: datetime, client_ip: str) -> None:
        """Update this token as counting one more request leaves it."""
        self.usage_count, self.last_used_at, self.last_used_ip = usage_count, now, client_ip


# from_row builds the token from its columns by position: the class's fields must follow the lookup's columns.
assert [f.name for f in fields(AuthenticatedToken)] == [
    *_TOKEN_NAMES, "current_value", "creator_role", "creator_live", "creator_user",
    *list(_RELATED_COLUMNS)[_ORGANIZATION - _TOKEN_COUNT:]], "AuthenticatedToken's fields and the lookup's columns differ"


class _Lookup:
    """The lookup on one engine, run on the driver itself (shared/core/statements.py: a statement
    prepared through libpq on PostgreSQL, the driver's cursor elsewhere): SQLAlchemy's statement
    execution and result machinery cost more than the query itself (bench/micro.py), and one fixed
    statement needs none of it. What it does give is kept: the pool's connections (held between lookups,
    shared/core/held.py), each column's conversion (the same result processors a query through SQLAlchemy
    would apply: datetimes stored as text on SQLite, JSON, booleans), and its exception types, so
    an unreachable database still answers 503.

    The engine is the autocommit one on PostgreSQL (no BEGIN/COMMIT round trips) without a ping on
    checkout: a connection the server dropped fails the query, the pool is emptied (after a restart
    every pooled connection is as dead) and the query runs once more on a fresh one (a read, safe to
    repeat), so a database restart costs no request and a request no ping. On SQLite the driver runs
    in autocommit mode: the SELECT is its own transaction.
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        dialect = engine.dialect
        processors = [result.type.dialect_impl(dialect).result_processor(dialect, None)
                      for result in _RESULT_COLUMNS]
        self.converters = [(index, processor) for index, processor in enumerate(processors) if processor]
        self.error = dialect.loaded_dbapi.Error
        # Each held connection with its statement (prepared on PostgreSQL), kept too.
        self.held = Held(self._open)
        event.listen(engine, "engine_disposed", self._close_idle)

    def _close_idle(self, engine: Engine) -> None:
        for connection, _ in self.held.take_all():
            connection.invalidate()  # given back, they would go to the disposed pool

    def give_back(self) -> None:
        """Return the idle connections to the pool: a stopping process's last usage flush takes
        one there, and if the database file has gone meanwhile only an open one can still write."""
        for connection, statement in self.held.take_all():
            statement.close()
            connection.close()

    def find(self, token_hash: str) -> AuthenticatedToken | None:
        try:
            row = self._fetch(token_hash)
        except DBAPIError as error:
            if not error.connection_invalidated:
                raise
            # The server closed a connection (a restart, an idle timeout): the others are as stale,
            # so the pool starts afresh and the read (safe to repeat) runs again.
            self.engine.dispose()
            row = self._fetch(token_hash)
        if row is None:
            return None
        values = list(row)
        for index, convert in self.converters:
            value = values[index]
            if value is not None:  # every processor maps None to None, and most optional columns hold None
                values[index] = convert(value)
        return AuthenticatedToken.from_row(values)

    def _open(self) -> tuple[Any, Statement]:
        connection = self.engine.raw_connection()  # the driver's error when it cannot connect
        return connection, statement_for(connection.dbapi_connection, self.engine.dialect, _LOOKUP_SQL, "token_hash")

    def _fetch(self, token_hash: str) -> Sequence[Any] | None:
        """One run of the statement; a driver error comes out as SQLAlchemy's (503 for the API),
        marked `connection_invalidated` when the connection was found dropped."""
        connection = statement = None
        try:
            connection, statement = self.held.take()
            row = statement.fetch_one(token_hash)
        except self.error as error:
            dropped = connection is not None and self.engine.dialect.is_disconnect(
                error, connection.dbapi_connection, None)
            if dropped:
                connection.invalidate()
            elif connection is not None:
                statement.close()
            if connection is not None:
                connection.close()
            raise DBAPIError.instance(_LOOKUP_SQL, (token_hash,), error, self.error, dialect=self.engine.dialect,
                                      connection_invalidated=dropped) from error
        self.held.give_back((connection, statement))
        return row


def _lookup(app: Flask | None = None) -> _Lookup:
    app = app or current.app()
    lookup = app.extensions.get(LOOKUP_EXTENSION)
    if lookup is None:
        with app.app_context():
            lookup = app.extensions[LOOKUP_EXTENSION] = _Lookup(db.engines.get(AUTOCOMMIT_BIND) or db.engine)
    return lookup


def give_back_connections(app: Flask) -> None:
    """Before a process stops: the lookup's idle connections go back to the pool (_Lookup.give_back)."""
    _lookup(app).give_back()


def find_token(token_hash: str) -> AuthenticatedToken | None:
    return _lookup().find(token_hash)


def find_token_by_id(connection: Connection, token_id: int) -> AuthenticatedToken | None:
    """The token as authentication reads it, by id (the usage flusher's alerts describe it so)."""
    row = connection.execute(_BY_ID, {"token_id": token_id, "token_hash": ""}).first()
    return AuthenticatedToken.from_row(row) if row is not None else None


def authenticate(credentials: Credentials, client_ip: str, *, user_agent: str | None = None,
                 path: str = "") -> AuthenticatedToken:
    """Every authentication check up to the plan, in order (format, hash, revoked, active, expiry, creator, allowlist, plan); raises AuthError.

    A canary is answered exactly as an unknown value, after tallying the trip: the
    usage flusher counts it and raises its alerts, so the request path writes nothing.
    """
    if credentials.value is None:
        raise invalid_api_key(credentials.problem or "The API key is missing")
    if not is_well_formed(credentials.value):
        raise invalid_api_key()
    token = find_token(hash_secret(credentials.value))
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
