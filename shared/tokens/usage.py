"""Usage per token, per UTC day and per network, recorded as requests arrive.

Every accepted API request writes here, so this is the hottest write in Keyward: SQL texts built
once, run on the caller's Core connection in its write transaction: the token's counter
(UPDATE … RETURNING, so concurrent requests never lose a count), the day's row and the network's
row (upserts). The same statements through the ORM cost several times as much (bench/micro.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache

from sqlalchemy import bindparam, select, text

from shared.core import clock
from shared.core.extensions import db
from shared.core.netaddr import network_of
from shared.models import ApiToken, TokenDailyUsage, TokenScopeUsage

_NOW = bindparam("now", type_=ApiToken.__table__.c.last_used_at.type)
_DAY = bindparam("day", type_=TokenDailyUsage.__table__.c.day.type)
_COUNT_TOKEN_USE_SQL = (
    "UPDATE api_tokens SET usage_count = usage_count + 1, last_used_at = :now, last_used_ip = :ip"
    " WHERE id = :token_id RETURNING usage_count"
)
_COUNT_DAY_SQL = (
    "INSERT INTO token_daily_usage (organization_id, token_id, day, requests) VALUES (:org_id, :token_id, :day, 1)"
    " ON CONFLICT (token_id, day) DO UPDATE SET requests = token_daily_usage.requests + 1"
)
_COUNT_NETWORK_SQL = (
    "INSERT INTO token_networks (organization_id, token_id, network, first_seen_at, last_seen_at, requests)"
    " VALUES (:org_id, :token_id, :network, :now, :now, 1)"
    " ON CONFLICT (token_id, network) DO UPDATE"
    " SET requests = token_networks.requests + 1, last_seen_at = excluded.last_seen_at"
    " RETURNING requests"
)
_COUNT_SCOPE_SQL = (
    "INSERT INTO token_scope_usage (token_id, scope, method, last_used_at, requests)"
    " VALUES (:token_id, :scope, :method, :now, 1)"
    " ON CONFLICT (token_id, scope, method) DO UPDATE"
    " SET requests = token_scope_usage.requests + 1, last_used_at = excluded.last_used_at"
)
# PostgreSQL runs them all as one statement (data-modifying WITHs): one round trip, not three or four.
_COUNT_ALL = text(
    f"WITH counted AS ({_COUNT_TOKEN_USE_SQL}), daily AS ({_COUNT_DAY_SQL})"
    f" {_COUNT_NETWORK_SQL}, (SELECT usage_count FROM counted)"
).bindparams(_NOW, _DAY)
_COUNT_ALL_AND_SCOPE = text(
    f"WITH counted AS ({_COUNT_TOKEN_USE_SQL}), daily AS ({_COUNT_DAY_SQL}), scoped AS ({_COUNT_SCOPE_SQL})"
    f" {_COUNT_NETWORK_SQL}, (SELECT usage_count FROM counted)"
).bindparams(_NOW, _DAY)


class _DriverStatements:
    """SQLite runs the counting statements one by one; through exec_driver_sql each costs half of a
    text() execution (bench/micro.py). The values are converted by the columns' own types, so a
    row holds exactly what the ORM would write."""

    def __init__(self, dialect):
        self.moment = ApiToken.__table__.c.last_used_at.type.bind_processor(dialect) or (lambda v: v)
        self.day = TokenDailyUsage.__table__.c.day.type.bind_processor(dialect) or (lambda v: v)
        self.statements = {name: self._positional(sql) for name, sql in (
            ("token", _COUNT_TOKEN_USE_SQL), ("day", _COUNT_DAY_SQL), ("network", _COUNT_NETWORK_SQL),
            ("scope", _COUNT_SCOPE_SQL))}

    @staticmethod
    def _positional(sql: str) -> tuple[str, list[str]]:
        return re.sub(r":(\w+)", "?", sql), re.findall(r":(\w+)", sql)

    def run(self, connection, name: str, params: dict):
        sql, names = self.statements[name]
        return connection.exec_driver_sql(sql, tuple(params[n] for n in names))


@cache
def _driver_statements(dialect) -> _DriverStatements:
    return _DriverStatements(dialect)


@dataclass(frozen=True)
class Counted:
    usage_count: int  # the token's count after this request
    network: str
    new_network: bool  # first request from this network


def record_request(connection, token, now: datetime, client_ip: str,
                   right: tuple[str, str] | None = None) -> Counted:
    """+1 on the token's usage count, on today's (UTC) row, on the client's network row and, when
    the request uses a right the token has (`right` = (scope, method)), on that right's row.

    `connection` is a Core connection inside a write transaction; `token` has id and organization_id.
    """
    network = network_of(client_ip)
    params = {"now": now, "ip": client_ip, "token_id": token.id, "org_id": token.organization_id,
              "day": now.date(), "network": network}
    if right is not None:
        params["scope"], params["method"] = right
    if connection.dialect.name == "postgresql":
        statement = _COUNT_ALL if right is None else _COUNT_ALL_AND_SCOPE
        network_requests, count = connection.execute(statement, params).one()
    else:
        statements = _driver_statements(connection.dialect)
        params["now"], params["day"] = statements.moment(now), statements.day(params["day"])
        count = statements.run(connection, "token", params).scalar_one()
        statements.run(connection, "day", params)
        network_requests = statements.run(connection, "network", params).scalar_one()
        if right is not None:
            statements.run(connection, "scope", params)
    return Counted(count, network, network_requests == 1)


def observed_rights(token_id: int, days: int = 30) -> set[tuple[str, str]]:
    """The (scope, method) pairs the token was allowed to use in the last `days` days."""
    since = clock.now() - timedelta(days=days)
    return {(scope, method) for scope, method in db.session.execute(
        select(TokenScopeUsage.scope, TokenScopeUsage.method)
        .where(TokenScopeUsage.token_id == token_id, TokenScopeUsage.last_used_at >= since))}


def days_window(days: int) -> list[date]:
    today = clock.now().date()
    return [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]


def daily_requests(token_ids: list[int], days: int) -> dict[int, dict[date, int]]:
    """{token_id: {day: requests}} for the last `days` UTC days (today included)."""
    window = days_window(days)
    rows = db.session.execute(
        select(TokenDailyUsage.token_id, TokenDailyUsage.day, TokenDailyUsage.requests)
        .where(TokenDailyUsage.token_id.in_(token_ids), TokenDailyUsage.day >= window[0])
    ).all() if token_ids else []
    result: dict[int, dict[date, int]] = {token_id: {} for token_id in token_ids}
    for token_id, day, requests in rows:
        result[token_id][day] = requests
    return result
