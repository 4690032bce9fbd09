"""Usage per token per UTC day, recorded as requests arrive.

Every accepted API request writes here, so this is the hottest write in Keyward. It runs two
prepared statements straight on the database driver inside the caller's write transaction: the
token's counter (UPDATE … RETURNING, so concurrent requests never lose a count) and the day's row
(an upsert). Through SQLAlchemy's ORM the same two statements cost about 30 times as much.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import cache

from sqlalchemy import select

from shared import clock
from shared.extensions import db
from shared.models import ApiToken, TokenDailyUsage

_COUNT_TOKEN_USE = (
    "UPDATE api_tokens SET usage_count = usage_count + 1, last_used_at = %s, last_used_ip = %s"
    " WHERE id = %s RETURNING usage_count"
)
_COUNT_DAY = (
    "INSERT INTO token_daily_usage (organization_id, token_id, day, requests) VALUES (%s, %s, %s, 1)"
    " ON CONFLICT (token_id, day) DO UPDATE SET requests = token_daily_usage.requests + 1"
)


class _DriverStatements:
    """The two statements in the driver's parameter style, and the columns' own value conversions
    (so a raw write stores exactly what the ORM would: SQLite keeps naive UTC text)."""

    def __init__(self, dialect):
        qmark = dialect.paramstyle == "qmark"
        self.count_token_use = _COUNT_TOKEN_USE.replace("%s", "?") if qmark else _COUNT_TOKEN_USE
        self.count_day = _COUNT_DAY.replace("%s", "?") if qmark else _COUNT_DAY
        identity = lambda value: value  # noqa: E731
        self.moment = ApiToken.__table__.c.last_used_at.type.bind_processor(dialect) or identity
        self.day = TokenDailyUsage.__table__.c.day.type.bind_processor(dialect) or identity


@cache
def _statements(dialect) -> _DriverStatements:
    return _DriverStatements(dialect)


def record_request(connection, token: ApiToken, now: datetime, client_ip: str) -> int:
    """+1 on the token's usage count and on today's (UTC) row; returns the new usage count.

    `connection` is a SQLAlchemy connection inside a write transaction (see write_transaction).
    """
    statements = _statements(connection.dialect)
    cursor = connection.connection.driver_connection.cursor()
    try:
        cursor.execute(statements.count_token_use, (statements.moment(now), client_ip, token.id))
        count = cursor.fetchone()[0]
        cursor.execute(statements.count_day, (token.organization_id, token.id, statements.day(now.date())))
    finally:
        cursor.close()
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
