"""Log lines: text (the default) or, with KEYWARD_LOG_FORMAT=json, one JSON object per line for log
pipelines, every line naming the request id of the request it was written for.

In JSON mode the app writes one line per request itself (logger `keyward.request`: method, path
without the query string, status, duration_ms and the calling token's public id, never a secret),
and gunicorn's error log is JSON too (gunicorn.conf.py names `GunicornLogger`; it turns gunicorn's
access log off in JSON mode, since the app's request line replaces it). In text mode gunicorn's
access log stays as configured and the app writes no request line.

Nothing here logs headers, bodies or query strings: they may hold secrets.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from datetime import UTC, datetime

from flask import Flask, g, request

from shared.core import request_ids
from shared.core.config import parse_log_format

REQUEST_LOGGER = "keyward.request"
REQUEST_FIELDS = ("method", "path", "status", "duration_ms", "token_id")
TEXT_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(name)s [%(request_id)s] %(message)s"
TEXT_DATE_FORMAT = "[%Y-%m-%d %H:%M:%S %z]"  # gunicorn's
_HANDLER_MARK = "_keyward_handler"

request_log = logging.getLogger(REQUEST_LOGGER)


class RequestIdFilter(logging.Filter):
    """Gives every record passing a handler the current request id ("-" outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_ids.current() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, the request fields when
    the record has them, and the traceback of an exception."""

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": None if request_id in (None, "-") else request_id,
        }
        for field in REQUEST_FIELDS:
            if hasattr(record, field):
                entry[field] = getattr(record, field)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT, TEXT_DATE_FORMAT)


def install_root_handler(handler: logging.Handler, fmt: str, level: int = logging.INFO,
                         app_level: int | None = None) -> None:
    """Libraries' log lines from `level` and Keyward's own from `app_level` (default: the same)
    through `handler` in format `fmt`; replaces a handler installed here before, so calling it
    again does not double lines."""
    handler.setFormatter(formatter(fmt))
    handler.addFilter(RequestIdFilter())
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for previous in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(previous)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("keyward").setLevel(level if app_level is None else app_level)
    # The request line replaces gunicorn's access log in JSON mode: kept whatever the log level.
    request_log.setLevel(logging.INFO)


def configure(fmt: str, level: int = logging.INFO) -> None:
    """Log to stderr in `fmt` (the worker; gunicorn uses GunicornLogger)."""
    install_root_handler(logging.StreamHandler(sys.stderr), fmt, level)


def init_app(app: Flask) -> None:
    """In JSON mode, one line per request (after the response is made, with its status)."""
    if app.config.get("KEYWARD_LOG_FORMAT") != "json":
        return

    @app.after_request
    def log_request(response):
        started = g.get("request_started")
        token = g.get("authenticated_token")
        request_log.info("%s %s %s", request.method, request.path, response.status_code, extra={
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2) if started is not None else None,
            "token_id": getattr(token, "public_id", None),
        })
        return response


try:  # gunicorn is there in production; the app and the worker do not need it
    from gunicorn.glogging import Logger as _GunicornLogger
except ImportError:  # pragma: no cover
    _GunicornLogger = object


class GunicornLogger(_GunicornLogger):
    """gunicorn's logger, with its error log in KEYWARD_LOG_FORMAT (JSON lines in json mode) and the
    app's own log lines going where the error log goes, with their request ids."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        fmt = parse_log_format(os.environ.get("KEYWARD_LOG_FORMAT"))
        if fmt == "json":
            for handler in self.error_log.handlers:
                handler.setFormatter(JsonFormatter())
                handler.addFilter(RequestIdFilter())
        errorlog = cfg.errorlog
        handler = logging.StreamHandler(sys.stderr) if errorlog in (None, "-") else logging.FileHandler(errorlog)
        # Libraries' chatter at INFO (e.g. alembic's plugin set-up as each worker boots) is left out.
        install_root_handler(handler, fmt, max(self.loglevel, logging.WARNING), app_level=self.loglevel)
