"""The task queue: one Huey per app, and its two jobs.

Storage comes from KEYWARD_QUEUE_URL: `sqlite:///path` (the default, instance/queue.db) or
`redis://…`. The jobs are thin; each runs in an app context and calls services:

- `dispatch`: deliver undispatched events (events.dispatch_pending, where webhooks will hang) and
  email unsent notifications (mailer.send_pending). Under the consumer, webhook deliveries are
  sent by the worker's delivery threads (webhooks.pool), which the job only wakes, so a receiver
  that hangs never holds up the queue; `worker --once` sends them itself before it returns;
- `sweep`, every minute: usage tallies waiting in Redis (usage_flush.sweep), expiry reminders (reminders.send_expiry_reminders), the unused-token
  policy (dormant.deactivate_unused), forgetting exchanged OIDC tokens that expired
  (publishers.forget_used_jtis), then a dispatch of
  whatever is left. That is what makes the outbox survive a queue outage: events and
  notifications are rows committed with their cause, and the next sweep finds any that no
  `dispatch` job picked up.

A commit that wrote events or notifications (events.OUTBOX_FLAG in session.info) enqueues
`dispatch` right after it commits. If the queue storage is unreachable the request still
succeeds: a warning is logged and the rows wait for the sweep.
"""

from __future__ import annotations

import contextvars
import logging
import signal
import threading
from collections.abc import Callable
from functools import wraps
from pathlib import Path

from flask import Flask, current_app, has_app_context
from huey import RedisHuey, SqliteHuey, crontab
from huey.api import Huey
from redis import ConnectionPool
from sqlalchemy import event as orm_event
from sqlalchemy.orm import Session

from shared.core import metrics
from shared.core.config import ConfigError
from shared.events import outbox
from shared.notifications import mailer
from shared.publishers import service as publishers
from shared.tokens import dormant, reminders, usage_flush
from shared.webhooks import delivery
from shared.webhooks.pool import DeliveryPool

log = logging.getLogger("keyward.queue")
EXTENSION = "keyward.queue"
SQLITE_PREFIX = "sqlite:///"
REDIS_PREFIXES = ("redis://", "rediss://", "unix://")
# Set while a job runs: a job's own commits do not enqueue another dispatch (it dispatches itself).
_in_job = contextvars.ContextVar("keyward_in_job", default=False)


# --------------------------------------------------------------------------- the jobs' work


def _start_deliveries(event) -> None:
    """The outbox's one consumer: webhook delivery rows for the endpoints that want this event."""
    delivery.add_deliveries(event)


def dispatch_outbox() -> None:
    """Everything written for the outside world and not yet handed over."""
    outbox.dispatch_pending(_start_deliveries)
    pool = queue_for().delivery_pool
    if pool is not None:
        pool.wake()
    else:
        delivery.deliver_due()
    metrics.EMAILS_SENT.inc(mailer.send_pending())


def sweep() -> None:
    # Usage tallies first (Redis's, even when no web process drains it): the unused-token policy
    # reads last_used_at.
    usage_flush.sweep(current_app._get_current_object())
    metrics.REMINDERS_SENT.inc(reminders.send_expiry_reminders())
    dormant.deactivate_unused()
    publishers.forget_used_jtis()
    dispatch_outbox()


# --------------------------------------------------------------------------- the queue


def _check_url(url: str) -> None:
    if not (url.startswith(SQLITE_PREFIX) or url.startswith(REDIS_PREFIXES)):
        raise ConfigError("KEYWARD_QUEUE_URL must be sqlite:///path or redis://host:port/db")


def _open_storage(url: str, name: str) -> Huey:
    if url.startswith(SQLITE_PREFIX):
        path = Path(url[len(SQLITE_PREFIX):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteHuey(name, filename=str(path), results=False)
    # Short timeouts: an unreachable Redis must fail a request's enqueue quickly, not hang it.
    pool = ConnectionPool.from_url(url, socket_connect_timeout=2, socket_timeout=10)
    return RedisHuey(name, connection_pool=pool, results=False)


class TaskQueue:
    """The app's Huey and its jobs. The storage is opened at first use, so an unreachable queue
    never stops the web app from starting."""

    def __init__(self, app: Flask):
        self.app = app
        self.url = app.config["KEYWARD_QUEUE_URL"]
        self.name = app.config.get("KEYWARD_QUEUE_NAME", "keyward")
        _check_url(self.url)
        self._huey: Huey | None = None
        self._lock = threading.Lock()
        self.delivery_pool: DeliveryPool | None = None  # while the consumer runs

    @property
    def huey(self) -> Huey:
        with self._lock:
            if self._huey is None:
                huey = _open_storage(self.url, self.name)
                self.dispatch_job = huey.task(name="dispatch")(self._in_app(dispatch_outbox))
                self.sweep_job = huey.periodic_task(crontab(minute="*"), name="sweep")(self._in_app(sweep))
                self._huey = huey
            return self._huey

    def _in_app(self, work: Callable[[], None]) -> Callable[[], None]:
        @wraps(work)
        def job() -> None:
            marker = _in_job.set(True)
            try:
                with self.app.app_context():
                    work()
            finally:
                _in_job.reset(marker)

        return job

    def poke(self) -> bool:
        """Enqueue a dispatch; False (and a warning) when the queue storage is unreachable."""
        try:
            self.huey  # noqa: B018 - opens the storage and registers the jobs
            self.dispatch_job()
        except Exception as error:
            log.warning("queue unavailable, dispatch not enqueued (%s); the next sweep delivers it",
                        type(error).__name__)
            return False
        return True

    def run_once(self) -> bool:
        """Every queued and due job, then one sweep (`worker --once`). False when the queue
        storage could not be read (the sweep still runs: it works from the database)."""
        reachable = True
        try:
            huey = self.huey
            for task in huey.read_schedule():
                huey.enqueue(task)
            while (task := huey.dequeue()) is not None:
                huey.execute(task)
        except Exception as error:
            log.warning("queue unavailable (%s); sweeping from the database only", type(error).__name__)
            reachable = False
        self._in_app(sweep)()
        return reachable

    def run_consumer(self, workers: int = 1) -> None:
        """The Huey consumer with the periodic sweep, until SIGINT or SIGTERM (both graceful:
        the job in hand finishes, within the shutdown timeout)."""
        consumer = self.huey.create_consumer(workers=workers, worker_type="thread", periodic=True,
                                             max_delay=2.0, shutdown_timeout=30)
        # Huey stops at once on SIGTERM (a job could be cut between claiming an email and sending
        # it); make it finish the job in hand as on SIGINT. A second signal still stops at once.
        consumer._signal_actions[signal.SIGTERM] = (False, True)
        self.delivery_pool = DeliveryPool(self.app, delivery.concurrency()).start()
        try:
            consumer.run()
        finally:
            pool, self.delivery_pool = self.delivery_pool, None
            pool.stop()


def init_app(app: Flask) -> TaskQueue:
    queue = TaskQueue(app)
    app.extensions[EXTENSION] = queue
    return queue


def queue_for(app: Flask | None = None) -> TaskQueue:
    return (app or current_app).extensions[EXTENSION]


# --------------------------------------------------------------------------- the outbox poke


@orm_event.listens_for(Session, "after_commit")
def _enqueue_dispatch_after_commit(session: Session) -> None:
    if not session.info.pop(outbox.OUTBOX_FLAG, False):
        return
    if _in_job.get() or not has_app_context():
        return
    queue = current_app.extensions.get(EXTENSION)
    if queue is not None:
        queue.poke()


@orm_event.listens_for(Session, "after_rollback")
def _forget_outbox_after_rollback(session: Session) -> None:
    session.info.pop(outbox.OUTBOX_FLAG, None)
