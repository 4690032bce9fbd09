"""Rate limits: per token by plan, and on failed authentication and login per client address.

Flask-Limiter owns the storage (memory:// or Redis from RATELIMIT_STORAGE_URI); we call its
strategy directly so the per-token check runs exactly where SPEC 5 puts it (after the IP
allowlist, before the endpoint's scope checks).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from flask import current_app
from limits import parse

from shared.errors import ServiceError
from shared.extensions import limiter


class RateLimited(ServiceError):
    status, code = 429, "rate_limited"

    def __init__(self, message: str, state: RateState):
        super().__init__(message)
        self.state = state


@dataclass(frozen=True)
class RateState:
    limit: int
    remaining: int
    reset: int  # unix seconds when the window resets

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.reset - time.time()))


def _key(*identifiers: str) -> tuple[str, ...]:
    # Flask-Limiter applies RATELIMIT_KEY_PREFIX only to its decorators; we call the strategy directly.
    return (current_app.config.get("RATELIMIT_KEY_PREFIX") or "keyward", *identifiers)


def _hit(limit_text: str, *identifiers: str) -> RateState:
    item = parse(limit_text)
    identifiers = _key(*identifiers)
    strategy = limiter.limiter
    allowed = strategy.hit(item, *identifiers)
    stats = strategy.get_window_stats(item, *identifiers)
    state = RateState(limit=item.amount, remaining=max(0, stats.remaining), reset=math.ceil(stats.reset_time))
    if not allowed:
        raise RateLimited(f"Rate limit of {limit_text} exceeded; retry later", state)
    return state


def token_limit_for(plan: str) -> str:
    limits = current_app.config["KEYWARD_RATE_LIMITS"]
    return limits.get(plan) or limits.get("free") or "60/minute"


def hit_token(token_id: int, plan: str) -> RateState:
    """Count one request against the token's per-plan limit; raises RateLimited when over."""
    return _hit(token_limit_for(plan), "token", str(token_id))


def _test(limit_text: str, *identifiers: str) -> RateState | None:
    """The state when this bucket is exhausted (refuse), else None. Does not count."""
    item = parse(limit_text)
    identifiers = _key(*identifiers)
    if limiter.limiter.test(item, *identifiers):
        return None
    stats = limiter.limiter.get_window_stats(item, *identifiers)
    return RateState(limit=item.amount, remaining=0, reset=math.ceil(stats.reset_time))


def refuse_if_failing(kind: str, address: str) -> None:
    """Throttle guessing: an address with too many recent failures is refused before any check."""
    limit_text = current_app.config[f"KEYWARD_{kind.upper()}_FAILURE_LIMIT"]
    state = _test(limit_text, f"{kind}-failures", address)
    if state is not None:
        raise RateLimited("Too many failed attempts from this address; retry later", state)


def count_failure(kind: str, address: str) -> None:
    limit_text = current_app.config[f"KEYWARD_{kind.upper()}_FAILURE_LIMIT"]
    try:
        _hit(limit_text, f"{kind}-failures", address)
    except RateLimited:
        pass
