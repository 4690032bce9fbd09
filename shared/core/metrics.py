"""Prometheus metrics: the metric objects every part of Keyward records into, and their exposition.

Serving them is off by default: `/metrics` exists only when KEYWARD_METRICS_TOKEN is set, and then
answers only a request carrying that value as a bearer token. Recording costs an increment, so the
objects below are always there and services observe them unconditionally; the per-request hook
(one labelled counter increment and one histogram observation) is installed only when serving is on.

Several processes: gunicorn's workers (and a worker's threads) each record into their own values.
With PROMETHEUS_MULTIPROC_DIR set in the environment before the processes start, prometheus_client
keeps every process's values in files there and an exposition adds them up (its multiprocess
mode); gunicorn.conf.py empties the folder at start and marks exited workers dead. Without it, one
process's values are served, which is right for a single process (`flask run`, the worker).

Labels are bounded sets: the URL rule (`/api/v1/tokens/<token_id>`, never the raw path), a known
HTTP method, the status code, error codes and outcome names from the code. Never a token, an id, an
address or anything a client chooses.
"""

from __future__ import annotations

import hmac
import os
import time

from flask import Flask, g, request
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# A `_created` timestamp series beside every counter and histogram doubles a scrape for nothing
# Prometheus uses.
disable_created_metrics()

CONTENT_TYPE = CONTENT_TYPE_LATEST
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # the endpoint label of a request no URL rule matched (404, 405)

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# --------------------------------------------------------------------------- web requests

HTTP_REQUESTS = Counter("keyward_http_requests", "HTTP requests answered, by URL rule, method and status",
                        ["endpoint", "method", "status"])
HTTP_DURATION = Histogram("keyward_http_request_duration_seconds",
                          "Time from the request's arrival in the app to its response, by URL rule",
                          ["endpoint"], buckets=_SECONDS)
AUTH_REFUSALS = Counter("keyward_api_auth_refusals", "API requests whose token was refused, by error code",
                        ["code"])
RATE_LIMITED = Counter("keyward_rate_limited_requests", "Requests answered 429, by URL rule", ["endpoint"])

# --------------------------------------------------------------------------- tokens

TOKEN_OPERATIONS = Counter("keyward_token_operations",
                           "Committed token lifecycle operations (created, regenerated, revoked, ...)",
                           ["operation"])
# Recorded by the usage flusher (tallies kept in memory or Redis and written in batches).
USAGE_FLUSH_LAG = Histogram("keyward_usage_flush_lag_seconds",
                            "Age of the oldest request counted in a usage flush when it was written",
                            buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0))
USAGE_FLUSH_BATCH = Histogram("keyward_usage_flush_batch_size", "Tokens written by one usage flush",
                              buckets=(1, 5, 10, 50, 100, 500, 1000, 5000, 10000))
USAGE_FLUSH_FAILURES = Counter("keyward_usage_flush_failures", "Usage flushes that failed (retried later)")

# --------------------------------------------------------------------------- background work

WEBHOOK_ATTEMPTS = Counter("keyward_webhook_deliveries",
                           "Webhook delivery attempts by result: succeeded, retrying (failed, tried again "
                           "later), failed (given up), superseded (finished by another worker meanwhile)",
                           ["result"])
WEBHOOK_LATENCY = Histogram("keyward_webhook_delivery_seconds",
                            "Duration of one webhook delivery attempt (connect, send, answer), by result",
                            ["result"], buckets=_SECONDS)
REMINDERS_SENT = Counter("keyward_reminders_sent", "Expiry reminders created (7 days, 1 day, expired)")
EMAILS_SENT = Counter("keyward_emails_sent", "Notification emails handed to the SMTP server")


def observe_webhook_attempt(result: str, seconds: float) -> None:
    WEBHOOK_ATTEMPTS.labels(result).inc()
    WEBHOOK_LATENCY.labels(result).observe(seconds)


def observe_usage_flush(tokens: int, lag_seconds: float) -> None:
    """One successful usage flush: how many tokens it wrote, how old its oldest count was."""
    USAGE_FLUSH_BATCH.observe(tokens)
    USAGE_FLUSH_LAG.observe(lag_seconds)


# --------------------------------------------------------------------------- exposition


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def exposition(*extra: CollectorRegistry) -> bytes:
    """The text format of every process's metrics (or this process's), then of `extra` registries
    (values computed at scrape time, e.g. queue depth)."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return b"".join([generate_latest(registry), *(generate_latest(r) for r in extra)])


def authorized(authorization: str | None, token: str | None) -> bool:
    """Whether an Authorization header carries the metrics bearer token (compared in constant time)."""
    if not token or not authorization:
        return False
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), token.encode())


def enabled(app: Flask) -> bool:
    return bool(app.config.get("KEYWARD_METRICS_TOKEN"))


# (endpoint, method, status) -> its counter and histogram series: finding a series through
# .labels() costs more than the increment itself, and every request needs one. Bounded, like the
# labels.
_request_series: dict[tuple[str, str, int], tuple] = {}


def _series(endpoint: str, method: str, status: int) -> tuple:
    key = (endpoint, method, status)
    series = _request_series.get(key)
    if series is None:
        series = _request_series[key] = (HTTP_REQUESTS.labels(endpoint, method, status),
                                         HTTP_DURATION.labels(endpoint))
    return series


def init_app(app: Flask) -> None:
    """Count every request by URL rule, method and status, and time it (only when metrics are on)."""
    if not enabled(app):
        return

    @app.after_request
    def count_request(response):
        rule = request.url_rule
        endpoint = rule.rule if rule is not None else UNMATCHED
        method = request.method if request.method in KNOWN_METHODS else "other"
        status = response.status_code
        requests, duration = _series(endpoint, method, status)
        requests.inc()
        started = g.get("request_started")
        if started is not None:
            duration.observe(time.perf_counter() - started)
        if status == 429:
            RATE_LIMITED.labels(endpoint).inc()
        refusal = g.get("auth_refusal")
        if refusal is not None:
            AUTH_REFUSALS.labels(refusal).inc()
        return response
