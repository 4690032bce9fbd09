"""`GET /readyz`: whether this instance can do its whole job, part by part.

`/healthz` stays the liveness check (the database answers). `/readyz` also asks the task queue's
storage (the Huey SQLite file or Redis) and, when configured, the rate-limit Redis, and answers
`200 {"status": "ok", "checks": {...}}` or `503 {"status": "unavailable", "checks": {...}}` naming
each part `ok` or `unavailable` (never why: the log has that). A queue outage does not stop
requests (changes wait in the outbox), so a load balancer that routes by /readyz would take every
instance out for it; route by /healthz and alert on /readyz.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask, current_app, jsonify
from sqlalchemy import text

from shared.core import ratelimits
from shared.core.extensions import db
from shared.worker.queue import queue_for

log = logging.getLogger("keyward.readiness")
OK, UNAVAILABLE = "ok", "unavailable"


def database_ready() -> bool:
    try:
        db.session.execute(text("SELECT 1"))
        return True
    finally:
        db.session.rollback()


def queue_ready() -> bool:
    queue_for().huey.pending_count()  # a real read of the storage
    return True


def rate_limits_configured(app: Flask) -> bool:
    return not app.config["RATELIMIT_STORAGE_URI"].startswith("memory://")


def rate_limits_ready() -> bool:
    return bool(current_app.extensions[ratelimits.EXTENSION].check())


def _run(name: str, check: Callable[[], bool]) -> str:
    try:
        if check():
            return OK
        log.warning("readiness: %s unavailable", name)
    except Exception as error:
        log.warning("readiness: %s unavailable (%s)", name, type(error).__name__)
    return UNAVAILABLE


def init_app(app: Flask) -> None:
    @app.get("/readyz")
    def readyz():
        checks = {"database": _run("database", database_ready), "queue": _run("queue", queue_ready)}
        if rate_limits_configured(app):
            checks["rate_limits"] = _run("rate_limits", rate_limits_ready)
        ready = all(state == OK for state in checks.values())
        return jsonify({"status": OK if ready else UNAVAILABLE, "checks": checks}), 200 if ready else 503
