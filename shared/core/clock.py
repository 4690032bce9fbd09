"""The one source of "now", so expiry, grace periods and per-day counts are testable.

Production code calls `now()`. Tests install a controllable clock with `set_clock`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

_clock: Callable[[], datetime] | None = None


def now() -> datetime:
    return _clock() if _clock is not None else datetime.now(UTC)


def set_clock(clock: Callable[[], datetime] | None) -> None:
    """Install a clock (a callable returning an aware UTC datetime); None restores real time."""
    global _clock
    _clock = clock


class FrozenClock:
    """A clock that stands still until moved: `clock.advance(hours=1)`."""

    def __init__(self, start: datetime):
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta) -> datetime:
        from datetime import timedelta

        self.current = self.current + timedelta(**delta)
        return self.current
