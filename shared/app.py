"""The application factory: config, extensions, blueprints, CLI and error handlers."""

from __future__ import annotations

import io
import json
import logging
from functools import cached_property, wraps
from inspect import iscoroutinefunction
from itertools import chain
from pathlib import Path

import redis
from flask import Flask, Response, g, jsonify, make_response, render_template, request, send_from_directory
from flask.json.provider import DefaultJSONProvider
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.routing import IntegerConverter

from shared.core import current, logs, metrics, ratelimits, request_ids
from shared.core.config import build_config, engine_options
from shared.core.db import AUTOCOMMIT_BIND
from shared.core.errors import ServiceError
from shared.core.extensions import csrf, db, login_manager, migrate
from shared.core.http_headers import KeywardHeaders, add_per_request, header_names, init_security
from shared.core.validation import MAX_ID
from shared.tokens import usage_flush
from shared.tokens.log_masking import install_secret_masking
from shared.worker import queue as task_queue

API_PREFIX = "/api/"
UNAVAILABLE_RETRY_AFTER_SECONDS = 5  # a database or Redis that went away: retry shortly
log = logging.getLogger("keyward")


class ApiRequestSession(SecureCookieSession):
    """The empty session of an API request: never read from a cookie, never saved."""


class BrowserOnlySessionInterface(SecureCookieSessionInterface):
    """API requests neither read nor set a session cookie; a browser session never reaches the API."""

    def open_session(self, app, request):
        if request.path.startswith(API_PREFIX):
            return ApiRequestSession()
        return super().open_session(app, request)

    def save_session(self, app, session, response):
        if isinstance(session, ApiRequestSession):
            return None
        return super().save_session(app, session, response)


class BoundedJSONProvider(DefaultJSONProvider):
    """JSON that is nested too deeply to parse (100,000 "[") is a malformed body, answered 400 like
    any other, not a RecursionError and a 500."""

    def loads(self, s, **kwargs):
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None

    def dumps(self, obj, **kwargs):
        # Every API answer is compact JSON: one encoder, made once (json.dumps with options makes a
        # new one each call).
        if kwargs == _COMPACT:
            return self._compact_encoder.encode(obj)
        return super().dumps(obj, **kwargs)

    @cached_property
    def _compact_encoder(self) -> json.JSONEncoder:
        # Made on first use: after create_app has set sort_keys.
        return json.JSONEncoder(default=self.default, ensure_ascii=self.ensure_ascii, sort_keys=self.sort_keys,
                                **_COMPACT)


_COMPACT = {"separators": (",", ":")}  # what Flask's response() asks for outside debug mode


class ChunkedBodyLimit:
    """WSGI middleware: a body sent without Content-Length (chunked) is read here, up to one byte
    past the limit. Within it, the app gets it with its length like any other; beyond it, the app
    sees a Content-Length over the limit and no body, so it answers 413 as for a declared one.

    (Werkzeug alone would stop reading at the limit and hand the app a silently cut body.)
    """

    def __init__(self, wsgi_app, limit: int):
        self.wsgi_app = wsgi_app
        self.limit = limit

    def __call__(self, environ, start_response):
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and not environ.get("CONTENT_LENGTH"):
            body = bytearray()
            stream = environ["wsgi.input"]
            while len(body) <= self.limit:
                chunk = stream.read(min(64 * 1024, self.limit + 1 - len(body)))
                if not chunk:
                    break
                body.extend(chunk)
            environ["wsgi.input"] = io.BytesIO(b"" if len(body) > self.limit else bytes(body))
            environ["CONTENT_LENGTH"] = str(len(body))
            environ.pop("HTTP_TRANSFER_ENCODING", None)
        return self.wsgi_app(environ, start_response)


class KeywardResponse(Response):
    """Werkzeug's response, sending its own headers when they need no fix. `get_wsgi_headers`
    copies every header (each checked again) to fix a Location, a Content-Location or the length
    of a body-less status; an answer with its length set, a 2xx status other than 204 and neither
    header (every API answer, most pages) needs none of that, and the copy cost an API request
    about a twentieth of its time (bench/README.md)."""

    def __init__(self, response=None, status=None, headers=None, *args, **kwargs):
        super().__init__(response, status, KeywardHeaders(headers), *args, **kwargs)

    def get_wsgi_headers(self, environ):
        status = self.status_code
        if 200 <= status < 300 and status != 204:
            names = header_names(self)
            if "content-length" in names and not names & _FIXED_BY_WERKZEUG:
                return self.headers
        return super().get_wsgi_headers(environ)


_FIXED_BY_WERKZEUG = {"location", "content-location"}


class KeywardFlask(Flask):
    """Flask, asking once whether each hook and view is a coroutine function: Flask asks
    `inspect.iscoroutinefunction` of every hook and the view on every request (six times for an
    API request). None of ours is; anything not registered before the first request (which Flask
    forbids anyway) is still asked each time."""

    response_class = KeywardResponse

    def ensure_sync(self, func):
        if func in self._plain_functions:
            return func
        return super().ensure_sync(func)

    @cached_property
    def _plain_functions(self) -> frozenset:
        registered = [*self.view_functions.values(), *self.teardown_appcontext_funcs]
        for hooks in (self.before_request_funcs, self.after_request_funcs, self.teardown_request_funcs):
            registered.extend(chain.from_iterable(hooks.values()))
        return frozenset(func for func in registered if not iscoroutinefunction(func))


class IdConverter(IntegerConverter):
    """`<int:…>` whose default maximum is the largest database id."""

    def __init__(self, url_map, *args, **kwargs):
        kwargs.setdefault("max", MAX_ID)
        super().__init__(url_map, *args, **kwargs)


def create_app(test_config: dict | None = None) -> Flask:
    app = KeywardFlask(__name__, instance_path=str(Path(__file__).resolve().parent.parent / "instance"),
                static_folder=str(Path(__file__).resolve().parent.parent / "static"), static_url_path="/static")
    app.config.update(build_config(Path(app.instance_path)))
    if test_config:
        app.config.update(test_config)
    # Werkzeug refuses a larger body (413) before reading it, and stops a chunked one (no
    # Content-Length) as soon as it crosses the limit; form fields get the same ceiling.
    limit = app.config["KEYWARD_MAX_BODY_BYTES"]
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_FORM_MEMORY_SIZE"] = limit
    app.wsgi_app = ChunkedBodyLimit(app.wsgi_app, limit)
    database_url = app.config["SQLALCHEMY_DATABASE_URI"]
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(database_url))
    if not database_url.startswith("sqlite"):
        # No ping on checkout: the token lookup, its only user, retries once on a dropped connection.
        app.config.setdefault("SQLALCHEMY_BINDS", {AUTOCOMMIT_BIND: {
            "url": database_url, "isolation_level": "AUTOCOMMIT", **app.config["SQLALCHEMY_ENGINE_OPTIONS"],
            "pool_pre_ping": False}})
    app.session_interface = BrowserOnlySessionInterface()
    app.json = BoundedJSONProvider(app)
    app.json.sort_keys = False  # keep the documented field order
    # Ids in URLs (<int:…>) stop at the largest a row can have: a larger number answers 404
    # instead of overflowing the database driver. Set before the blueprints add their rules.
    app.url_map.converters["int"] = IdConverter
    install_secret_masking(app)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(Path(__file__).resolve().parent.parent / "migrations"))
    login_manager.init_app(app)
    csrf.init_app(app)
    ratelimits.init_app(app)
    usage = usage_flush.init_app(app)
    queue = task_queue.init_app(app)
    usage.on_alerts = queue.poke  # alerts raised by a usage flush reach the worker at once

    from api import bp as api_bp
    from partner_hub import bp as hub_bp
    from portal import bp as portal_bp
    from shared.identity.invitation_pages import bp as invitations_bp
    from shared.identity.signin import bp as auth_bp

    csrf.exempt(api_bp)  # token-authenticated, never cookie-authenticated
    app.register_blueprint(auth_bp)
    app.register_blueprint(invitations_bp)
    app.register_blueprint(portal_bp)
    app.register_blueprint(hub_bp)
    app.register_blueprint(api_bp)

    from shared.cli import register_cli

    register_cli(app)
    _register_health(app)
    _register_favicon(app)
    _register_error_handlers(app)
    _register_template_helpers(app)
    init_security(app, API_PREFIX)
    _register_operations(app)
    _browser_hooks_skip_the_api(app)
    return app


def _register_operations(app: Flask) -> None:
    """Request ids, request logs and metrics on every request; /readyz and /metrics."""
    from shared import monitoring

    request_ids.init_app(app)
    logs.init_app(app)
    metrics.init_app(app)
    monitoring.init_app(app)


def _browser_hooks_skip_the_api(app: Flask) -> None:
    """CSRF's check and Flask-Login's cookie refresh concern browsers: an API request carries a token,
    never a cookie (its session is never read nor saved, see BrowserOnlySessionInterface), so it skips
    them, and pays for nothing of sign-in on every call."""

    def skipping_api(hook, after: bool):
        @wraps(hook)
        def browser_only(*response):
            if current.request().path.startswith(API_PREFIX):
                return response[0] if after else None
            return hook(*response)

        return browser_only

    csrf_hooks = {hook for hook in app.before_request_funcs.get(None, []) if hook.__name__ == "csrf_protect"}
    app.before_request_funcs[None] = [skipping_api(hook, False) if hook in csrf_hooks else hook
                                      for hook in app.before_request_funcs.get(None, [])]
    app.after_request_funcs[None] = [skipping_api(hook, True) if hook == login_manager._update_remember_cookie
                                     else hook for hook in app.after_request_funcs.get(None, [])]
def _register_favicon(app: Flask) -> None:
    @app.get("/favicon.ico")
    def favicon():
        """Browsers and tools ask for it at the root whatever the pages link to."""
        return send_from_directory(app.static_folder, "favicon.ico", mimetype="image/vnd.microsoft.icon",
                                   max_age=86400)


def _register_health(app: Flask) -> None:
    @app.get("/healthz")
    def healthz():
        try:
            db.session.execute(text("SELECT 1"))
            db.session.rollback()
        except (OperationalError, DBAPIError):
            db.session.rollback()
            return jsonify({"status": "unavailable"}), 503
        return jsonify({"status": "ok"})


def _wants_json() -> bool:
    return request.path.startswith(API_PREFIX)


def _error_page(status: int, message: str):
    """An error for a browser: the error page, or for htmx just the message (shown as a notice)."""
    if request.headers.get("HX-Request") == "true":
        return message, status, {"Content-Type": "text/plain; charset=utf-8"}
    try:
        return render_template("error.html", status=status, message=message), status
    except SQLAlchemyError:
        # The database is down and Flask-Login's template context asks it for the signed-in user
        # again: render the page for an anonymous visitor instead of failing with a bare 500.
        db.session.rollback()
        g._login_user = login_manager.anonymous_user()
        return render_template("error.html", status=status, message=message), status


def _register_error_handlers(app: Flask) -> None:
    from api.errors import error_response, http_error_response, service_error_response

    @app.errorhandler(CSRFError)
    def csrf_refused(error: CSRFError):
        # A form or htmx request from a browser whose session ended (signed out elsewhere, expired):
        # that is a sign-in to ask for, not a token error to show; it comes back afterwards.
        from shared.identity.signin import login_form_expired

        if request.endpoint == "auth.login":
            return login_form_expired()
        # A page for people who are not signed in (an invitation link) refuses like any form.
        public = (request.blueprint or "").startswith("invitation")
        if not current_user.is_authenticated and not _wants_json() and not public:
            return login_manager.unauthorized()
        return _error_page(400, error.description)

    @app.errorhandler(ServiceError)
    def service_error(error: ServiceError):
        db.session.rollback()
        if _wants_json():
            return service_error_response(error)
        return _error_page(error.status, error.message)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if _wants_json():
            return http_error_response(error)
        return _error_page(error.code, error.description)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(error: RequestEntityTooLarge):
        limit = app.config["MAX_CONTENT_LENGTH"]
        message = f"The request is too large: at most {limit:,} bytes are accepted."
        # The rest of the body is never read: the connection closes rather than wait for it.
        response = error_response(413, "payload_too_large", message) if _wants_json() else \
            make_response(_error_page(413, message))
        response.headers["Connection"] = "close"
        return response

    def unavailable():
        if _wants_json():
            response = error_response(503, "unavailable", "The service is temporarily unavailable; retry shortly")
        else:
            response = make_response(_error_page(503, "Keyward is temporarily unavailable."))
        response.headers["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER_SECONDS)
        return response

    @app.errorhandler(OperationalError)
    def database_unavailable(error: OperationalError):
        db.session.rollback()
        log.warning("database unavailable: %s", type(error.orig).__name__ if error.orig else "error")
        return unavailable()

    # Redis holds the rate-limit windows (and then the usage tallies): without it no request can be
    # checked against its limit, so requests are refused as unavailable, never let through unlimited
    # and uncounted (docs/decisions.md, "Redis unavailable").
    @app.errorhandler(redis.exceptions.ConnectionError)
    @app.errorhandler(redis.exceptions.TimeoutError)
    def redis_unavailable(error: redis.exceptions.RedisError):
        db.session.rollback()
        log.warning("redis unavailable: %s", type(error).__name__)
        return unavailable()

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        db.session.rollback()
        log.exception("unhandled error on %s %s", request.method, request.path)
        if _wants_json():
            return error_response(500, "internal_error", "Something went wrong on our side")
        return _error_page(500, "Something went wrong on our side.")

    def rate_limit_headers():
        state = current.g().get("rate_state")
        return state.headers().items() if state is not None else ()  # a 429 already carries them

    add_per_request(app, rate_limit_headers)


def _register_template_helpers(app: Flask) -> None:
    from shared.core import dates

    app.jinja_env.filters["relative_time"] = dates.relative
    app.jinja_env.filters["exact_time"] = dates.exact
    app.jinja_env.filters["iso_time"] = dates.iso
    app.jinja_env.filters["day"] = dates.day
    app.jinja_env.filters["moment"] = dates.time_tag
    app.jinja_env.tests["moment"] = dates.is_moment_text
