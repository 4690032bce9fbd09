"""Rate limits: per token by plan, and on failed authentication and login per client address.

Built on `limits` (the library under Flask-Limiter) storage named by RATELIMIT_STORAGE_URI
(memory:// by default, redis://… when several processes or machines must share the counts), with
fixed windows aligned to the clock: a window's key names its start, so one atomic increment both
counts the request and tells what remains, and the reset time is known without asking (one round
trip to Redis per check, where the library's strategy takes two or three). We do not use Flask-Limiter itself: nothing is limited by route,
every check is explicit (the per-token one runs exactly where SPEC 5 puts it, after the IP
allowlist), and its before/after-request hooks cost about 0.1 ms on every request (bench/).
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from functools import cache

from flask import Flask, current_app
from limits import RateLimitItem, parse
from limits.storage import Storage, storage_from_string

from shared.core.errors import ServiceError

EXTENSION = "keyward.ratelimits"


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION] = storage_from_string(app.config["RATELIMIT_STORAGE_URI"])


def _storage() -> Storage:
    return current_app.extensions[EXTENSION]


@cache
def _parse(limit_text: str) -> RateLimitItem:
    return parse(limit_text)


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
    # One prefix for every Keyward bucket, so instances sharing a Redis can be kept apart.
    return (current_app.config.get("RATELIMIT_KEY_PREFIX") or "keyward", *identifiers)


def _window(item: RateLimitItem, identifiers: tuple[str, ...]) -> tuple[str, int, int]:
    """The current window of this limit and bucket: its storage key, its length and its end."""
    period = item.get_expiry()
    start = int(time.time() // period * period)
    return f"{item.key_for(*_key(*identifiers))}/{start}", period, start + period


def _hit(limit_text: str, *identifiers: str) -> RateState:
    item = _parse(limit_text)
    key, period, reset = _window(item, identifiers)
    count = _storage().incr(key, period)
    state = RateState(limit=item.amount, remaining=max(0, item.amount - count), reset=reset)
    if count > item.amount:
        raise RateLimited(f"Rate limit of {limit_text} exceeded; retry later", state)
    return state


def token_limit_for(plan: str) -> str:
    limits = current_app.config["KEYWARD_RATE_LIMITS"]
    return limits.get(plan) or limits.get("free") or "60/minute"


def hit_token(token_id: int, plan: str) -> RateState:
    """Count one request against the token's per-plan limit; raises RateLimited when over."""
    return _hit(token_limit_for(plan), "token", str(token_id))


def hit_address(kind: str, address: str) -> RateState:
    """Count one request of an unauthenticated endpoint per client address (KEYWARD_<KIND>_LIMIT)."""
    return _hit(current_app.config[f"KEYWARD_{kind.upper()}_LIMIT"], kind, address)


def _test(limit_text: str, *identifiers: str) -> RateState | None:
    """The state when this bucket is exhausted (refuse), else None. Does not count."""
    item = _parse(limit_text)
    key, _, reset = _window(item, identifiers)
    if _storage().get(key) < item.amount:
        return None
    return RateState(limit=item.amount, remaining=0, reset=reset)


def bucket_name(text: str) -> str:
    """A fixed-length bucket name for free text (an email as typed): nothing personal is stored
    in the limit storage, and a long value cannot make a long key."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def refuse_if_failing(kind: str, bucket: str) -> None:
    """Throttle guessing: a bucket (a client address, an account) with too many recent failures
    is refused before any check. KEYWARD_<KIND>_FAILURE_LIMIT sets the limit."""
    limit_text = current_app.config[f"KEYWARD_{kind.upper()}_FAILURE_LIMIT"]
    state = _test(limit_text, f"{kind}-failures", bucket)
    if state is not None:
        raise RateLimited("Too many failed attempts; retry later", state)


def count_failure(kind: str, bucket: str) -> None:
    limit_text = current_app.config[f"KEYWARD_{kind.upper()}_FAILURE_LIMIT"]
    try:
        _hit(limit_text, f"{kind}-failures", bucket)
    except RateLimited:
        pass
