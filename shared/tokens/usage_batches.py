"""One batch of usage tallies applied in one transaction, exactly once.

A batch is a `Tally` (shared/usage_tally.py) with a source and a number. Its transaction:

1. moves the source's mark in `usage_flushes` to the batch's number, only if the mark is lower.
   If it is not, the batch was applied before (its commit had gone through but the answer was
   lost, or another process drained the same Redis batch) and nothing else is done: a batch is
   never counted twice. It is the first statement, so two processes applying one batch queue on
   that row (PostgreSQL) or on the write lock (SQLite) and the second finds the mark moved;
2. adds each token's count with one UPDATE per token (executemany, in id order so concurrent
   batches lock rows in the same order), keeping the latest last-use time and address;
3. upserts the per-day, per-network and per-scope rows;
4. raises the alerts the requests call for: a network the token never used before, after its
   first use (`token.anomaly`), and each canary presented (`token.canary_used`), with their audit
   records, events and notifications.

Nothing is written when the batch fails; the caller keeps it and tries it again as it is.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, case, text
from sqlalchemy.dialects import postgresql, sqlite

from shared.core import clock
from shared.core.db import immediate_begin
from shared.models import TokenDailyUsage, TokenNetwork, UsageFlush, UTCDateTime
from shared.tokens import alerts as token_alerts
from shared.tokens import authn
from shared.tokens.usage_tally import Tally

CHUNK = 500  # rows per multi-row statement or IN list (SQLite allows 32,766 parameters)

_MARK = text(
    "INSERT INTO usage_flushes (source, last_batch, updated_at) VALUES (:source, :batch, :now)"
    " ON CONFLICT (source) DO UPDATE SET last_batch = excluded.last_batch, updated_at = excluded.updated_at"
    " WHERE usage_flushes.last_batch < excluded.last_batch"
    " RETURNING last_batch"
).bindparams(bindparam("now", type_=UTCDateTime()))
_COUNT_TOKEN = text(
    "UPDATE api_tokens SET usage_count = usage_count + :n,"
    " last_used_ip = CASE WHEN last_used_at IS NULL OR last_used_at < :at THEN :ip ELSE last_used_ip END,"
    " last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < :at THEN :at ELSE last_used_at END"
    " WHERE id = :token_id"
).bindparams(bindparam("at", type_=UTCDateTime()))
_COUNTS = text("SELECT id, usage_count FROM api_tokens WHERE id IN :ids").bindparams(
    bindparam("ids", expanding=True))
_COUNT_DAY = text(
    "INSERT INTO token_daily_usage (organization_id, token_id, day, requests)"
    " VALUES (:org_id, :token_id, :day, :n)"
    " ON CONFLICT (token_id, day) DO UPDATE SET requests = token_daily_usage.requests + excluded.requests"
).bindparams(bindparam("day", type_=TokenDailyUsage.__table__.c.day.type))
_COUNT_SCOPE = text(
    "INSERT INTO token_scope_usage (token_id, scope, method, last_used_at, requests)"
    " VALUES (:token_id, :scope, :method, :at, :n)"
    " ON CONFLICT (token_id, scope, method) DO UPDATE"
    " SET requests = token_scope_usage.requests + excluded.requests,"
    " last_used_at = CASE WHEN excluded.last_used_at > token_scope_usage.last_used_at"
    " THEN excluded.last_used_at ELSE token_scope_usage.last_used_at END"
).bindparams(bindparam("at", type_=UTCDateTime()))


@dataclass(frozen=True)
class Applied:
    requests: int  # requests counted by this batch (0 when it had been applied before)
    alerts: int  # anomalies and canary trips raised (events and notifications to dispatch)
    again: bool = False  # the batch had been applied before; nothing was written


def apply_batch(connection: Connection, tally: Tally, source: str, number: int) -> Applied:
    """Apply `tally` as batch `number` of `source` in one write transaction on `connection`."""
    with immediate_begin(connection):
        if connection.execute(_MARK, {"source": source, "batch": number, "now": clock.now()}).first() is None:
            return Applied(0, 0, again=True)
        return _apply(connection, tally)


def _apply(connection: Connection, tally: Tally) -> Applied:
    uses = sorted(tally.tokens.items())
    if uses:
        connection.execute(_COUNT_TOKEN, [{"token_id": token_id, "n": use.count, "at": use.last_at,
                                           "ip": use.last_ip} for token_id, use in uses])
    # The counts after this batch: whether a token had been used before, and which tokens exist
    # at all (a tally never names a token that does not, but a batch must not fail forever on it).
    counts = _counts(connection, set(tally.tokens) | {trip.token_id for trip in tally.trips})
    days = [{"org_id": organization_id, "token_id": token_id, "day": day, "n": n}
            for (token_id, day), (organization_id, n) in sorted(tally.days.items()) if token_id in counts]
    if days:
        connection.execute(_COUNT_DAY, days)
    new_networks = _count_networks(connection, tally, counts)
    scopes = [{"token_id": token_id, "scope": scope, "method": method, "at": use.last_at, "n": use.count}
              for (token_id, scope, method), use in sorted(tally.scopes.items()) if token_id in counts]
    if scopes:
        connection.execute(_COUNT_SCOPE, scopes)
    alerts = _raise_anomalies(connection, tally, counts, new_networks)
    alerts += _raise_canary_trips(connection, tally, counts)
    return Applied(sum(use.count for token_id, use in tally.tokens.items() if token_id in counts), alerts)


def _counts(connection: Connection, token_ids: set[int]) -> dict[int, int]:
    ordered = sorted(token_ids)
    counts: dict[int, int] = {}
    for start in range(0, len(ordered), CHUNK):
        counts.update((token_id, count) for token_id, count in
                      connection.execute(_COUNTS, {"ids": ordered[start:start + CHUNK]}))
    return counts


def _count_networks(connection: Connection, tally: Tally, counts: dict[int, int]) -> list[tuple[int, str]]:
    """Upsert the network rows; the (token, network) pairs whose row this batch created."""
    table = TokenNetwork.__table__
    rows = [{"organization_id": use.organization_id, "token_id": token_id, "network": network,
             "first_seen_at": use.first_at, "last_seen_at": use.last_at, "requests": use.count}
            for (token_id, network), use in sorted(tally.networks.items()) if token_id in counts]
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    created = []
    for start in range(0, len(rows), CHUNK):
        statement = dialect.insert(table).values(rows[start:start + CHUNK])
        excluded = statement.excluded
        statement = statement.on_conflict_do_update(index_elements=[table.c.token_id, table.c.network], set_={
            "requests": table.c.requests + excluded.requests,
            "first_seen_at": case((excluded.first_seen_at < table.c.first_seen_at, excluded.first_seen_at),
                                  else_=table.c.first_seen_at),
            "last_seen_at": case((excluded.last_seen_at > table.c.last_seen_at, excluded.last_seen_at),
                                 else_=table.c.last_seen_at),
        }).returning(table.c.token_id, table.c.network, table.c.requests)
        for token_id, network, requests in connection.execute(statement):
            # Only a row this batch created holds exactly this batch's requests.
            if requests == tally.networks[(token_id, network)].count:
                created.append((token_id, network))
    return created


def _raise_anomalies(connection: Connection, tally: Tally, counts: dict[int, int],
                     new_networks: list[tuple[int, str]]) -> int:
    by_token: dict[int, list[str]] = defaultdict(list)
    for token_id, network in new_networks:
        by_token[token_id].append(network)
    raised = 0
    for token_id, networks in sorted(by_token.items()):
        used_before = counts[token_id] - tally.tokens[token_id].count
        networks.sort(key=lambda network: tally.networks[(token_id, network)].first_position)
        token = None
        for network in networks:
            use = tally.networks[(token_id, network)]
            if used_before == 0 and use.first_position == 1:
                continue  # the token's very first request: a first use is no anomaly
            token = token or authn.find_token_by_id(connection, token_id)
            token_alerts.flag_new_network(connection, token, network, use.first_ip, use.first_at)
            raised += 1
    return raised


def _raise_canary_trips(connection: Connection, tally: Tally, counts: dict[int, int]) -> int:
    tokens = {}
    raised = 0
    for trip in sorted(tally.trips, key=lambda trip: trip.at):
        if trip.token_id not in counts:
            continue
        token = tokens.get(trip.token_id) or authn.find_token_by_id(connection, trip.token_id)
        tokens[trip.token_id] = token
        token_alerts.canary_used(connection, token, trip.ip, trip.user_agent, trip.path)
        raised += 1
    return raised


def forget_sources(connection: Connection, idle_since) -> int:
    """Drop the marks of sources idle since `idle_since` (processes long gone); how many."""
    table = UsageFlush.__table__
    with immediate_begin(connection):
        return connection.execute(table.delete().where(table.c.updated_at < idle_since)).rowcount
