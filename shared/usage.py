"""Usage per token per UTC day, recorded as requests arrive.

Every accepted API request writes here, so this is the hottest write in Keyward: two SQL texts
built once, run on the caller's Core connection in its write transaction: the token's counter
(UPDATE … RETURNING, so concurrent requests never lose a count) and the day's row (an upsert).
The same statements through the ORM cost several times as much (bench/micro.py).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import bindparam, select, text

from shared import clock
from shared.extensions import db
from shared.models import ApiToken, TokenDailyUsage

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
_COUNT_TOKEN_USE = text(_COUNT_TOKEN_USE_SQL).bindparams(_NOW)
_COUNT_DAY = text(_COUNT_DAY_SQL).bindparams(_DAY)
# PostgreSQL runs both as one statement (a data-modifying WITH): one round trip instead of two.
_COUNT_BOTH = text(
    f"WITH counted AS ({_COUNT_TOKEN_USE_SQL}) {_COUNT_DAY_SQL} RETURNING (SELECT usage_count FROM counted)"
).bindparams(_NOW, _DAY)


def record_request(connection, token, now: datetime, client_ip: str) -> int:
    """+1 on the token's usage count and on today's (UTC) row; returns the new usage count.

    `connection` is a Core connection inside a write transaction; `token` has id and organization_id.
    """
    params = {"now": now, "ip": client_ip, "token_id": token.id, "org_id": token.organization_id,
              "day": now.date()}
    if connection.dialect.name == "postgresql":
        return connection.execute(_COUNT_BOTH, params).scalar_one()
    count = connection.execute(_COUNT_TOKEN_USE, params).scalar_one()
    connection.execute(_COUNT_DAY, params)
    return count


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
