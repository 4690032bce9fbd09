"""Fixtures: a migrated database per test (SQLite by default, PostgreSQL with TEST_DATABASE_URL),
the app, a test client, factories, a controllable clock and a real gunicorn server."""

from __future__ import annotations

import functools
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

# Tests never write secrets into the checkout's instance/ folder.
os.environ["SECRET_KEY"] = "test-secret-key"
os.environ["KEYWARD_TOKEN_PEPPER"] = "test-pepper"
os.environ.pop("DATABASE_URL", None)

from sqlalchemy import create_engine, text

from shared.app import create_app
from shared.core import clock as clock_module

ROOT = Path(__file__).resolve().parent.parent
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")


def _worker() -> str:
    """Names this run's PostgreSQL schema; KEYWARD_TEST_SCHEMA keeps parallel runs apart."""
    return os.environ.get("KEYWARD_TEST_SCHEMA") or os.environ.get("PYTEST_XDIST_WORKER", "main")


def _postgres_url() -> str:
    """Each pytest worker gets its own schema in the test database."""
    url = TEST_DATABASE_URL.replace("postgresql://", "postgresql+psycopg://", 1)
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3Dkw_{_worker()}"


def _migrate(url: str) -> None:
    from flask_migrate import upgrade

    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        from shared.core.extensions import db

        db.engine.dispose()


@pytest.fixture(scope="session")
def database_template(tmp_path_factory):
    """Migrate once per run with `flask db upgrade`'s code path; tests start from a copy."""
    if TEST_DATABASE_URL:
        engine = create_engine(TEST_DATABASE_URL.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS kw_{_worker()} CASCADE"))
            conn.execute(text(f"CREATE SCHEMA kw_{_worker()}"))
        engine.dispose()
        url = _postgres_url()
        _migrate(url)
        return url
    path = tmp_path_factory.mktemp("template") / "keyward.db"
    _migrate(f"sqlite:///{path}")
    return path


def _reset_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        tables = [row[0] for row in conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename <> 'alembic_version'"))]
        if tables:
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def database_url(database_template, tmp_path) -> str:
    if TEST_DATABASE_URL:
        _reset_postgres(database_template)
        return database_template
    path = tmp_path / "keyward.db"
    shutil.copy(database_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def rate_limit_storage() -> str:
    return TEST_REDIS_URL or "memory://"


@pytest.fixture
def app_config(database_url, rate_limit_storage, tmp_path) -> dict:
    """Overrides given to create_app; tests may change them before `app` is built."""
    return {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "RATELIMIT_STORAGE_URI": rate_limit_storage,
        "RATELIMIT_KEY_PREFIX": f"kwtest-{uuid.uuid4().hex[:12]}",
        "KEYWARD_QUEUE_URL": f"sqlite:///{tmp_path / 'queue.db'}",  # never a queue shared between tests
        "KEYWARD_SMTP_URL": None,
    }


def _dispose(app) -> None:
    with app.app_context():
        from shared.core.extensions import db

        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()


@pytest.fixture
def app(app_config):
    app = create_app(app_config)
    yield app
    _dispose(app)


@pytest.fixture
def app_with(app_config):
    """Another app on the same database with some settings changed: `app_with(KEY=value)`."""
    apps = []

    def build(**overrides):
        apps.append(create_app({**app_config, **overrides}))
        return apps[-1]

    yield build
    for built in apps:
        _dispose(built)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def smtp():
    """A real SMTP server (aiosmtpd) of the test's own on loopback; `smtp.url` for KEYWARD_SMTP_URL."""
    from tests.mail import SmtpServer  # here, not at the top: tests.mail imports this module

    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def clock():
    """A controllable clock for every piece of code that asks shared.clock.now()."""
    frozen = clock_module.FrozenClock(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
    clock_module.set_clock(frozen)
    yield frozen
    clock_module.set_clock(None)


@pytest.fixture(autouse=True)
def steady_rate_limit_windows(monkeypatch):
    """Rate-limit windows follow the test's clock when it installs one, and otherwise stand at the
    moment the test began: a minute boundary falling mid-test cannot start a fresh window under a
    test that is exhausting one. (Production reads real time; the storage's expiry stays real.)"""
    from shared.core import ratelimits

    began = time.time()
    monkeypatch.setattr(ratelimits, "window_now", lambda: clock_module.now().timestamp()
                        if clock_module._clock is not None else began)


# --------------------------------------------------------------------------- factories


@dataclass
class Org:
    id: int
    slug: str
    plan: str


@dataclass
class Member:
    id: int  # membership id
    user_id: int
    email: str
    password: str
    org: Org
    role: str


@dataclass
class Issued:
    id: str  # public id
    secret: str
    member: Member

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.secret)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@functools.cache
def _shared_password_hash() -> str:
    from shared.identity.accounts import hash_password

    return hash_password(Factory.password)


class Factory:
    """Builds rows through the same services the app uses, returning plain handles."""

    password = "correct horse battery"

    def __init__(self, app):
        self.app = app
        self._n = 0

    def _next(self) -> int:
        self._n += 1
        return self._n

    def org(self, plan: str = "business", name: str | None = None) -> Org:
        from shared.orgs import organizations

        with self.app.app_context():
            org = organizations.create_organization(name or f"Org {self._next()}", plan)
            return Org(org.id, org.slug, org.plan)

    def partner(self, org: Org, name: str | None = None) -> int:
        from shared.orgs import organizations, partners

        with self.app.app_context():
            return partners.register_partner(organizations.get_organization(org.slug), name or f"Partner {self._next()}").id

    def project(self, org: Org, name: str | None = None) -> int:
        from shared.orgs import organizations

        with self.app.app_context():
            return organizations.create_project(organizations.get_organization(org.slug), name or f"Project {self._next()}").id

    def member(self, org: Org, role: str = "editor", *, partner_id: int | None = None,
               email: str | None = None) -> Member:
        from shared.core.extensions import db
        from shared.identity import accounts
        from shared.models import Partner
        from shared.orgs import organizations

        email = email or f"{role}{self._next()}@example.test"
        with self.app.app_context():
            partner = db.session.get(Partner, partner_id) if partner_id else None
            membership = accounts.add_member(organizations.get_organization(org.slug), email, role,
                                             password=self.password, partner=partner)
            return Member(membership.id, membership.user_id, membership.user.email, self.password, org, role)

    def api_member(self, org: Org, role: str = "editor", *, partner_id: int | None = None) -> Member:
        """Like member(), for tests that only call the API: the user row gets a hash of the same
        password computed once per run, since argon2 costs ~0.1 s per new user."""
        from shared.core.extensions import db
        from shared.models import User

        email = f"{role}{self._next()}@api.example.test"
        with self.app.app_context():
            db.session.add(User(email=email, display_name=role, password_hash=_shared_password_hash()))
            db.session.commit()
        return self.member(org, role, partner_id=partner_id, email=email)

    def token(self, member: Member, **payload) -> Issued:
        from shared.audit.record import Actor
        from shared.core.extensions import db
        from shared.models import Membership
        from shared.tokens import lifecycle
        from shared.tokens import payload as token_payload

        payload.setdefault("name", f"token {self._next()}")
        if "rights" not in payload:  # the older shape by default, as most tests were written
            payload.setdefault("permissions", ["read"])
            payload.setdefault("scopes", ["documents"])
        with self.app.app_context():
            membership = db.session.get(Membership, member.id)
            data = token_payload.parse_token_payload(payload, creating=True)
            token, secret = lifecycle.create_token(Actor(membership=membership), data)
            return Issued(token.public_id, secret, member)

    def document(self, org: Org, title: str | None = None, **columns) -> int:
        """A document row of `org` (project_id, visibility_group_id, partner_id, status, created_at...)."""
        from shared.core.extensions import db
        from shared.models import Document

        with self.app.app_context():
            document = Document(organization_id=org.id, title=title or f"Document {self._next()}", **columns)
            db.session.add(document)
            db.session.commit()
            return document.id

    def get_token(self, public_id: str):
        from sqlalchemy import select

        from shared.core.extensions import db
        from shared.models import ApiToken

        with self.app.app_context():
            return db.session.scalars(select(ApiToken).where(ApiToken.public_id == public_id)).one()

    def audit(self, action: str | None = None) -> list:
        from sqlalchemy import select

        from shared.core.extensions import db
        from shared.models import AuditEvent

        with self.app.app_context():
            query = select(AuditEvent).order_by(AuditEvent.id)
            if action:
                query = query.where(AuditEvent.action == action)
            return list(db.session.scalars(query).all())

    def rows(self, model, **where) -> list:
        """Every row of `model` matching column == value for each keyword, in id order."""
        from sqlalchemy import select

        from shared.core.extensions import db

        query = select(model).order_by(model.id)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        with self.app.app_context():
            return list(db.session.scalars(query))

    def flush_usage(self) -> None:
        """Write the usage tallied so far, as the flusher does every interval (no thread in tests)."""
        from shared.tokens import usage_flush

        assert usage_flush.flush_now(self.app), "the usage flush failed (see the log)"

    def run(self, fn):
        """Run fn() inside an app context (for services and queries in tests)."""
        with self.app.app_context():
            return fn()


@pytest.fixture
def make(app) -> Factory:
    return Factory(app)


CSRF_INPUT = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


def csrf_from(html: str) -> str:
    match = CSRF_INPUT.search(html)
    assert match, "page has no CSRF token"
    return match.group(1) or match.group(2)


def login(client, member: Member | str, password: str | None = None):
    email = member if isinstance(member, str) else member.email
    password = password or (member.password if isinstance(member, Member) else Factory.password)
    page = client.get("/login")
    return client.post("/login", data={"email": email, "password": password,
                                       "csrf_token": csrf_from(page.get_data(as_text=True))})


# --------------------------------------------------------------------------- a real server


def settled(read, expected, timeout: float = 15.0):
    """read() until it returns `expected` or the deadline passes; returns the last value read.

    For a real server, whose flushers write usage within about two intervals (KEYWARD_USAGE_FLUSH_SECONDS)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if value == expected or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """gunicorn serving wsgi:app on loopback, several workers, against the test's database."""

    def __init__(self, env: dict[str, str], log_path: Path, workers: int = 3):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "wsgi:app", "-b", f"127.0.0.1:{self.port}", "-w", str(workers),
                 "-k", "gthread", "--threads", "4", "--log-level", "warning"],
                cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("gunicorn did not start:\n" + self.output())

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # a loaded machine: stop it hard, and reap it
                self.process.kill()
                self.process.wait(timeout=10)  # reaped: no zombie, no ResourceWarning in a later test


@pytest.fixture
def live_server(app_config, tmp_path):
    """Start with `live_server()`; every server started is stopped after the test."""
    servers: list[LiveServer] = []

    def start(workers: int = 3, **extra_env: str) -> LiveServer:
        env = {
            "DATABASE_URL": app_config["SQLALCHEMY_DATABASE_URI"],
            "RATELIMIT_STORAGE_URI": app_config["RATELIMIT_STORAGE_URI"],
            "RATELIMIT_KEY_PREFIX": app_config["RATELIMIT_KEY_PREFIX"],
            "KEYWARD_QUEUE_URL": app_config["KEYWARD_QUEUE_URL"],
            "KEYWARD_RATE_LIMITS": "free=100000/minute;business=100000/minute;enterprise=100000/minute",
            **extra_env,
        }
        server = LiveServer(env, tmp_path / f"gunicorn-{len(servers)}.log", workers)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
