"""Usage per token, per UTC day and per scope × method, as the pages and the API read it.

The rows are written off the request path, in batches, by the usage flusher (shared/usage_flush.py,
shared/usage_batches.py).
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import select

from shared.core import clock
from shared.core.extensions import db
from shared.models import TokenDailyUsage, TokenScopeUsage


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
