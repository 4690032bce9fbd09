"""Usage tallies: what accepted API requests add to the counters, gathered off the database.

The API's hot path never writes to count. It adds each accepted request to a `Tally` — per token
(count, last time and address), per UTC day, per network, per scope × method — and each presented
canary to its list of trips. A flusher (shared/usage_flush.py) applies a whole tally in one
transaction, so a busy token costs one write per flush instead of one per request.

A tally lives in this process's memory (`LocalTallies`) or, with Redis configured, in a Redis
hash (shared/usage_redis.py) that every process adds to. Both build the same `Tally` for the
flusher.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import date, datetime

from flask import Flask

from shared.core import current

EXTENSION = "keyward.usage"


def accounting(app: Flask | None = None):
    """The app's usage accounting (shared.usage_flush.UsageAccounting): where requests are tallied."""
    return (app or current.app()).extensions[EXTENSION]


@dataclass(slots=True)
class TokenUse:
    organization_id: int
    count: int = 0
    last_at: datetime | None = None
    last_ip: str | None = None

    def seen(self, at: datetime, ip: str, count: int = 1) -> None:
        self.count += count
        if self.last_at is None or at >= self.last_at:
            self.last_at, self.last_ip = at, ip


@dataclass(slots=True)
class NetworkUse:
    organization_id: int
    count: int
    first_at: datetime
    last_at: datetime
    first_ip: str
    # The token's count within its tally when this network first appeared: orders a token's new
    # networks within one batch (several may arrive at the same instant), to tell the first use
    # of a new token from the anomalies after it.
    first_position: int


@dataclass(slots=True)
class ScopeUse:
    count: int
    last_at: datetime


@dataclass(frozen=True, slots=True)
class CanaryTrip:
    token_id: int
    at: datetime
    ip: str
    user_agent: str | None
    path: str


@dataclass
class Tally:
    tokens: dict[int, TokenUse] = field(default_factory=dict)
    days: dict[tuple[int, date], list[int]] = field(default_factory=dict)  # -> [organization_id, count]
    networks: dict[tuple[int, str], NetworkUse] = field(default_factory=dict)
    scopes: dict[tuple[int, str, str], ScopeUse] = field(default_factory=dict)
    trips: list[CanaryTrip] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.tokens or self.trips)

    @property
    def requests(self) -> int:
        return sum(use.count for use in self.tokens.values())

    def add_request(self, token_id: int, organization_id: int, at: datetime, ip: str, network: str,
                    right: tuple[str, str] | None) -> int:
        """One accepted request; returns the token's count in this tally (this request included)."""
        use = self.tokens.get(token_id)
        if use is None:
            use = self.tokens[token_id] = TokenUse(organization_id)
        use.seen(at, ip)
        day = self.days.get((token_id, at.date()))
        if day is None:
            self.days[(token_id, at.date())] = [organization_id, 1]
        else:
            day[1] += 1
        seen = self.networks.get((token_id, network))
        if seen is None:
            self.networks[(token_id, network)] = NetworkUse(organization_id, 1, at, at, ip, use.count)
        else:
            seen.count += 1
            seen.last_at = max(seen.last_at, at)
        if right is not None:
            scoped = self.scopes.get((token_id, *right))
            if scoped is None:
                self.scopes[(token_id, *right)] = ScopeUse(1, at)
            else:
                scoped.count += 1
                scoped.last_at = max(scoped.last_at, at)
        return use.count


class LocalTallies:
    """This process's tally, added to by request threads and taken whole by the flusher."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tally = Tally()

    def add_request(self, token_id: int, organization_id: int, at: datetime, ip: str, network: str,
                    right: tuple[str, str] | None) -> int:
        with self._lock:
            return self._tally.add_request(token_id, organization_id, at, ip, network, right)

    def add_trip(self, trip: CanaryTrip) -> None:
        with self._lock:
            self._tally.trips.append(trip)

    def pending(self, token_id: int) -> int:
        """Requests of this token not yet handed to the flusher."""
        with self._lock:
            use = self._tally.tokens.get(token_id)
            return use.count if use is not None else 0

    def take(self) -> Tally:
        """Everything gathered so far; requests from now on start a new tally."""
        with self._lock:
            taken, self._tally = self._tally, Tally()
        return taken
