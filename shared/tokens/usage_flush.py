"""Usage accounting off the request path: requests are tallied, a flusher writes the tallies.

An accepted API request adds to a tally (shared/usage_tally.py) — in this process's memory, or
in Redis in the rate limit's own round trip when the rate limits live there (shared/usage_redis.py)
— and a daemon thread per process applies what gathered, at most once every
KEYWARD_USAGE_FLUSH_SECONDS, as one batch in one transaction (shared/usage_batches.py). Counts stay
exact: each batch carries its source and number, and the database remembers the last number
applied per source, so a batch whose commit went unanswered is tried again as it is and never
counted twice. A batch that fails (database down) is kept whole and tried again first next time;
requests meanwhile go on into a new tally.

A graceful stop flushes: gunicorn's worker_exit hook (gunicorn.conf.py: SIGTERM, SIGINT, SIGQUIT,
a restart or a max_requests recycle), interpreter exit (atexit: the development server, the CLI),
and SIGTERM where nobody else handles it (the development server). What a process still holds
when it is killed (SIGKILL, out of memory) is lost: at most one interval of its own requests. With
Redis nothing is held in the process, so nothing is lost.

Tests build apps with TESTING set: no thread is started, and `flush_now(app)` runs the very same
flush on demand.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

from flask import Flask

from shared.core import clock, metrics, ratelimits
from shared.core.extensions import db
from shared.core.netaddr import network_of
from shared.tokens import authn, usage_batches, usage_redis
from shared.tokens.usage_tally import EXTENSION, CanaryTrip, LocalTallies, Tally, accounting

log = logging.getLogger("keyward.usage")
EXIT_ATTEMPTS = 3  # a stop that cannot reach the database tries this often, half a second apart
SOURCE_RETENTION = timedelta(days=30)  # marks of sources idle this long are dropped (the sweep)

_accountings: weakref.WeakSet[UsageAccounting] = weakref.WeakSet()
_exit_hooks_installed = False


@lru_cache(maxsize=4096)
def _network(address: str) -> str:
    return network_of(address)


@dataclass(frozen=True)
class _Batch:
    source: str
    number: int
    tally: Tally


class UsageAccounting:
    """One app's accounting in this process: what the request path calls, and the flusher."""

    def __init__(self, app: Flask):
        self.app = app
        self.interval = float(app.config["KEYWARD_USAGE_FLUSH_SECONDS"])
        storage = app.extensions[ratelimits.EXTENSION]
        self.redis = (usage_redis.RedisTallies(storage, app.config.get("RATELIMIT_KEY_PREFIX") or "keyward")
                      if usage_redis.supports(storage) else None)
        self.background = not app.testing
        # Called after a batch wrote alerts (events, notifications): the app wires the task queue's
        # poke here, so this module never imports the worker that drains it.
        self.on_alerts: Callable[[], None] | None = None
        self._start_lock = threading.Lock()
        self._new_process()

    def _new_process(self) -> None:
        """State of one process: a forked child starts with its own (see _after_fork)."""
        self.local = LocalTallies()
        self._flush_lock = threading.Lock()
        self._source = f"process:{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._numbers = 0
        self._in_hand: _Batch | None = None  # taken and not known to be applied (its commit failed)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------ the request path

    @property
    def refuses_failing(self) -> bool:
        """Whether `count_request` itself refuses an address over its failure limit: with Redis it
        reads that window in the round trip that counts (one round trip per request, not two)."""
        return self.redis is not None

    def count_request(self, token, client_ip: str, right: tuple[str, str] | None, failure_kind: str):
        """Count one request against the token's rate limit and, when within it, tally it as an
        accepted request (`right`: the scope × method it was allowed to use, if any). Returns the
        rate-limit state and the token as this request leaves it; raises RateLimited, also (see
        `refuses_failing`) for an address over its `failure_kind` failure limit."""
        now = clock.now()
        if self.redis is None:
            state = ratelimits.hit_token(token.id, token.plan)
            pending = self.local.add_request(token.id, token.organization_id, now, client_ip,
                                             _network(client_ip), right)
        else:
            window = ratelimits.token_window(token.id, token.plan)
            failures = ratelimits.failure_window(failure_kind, client_ip)
            count, pending = self.redis.hit_and_add(window.key, window.period, window.amount, failures.key,
                                                    failures.amount, token.id, token.organization_id, now,
                                                    client_ip, _network(client_ip), right)
            if count < 0:
                raise failures.refused()
            state = window.state(count)
        if self._thread is None and self.background:
            self._start()
        token.record_use(token.usage_count + pending, now, client_ip)
        return state, token

    def count_trip(self, token, client_ip: str, user_agent: str | None, path: str) -> None:
        """A canary was presented: tallied like a request, raised by the flusher."""
        trip = CanaryTrip(token.id, clock.now(), client_ip, user_agent, path[:300])
        if self.redis is None:
            self.local.add_trip(trip)
        else:
            self.redis.add_trip(trip)
        if self._thread is None and self.background:
            self._start()

    # ------------------------------------------------------------------ the flusher

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="keyward-usage-flusher", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except Exception:  # the flusher must outlive any one failure
                log.exception("usage flush failed; the tallies are kept for the next one")

    def flush(self, *, drain_now: bool = False) -> bool:
        """Apply what this process gathered (and, with Redis, drain it when it is this process's
        turn, or at once with `drain_now`). True when nothing taken is left unapplied."""
        with self._flush_lock:
            done = self._flush_local()
            if self.redis is not None:
                done = self._drain(drain_now) and done
            return done

    def _flush_local(self) -> bool:
        # The batch in hand first (one that failed before: retried as it is, under its number),
        # then what gathered since.
        for _ in range(2 if self._in_hand is not None else 1):
            if self._in_hand is None:
                tally = self.local.take()
                if not tally:
                    return True
                self._numbers += 1
                self._in_hand = _Batch(self._source, self._numbers, tally)
            if not self._apply(self._in_hand):
                return False
            self._in_hand = None
        return True

    def _drain(self, now: bool) -> bool:
        try:
            if not now and not self.redis.take_turn(self._source, int(self.interval * 1000)):
                return True
            epoch, numbers = self.redis.cut()
            for number in numbers:
                batch = _Batch(self.redis.source(epoch), number, self.redis.read(number))
                if not self._apply(batch):
                    return False
                self.redis.done(number)
        except Exception as error:
            log.warning("usage tallies in Redis not drained (%s: %s); next interval", type(error).__name__,
                        _reason(error))
            return False
        return True

    def _apply(self, batch: _Batch) -> bool:
        try:
            with self.app.app_context(), db.engine.connect() as connection:
                applied = usage_batches.apply_batch(connection, batch.tally, batch.source, batch.number)
        except Exception as error:
            log.warning("usage batch %s #%d (%d requests) not applied (%s: %s); kept for the next flush",
                        batch.source, batch.number, batch.tally.requests, type(error).__name__,
                        _reason(error))
            metrics.USAGE_FLUSH_FAILURES.inc()
            return False
        metrics.observe_usage_flush(len(batch.tally.tokens), _lag_seconds(batch.tally))
        if applied.alerts and self.on_alerts is not None:
            self.on_alerts()
        return True

    def close(self) -> bool:
        """Stop the thread and flush what is left, trying a few times; True when nothing was lost.
        A process that counted nothing (a CLI command) has nothing to write and leaves Redis alone."""
        thread = self._thread
        if thread is None:
            return True
        self._stop.set()
        if thread is not threading.current_thread():
            thread.join(timeout=max(5.0, 2 * self.interval))
        self._thread = None
        authn.give_back_connections(self.app)
        for attempt in range(EXIT_ATTEMPTS):
            # With Redis, whatever waits there too: the last process to stop leaves nothing behind.
            if self.flush(drain_now=True):
                return True
            if attempt + 1 < EXIT_ATTEMPTS:
                time.sleep(0.5)
        lost = self.local.take().requests + (self._in_hand.tally.requests if self._in_hand else 0)
        if lost:
            log.error("usage: %d counted requests of this process could not be written before it stopped",
                      lost)
        return lost == 0


def _lag_seconds(tally: Tally) -> float:
    """How long the batch's oldest request waited to be written (every request names its network)."""
    oldest = min((use.first_at for use in tally.networks.values()), default=None)
    return max(0.0, (clock.now() - oldest).total_seconds()) if oldest is not None else 0.0


def _reason(error: Exception) -> str:
    """The driver's own words, first line (not SQLAlchemy's statement and parameters)."""
    return str(getattr(error, "orig", None) or error).strip().split("\n", 1)[0][:200]


# --------------------------------------------------------------------------- the app and the process


def init_app(app: Flask) -> UsageAccounting:
    usage = UsageAccounting(app)
    app.extensions[EXTENSION] = usage
    _accountings.add(usage)
    if usage.background:
        _install_exit_hooks()
    return usage


def flush_now(app: Flask) -> bool:
    """Flush this app's tallies now, Redis's included (tests, the worker's sweep)."""
    return accounting(app).flush(drain_now=True)


def flush_all() -> None:
    """Flush every app of this process before it stops (gunicorn's worker_exit, atexit)."""
    for usage in [usage for usage in _accountings if usage.background]:
        try:
            usage.close()
        except Exception:  # exiting: say so and let the others flush
            log.exception("usage flush at exit failed")


def sweep(app: Flask) -> None:
    """The worker's minute: drain Redis even when no web process runs, and forget the marks of
    processes long gone (each web process leaves one row)."""
    flush_now(app)
    with app.app_context(), db.engine.connect() as connection:
        usage_batches.forget_sources(connection, clock.now() - SOURCE_RETENTION)


def _install_exit_hooks() -> None:
    global _exit_hooks_installed
    if _exit_hooks_installed:
        return
    _exit_hooks_installed = True
    atexit.register(flush_all)
    # SIGTERM ends a bare Python process without running atexit. Where nobody handles it yet (the
    # development server; gunicorn installs its own before it loads the app), make it a normal exit.
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)


def _after_fork() -> None:
    # A forked child (gunicorn --preload) inherits tallies and locks it must not share: start over.
    for usage in list(_accountings):
        usage._new_process()


os.register_at_fork(after_in_child=_after_fork)
