"""Request ids: every response carries `X-Request-Id`, and the error bodies and log lines of that
request name it, so "request id 3f2a…" in a user's report leads to its log lines.

An id arriving with the request is kept only behind trusted proxies (KEYWARD_TRUSTED_PROXIES > 0:
the load balancer then made it or passed it on, so the whole path logs one id) and only when it
looks like an id (at most 64 of [A-Za-z0-9._-]): a client must not be able to write arbitrary text
into the logs. Otherwise a fresh random id is made.
"""

from __future__ import annotations

import random
import re
import time

from flask import Flask, has_request_context

from shared.core import current as serving  # by another name: this module's own current() is public
from shared.core import http_headers

HEADER = "X-Request-Id"
_LOOKS_LIKE_AN_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _incoming() -> str | None:
    if serving.app().config.get("KEYWARD_TRUSTED_PROXIES", 0) <= 0:
        return None
    value = serving.request().headers.get(HEADER)
    return value if value and _LOOKS_LIKE_AN_ID.fullmatch(value) else None


def _fresh_id() -> str:
    # 32 hex digits. An id names a request in the logs and need not be unguessable, so the
    # process's random generator (reseeded in every forked worker), not a system call per request.
    return f"{random.getrandbits(128):032x}"


def current() -> str | None:
    """The id of the request being served (made on first use), or None outside a request."""
    if not has_request_context():
        return None
    state = serving.g()
    request_id = state.get("request_id")
    if request_id is None:
        request_id = state.request_id = _incoming() or _fresh_id()
    return request_id


def init_app(app: Flask) -> None:
    # First of all before_request functions, so whatever runs next (CSRF checks, guards) and logs
    # already has the id and the start time that durations are measured from.
    def begin() -> None:
        state = serving.g()
        state.request_started = time.perf_counter()
        state.request_id = _incoming() or _fresh_id()

    app.before_request_funcs.setdefault(None, []).insert(0, begin)
    http_headers.add_per_request(app, lambda: ((HEADER, current()),))

    app.jinja_env.globals["request_id"] = current
