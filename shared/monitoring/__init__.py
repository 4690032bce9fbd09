"""Operating Keyward: readiness (/readyz), the metrics endpoints (/metrics on the web app, and the
worker's own when KEYWARD_WORKER_METRICS_BIND is set), and counters taken from committed changes."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from shared.monitoring import readiness, scrape, token_operations  # noqa: F401  (listeners register on import)

    readiness.init_app(app)
    scrape.init_app(app)
