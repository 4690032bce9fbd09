"""Rate-limit counters in this process's memory (RATELIMIT_STORAGE_URI=memory://).

The rate limits use clock-aligned fixed windows whose key names the window's start, so a counter
only ever goes up until its window ends and is then never read again. That needs a dict and a
lock, nothing more. `limits`' own MemoryStorage does more: it starts a timer thread every 10 ms to
expire keys, which cost every API request about a tenth of its time on a busy two-core machine
(bench/micro.py). Expired windows are dropped here in passing, at most once a second.

Same interface as the part of `limits.storage.Storage` that shared/ratelimits.py uses: `incr`
and `get`.
"""

from __future__ import annotations

import threading
import time

SWEEP_EVERY = 1.0  # seconds between drops of ended windows


class WindowCounters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, list] = {}  # key -> [count, expires at (monotonic seconds)]
        self._next_sweep = time.monotonic() + SWEEP_EVERY

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = time.monotonic()
        with self._lock:
            if now >= self._next_sweep:
                self._sweep(now)
            entry = self._counts.get(key)
            if entry is None or entry[1] <= now:
                entry = self._counts[key] = [0, now + expiry]
            entry[0] += amount
            return entry[0]

    def get(self, key: str) -> int:
        entry = self._counts.get(key)
        return entry[0] if entry is not None and entry[1] > time.monotonic() else 0

    def _sweep(self, now: float) -> None:
        self._counts = {key: entry for key, entry in self._counts.items() if entry[1] > now}
        self._next_sweep = now + SWEEP_EVERY
