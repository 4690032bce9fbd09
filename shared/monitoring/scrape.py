"""The metrics endpoints: `/metrics` on the web app and, in `flask worker`, the worker's own.

Both exist only when KEYWARD_METRICS_TOKEN is set (the web app's `/metrics` is a 404 otherwise)
and answer only `Authorization: Bearer <that token>` (401 otherwise). They serve the recorded
metrics (shared.core.metrics) and a few values read at scrape time, the same whichever instance
is asked (so use max() across instances, never sum()):

- keyward_queue_depth: jobs waiting in the task queue; keyward_queue_reachable: 1 or 0;
- keyward_outbox_pending_events: events committed and not yet dispatched;
- keyward_webhook_deliveries_due / keyward_webhook_oldest_due_seconds: deliveries waiting for a
  free delivery thread (or their endpoint), and how long the oldest has been waiting.

The worker's endpoint (KEYWARD_WORKER_METRICS_BIND=host:port) matters because deliveries,
reminders and emails are counted in the worker process, which the web app's /metrics does not
see unless both share a PROMETHEUS_MULTIPROC_DIR on one machine.
"""

from __future__ import annotations

import logging
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from flask import Flask, Response, request
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from shared.core import clock, metrics
from shared.core.config import ConfigError
from shared.core.extensions import db
from shared.models import DeliveryStatus, Event, WebhookDelivery
from shared.worker.queue import queue_for

log = logging.getLogger("keyward.metrics")
REALM = 'Bearer realm="keyward-metrics"'


class BacklogCollector:
    """Values read when scraped: what is waiting, in the queue, the outbox and the deliveries.
    Collected inside an app context."""

    def __init__(self, app: Flask):
        self.app = app

    def collect(self):
        depth = GaugeMetricFamily("keyward_queue_depth", "Jobs waiting in the task queue")
        reachable = GaugeMetricFamily("keyward_queue_reachable", "1 when the task queue storage answered")
        try:
            depth.add_metric([], queue_for(self.app).huey.pending_count())
            reachable.add_metric([], 1)
        except Exception as error:
            log.warning("metrics: queue unavailable (%s)", type(error).__name__)
            reachable.add_metric([], 0)
        yield from (depth, reachable)

        now = clock.now()
        try:
            pending = db.session.scalar(select(func.count()).select_from(Event).where(Event.dispatched_at.is_(None)))
            due, oldest = db.session.execute(
                select(func.count(), func.min(WebhookDelivery.next_attempt_at))
                .where(WebhookDelivery.status == DeliveryStatus.PENDING, WebhookDelivery.next_attempt_at <= now)).one()
        except SQLAlchemyError as error:  # the other metrics matter most while the database is down
            log.warning("metrics: database unavailable (%s)", type(error).__name__)
            return
        finally:
            db.session.rollback()
        yield GaugeMetricFamily("keyward_outbox_pending_events", "Events committed and not yet dispatched",
                                value=pending)
        yield GaugeMetricFamily("keyward_webhook_deliveries_due",
                                "Webhook deliveries due and not yet taken by a delivery thread", value=due)
        age = (now - oldest).total_seconds() if oldest is not None else 0.0  # min() keeps the column's type
        yield GaugeMetricFamily("keyward_webhook_oldest_due_seconds",
                                "How long the oldest due webhook delivery has been waiting", value=age)


def backlog_registry(app: Flask) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BacklogCollector(app))
    return registry


def _refused() -> Response:
    return Response("Unauthorized\n", 401, {"WWW-Authenticate": REALM, "Content-Type": "text/plain; charset=utf-8"})


def init_app(app: Flask) -> None:
    if not metrics.enabled(app):
        return
    backlog = backlog_registry(app)

    @app.get("/metrics")
    def metrics_view():
        if not metrics.authorized(request.headers.get("Authorization"), app.config["KEYWARD_METRICS_TOKEN"]):
            return _refused()
        return Response(metrics.exposition(backlog), 200, {"Content-Type": metrics.CONTENT_TYPE})


# --------------------------------------------------------------------------- the worker's endpoint


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args) -> None:  # scrapes are not worth a log line each
        pass


def worker_metrics_app(app: Flask):
    """A WSGI app serving GET /metrics for the worker process (no Flask routing, no sessions)."""
    token = app.config["KEYWARD_METRICS_TOKEN"]
    backlog = backlog_registry(app)

    def serve(environ, start_response):
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"Not found\n"]
        if not metrics.authorized(environ.get("HTTP_AUTHORIZATION"), token):
            start_response("401 Unauthorized", [("Content-Type", "text/plain; charset=utf-8"),
                                                ("WWW-Authenticate", REALM)])
            return [b"Unauthorized\n"]
        with app.app_context():
            body = metrics.exposition(backlog)
        start_response("200 OK", [("Content-Type", metrics.CONTENT_TYPE), ("Cache-Control", "no-store")])
        return [body]

    return serve


def parse_bind(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError("KEYWARD_WORKER_METRICS_BIND must be host:port, e.g. 127.0.0.1:9464")
    return host.strip("[]"), int(port)


def serve_worker_metrics(app: Flask) -> WSGIServer | None:
    """Start the worker's metrics endpoint in a thread when KEYWARD_WORKER_METRICS_BIND is set."""
    bind = app.config.get("KEYWARD_WORKER_METRICS_BIND")
    if not bind:
        return None
    if not metrics.enabled(app):
        raise ConfigError("KEYWARD_WORKER_METRICS_BIND needs KEYWARD_METRICS_TOKEN (its bearer token)")
    host, port = parse_bind(bind)
    server = make_server(host, port, worker_metrics_app(app), handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="keyward-metrics", daemon=True).start()
    return server
