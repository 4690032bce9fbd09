"""Rate limits: per token by plan, and on failed authentication and login per client address.

Built on `limits` (the library under Flask-Limiter) storage named by RATELIMIT_STORAGE_URI
(memory:// by default, redis://… when several processes or machines must share the counts), with
fixed windows aligned to the clock: a window's key names its start, so one atomic increment both
counts the request and tells what remains, and the reset time is known without asking (one round
trip to Redis per check, where the library's strategy takes two or three). We do not use Flask-Limiter itself: nothing is limited by route,
every check is explicit (the per-token one runs exactly where the order of checks puts it, after the IP
allowlist), and its before/after-request hooks cost about 0.1 ms on every request (bench/).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from dataclasses import dataclass
from functools import cache, lru_cache

from flask import Flask
from limits import RateLimitItem, parse
from limits.storage import Storage, storage_from_string

from shared.core import clock, current
from shared.core.errors import ServiceError
from shared.core.window_counters import WindowCounters

EXTENSION = "keyward.ratelimits"
FAILING_MESSAGE = "Too many failed attempts; retry later"


def init_app(app: Flask) -> None:
    uri = app.config["RATELIMIT_STORAGE_URI"]
    # In memory, our own counters: `limits`' MemoryStorage starts a thread every 10 ms (window_counters.py).
    app.extensions[EXTENSION] = WindowCounters() if uri.startswith("memory://") else storage_from_string(uri)


def _storage() -> Storage | WindowCounters:
    return current.app().extensions[EXTENSION]


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
        return max(1, math.ceil(self.reset - window_now()))


def window_now() -> float:
    """Now in unix seconds, for the windows: the app's clock (real time unless one is installed), so
    tests can hold the window a request falls in still. The storage's own expiry stays real."""
    return clock.now().timestamp()


@dataclass(frozen=True, slots=True)
class _Shape:
    """What the keys of one limit's windows for one kind of bucket are made of: the key is
    `<front><bucket><back><window start>`, as `limits`' `item.key_for(prefix, kind, bucket)` makes
    it plus the start, without its per-call conversions (every API request builds two)."""

    amount: int
    period: int
    front: str
    back: str


@lru_cache(maxsize=1024)
def _shape(limit_text: str, key_prefix: str, kind: str) -> _Shape:
    item = _parse(limit_text)
    return _Shape(item.amount, item.get_expiry(), f"{item.namespace}/{key_prefix}/{kind}/",
                  f"/{item.amount}/{item.multiples}/{item.GRANULARITY.name}/")


def _window(limit_text: str, kind: str, bucket: str) -> tuple[_Shape, str, int]:
    """The current window of this limit and bucket: its shape, its storage key and its end."""
    # One prefix for every Keyward bucket, so instances sharing a Redis can be kept apart.
    shape = _shape(limit_text, current.app().config.get("RATELIMIT_KEY_PREFIX") or "keyward", kind)
    start = int(window_now() // shape.period * shape.period)
    return shape, f"{shape.front}{bucket}{shape.back}{start}", start + shape.period


def _hit(limit_text: str, kind: str, bucket: str) -> RateState:
    shape, key, reset = _window(limit_text, kind, bucket)
    count = _storage().incr(key, shape.period)
    state = RateState(limit=shape.amount, remaining=max(0, shape.amount - count), reset=reset)
    if count > shape.amount:
        raise RateLimited(f"Rate limit of {limit_text} exceeded; retry later", state)
    return state


def token_limit_for(plan: str) -> str:
    limits = current.app().config["KEYWARD_RATE_LIMITS"]
    return limits.get(plan) or limits.get("free") or "60/minute"


def hit_token(token_id: int, plan: str) -> RateState:
    """Count one request against the token's per-plan limit; raises RateLimited when over."""
    return _hit(token_limit_for(plan), "token", str(token_id))


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs twice as much, made twice per request
class Window:
    """A token's current window, for a caller that increments it itself (the usage tally rides in
    the same Redis round trip): `key` as the storage names it, its length and its end."""

    limit_text: str
    amount: int
    key: str
    period: int
    reset: int

    def state(self, count: int) -> RateState:
        """The state after the increment that returned `count`; raises RateLimited when over."""
        state = RateState(limit=self.amount, remaining=max(0, self.amount - count), reset=self.reset)
        if count > self.amount:
            raise RateLimited(f"Rate limit of {self.limit_text} exceeded; retry later", state)
        return state

    def refused(self) -> RateLimited:
        """The refusal of a failure window found full (as `refuse_if_failing` raises it)."""
        return RateLimited(FAILING_MESSAGE, RateState(limit=self.amount, remaining=0, reset=self.reset))


def _window_of(limit_text: str, kind: str, bucket: str) -> Window:
    shape, key, reset = _window(limit_text, kind, bucket)
    prefixed = getattr(_storage(), "prefixed_key", None)
    return Window(limit_text, shape.amount, prefixed(key) if prefixed else key, shape.period, reset)


def token_window(token_id: int, plan: str) -> Window:
    return _window_of(token_limit_for(plan), "token", str(token_id))


def _failure_limit(kind: str) -> str:
    """KEYWARD_<KIND>_FAILURE_LIMIT: failures allowed per bucket of that kind."""
    return current.app().config[f"KEYWARD_{kind.upper()}_FAILURE_LIMIT"]


def failure_window(kind: str, bucket: str) -> Window:
    """The window `refuse_if_failing` reads, for a caller that reads it in a round trip of its own
    (the usage tally's, which then refuses the request before counting it)."""
    return _window_of(_failure_limit(kind), f"{kind}-failures", bucket)


def storage() -> Storage | WindowCounters:
    """The app's rate-limit storage (`limits`), to tell Redis from the in-process default."""
    return _storage()


def hit_address(kind: str, address: str) -> RateState:
    """Count one request of an unauthenticated endpoint per client address (KEYWARD_<KIND>_LIMIT)."""
    return _hit(current.app().config[f"KEYWARD_{kind.upper()}_LIMIT"], kind, address)


def _test(limit_text: str, kind: str, bucket: str) -> RateState | None:
    """The state when this bucket is exhausted (refuse), else None. Does not count."""
    shape, key, reset = _window(limit_text, kind, bucket)
    if _storage().get(key) < shape.amount:
        return None
    return RateState(limit=shape.amount, remaining=0, reset=reset)


def bucket_name(text: str) -> str:
    """A fixed-length bucket name for free text (an email as typed): nothing personal is stored
    in the limit storage, and a long value cannot make a long key."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def refuse_if_failing(kind: str, bucket: str) -> None:
    """Throttle guessing: a bucket (a client address, an account) with too many recent failures
    is refused before any check. KEYWARD_<KIND>_FAILURE_LIMIT sets the limit."""
    state = _test(_failure_limit(kind), f"{kind}-failures", bucket)
    if state is not None:
        raise RateLimited(FAILING_MESSAGE, state)


def count_failure(kind: str, bucket: str) -> None:
    with contextlib.suppress(RateLimited):
        _hit(_failure_limit(kind), f"{kind}-failures", bucket)
