"""Usage per token per UTC day, recorded as requests arrive (one upsert in the counting transaction)."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from shared import clock
from shared.extensions import db
from shared.models import ApiToken, TokenDailyUsage


def count_request(session, token: ApiToken) -> None:
    """+1 for today (UTC) for this token; atomic under concurrency on SQLite and PostgreSQL."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(TokenDailyUsage).values(
        organization_id=token.organization_id, token_id=token.id, day=clock.now().date(), requests=1)
    session.execute(statement.on_conflict_do_update(
        index_elements=["token_id", "day"],
        set_={"requests": TokenDailyUsage.requests + 1},
    ))


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
