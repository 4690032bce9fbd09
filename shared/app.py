"""The application factory: config, extensions, blueprints, CLI and error handlers."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask, g, jsonify, render_template, request, send_from_directory
from flask.sessions import SecureCookieSessionInterface
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from werkzeug.exceptions import HTTPException

from shared.core import ratelimits
from shared.core.config import build_config, engine_options
from shared.core.db import AUTOCOMMIT_BIND
from shared.core.errors import ServiceError
from shared.core.extensions import csrf, db, login_manager, migrate
from shared.core.http_headers import init_security
from shared.worker import queue as task_queue

API_PREFIX = "/api/"
log = logging.getLogger("keyward")


class BrowserOnlySessionInterface(SecureCookieSessionInterface):
    """API requests neither read nor set a session cookie; a browser session never reaches the API."""

    def open_session(self, app, request):
        if request.path.startswith(API_PREFIX):
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app, session, response):
        if request.path.startswith(API_PREFIX):
            return None
        return super().save_session(app, session, response)


def create_app(test_config: dict | None = None) -> Flask:
    app = Flask(__name__, instance_path=str(Path(__file__).resolve().parent.parent / "instance"),
                static_folder=str(Path(__file__).resolve().parent.parent / "static"), static_url_path="/static")
    app.config.update(build_config(Path(app.instance_path)))
    if test_config:
        app.config.update(test_config)
    database_url = app.config["SQLALCHEMY_DATABASE_URI"]
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(database_url))
    if not database_url.startswith("sqlite"):
        app.config.setdefault("SQLALCHEMY_BINDS", {AUTOCOMMIT_BIND: {
            "url": database_url, "isolation_level": "AUTOCOMMIT", **app.config["SQLALCHEMY_ENGINE_OPTIONS"]}})
    app.session_interface = BrowserOnlySessionInterface()
    app.json.sort_keys = False  # keep the documented field order

    db.init_app(app)
    migrate.init_app(app, db, directory=str(Path(__file__).resolve().parent.parent / "migrations"))
    login_manager.init_app(app)
    csrf.init_app(app)
    ratelimits.init_app(app)
    task_queue.init_app(app)

    from api import bp as api_bp
    from partner_hub import bp as hub_bp
    from portal import bp as portal_bp
    from shared.identity.signin import bp as auth_bp

    csrf.exempt(api_bp)  # token-authenticated, never cookie-authenticated
    app.register_blueprint(auth_bp)
    app.register_blueprint(portal_bp)
    app.register_blueprint(hub_bp)
    app.register_blueprint(api_bp)

    from shared.cli import register_cli

    register_cli(app)
    _register_health(app)
    _register_favicon(app)
    _register_error_handlers(app)
    _register_template_helpers(app)
    init_security(app)
    return app


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
        if not current_user.is_authenticated and not _wants_json():
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

    @app.errorhandler(OperationalError)
    def database_unavailable(error: OperationalError):
        db.session.rollback()
        log.warning("database unavailable: %s", type(error.orig).__name__ if error.orig else "error")
        if _wants_json():
            return error_response(503, "unavailable", "The service is temporarily unavailable; retry shortly")
        return _error_page(503, "Keyward is temporarily unavailable.")

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        db.session.rollback()
        log.exception("unhandled error on %s %s", request.method, request.path)
        if _wants_json():
            return error_response(500, "internal_error", "Something went wrong on our side")
        return _error_page(500, "Something went wrong on our side.")

    @app.after_request
    def rate_limit_headers(response):
        from flask import g

        state = g.get("rate_state")
        if state is not None and "X-RateLimit-Limit" not in response.headers:
            response.headers.update(state.headers())
        return response


def _register_template_helpers(app: Flask) -> None:
    from shared.core import dates

    app.jinja_env.filters["relative_time"] = dates.relative
    app.jinja_env.filters["exact_time"] = dates.exact
    app.jinja_env.filters["iso_time"] = dates.iso
    app.jinja_env.filters["day"] = dates.day
    app.jinja_env.filters["moment"] = dates.time_tag
    app.jinja_env.tests["moment"] = dates.is_moment_text
