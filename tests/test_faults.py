"""The database goes away under a running gunicorn and comes back: 503s (JSON for the API, the error
page for the portal, never a traceback), recovery without restarting anything, and no lost or
half-written rows.

- SQLite: the database folder is renamed away. SQLite keeps files it has open working after a
  rename, so the outage is what every connection opened afterwards sees: the test reloads
  gunicorn's workers (SIGHUP, as a crash or max_requests recycle would) and the new workers start
  and answer while the file is gone.
- PostgreSQL (when TEST_DATABASE_URL is set): a private cluster the test owns (initdb on a free
  port), stopped with `pg_ctl stop -m fast` while clients are sending requests, then started again.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import Self

import pytest
from sqlalchemy import func, select

from tests.conftest import TEST_DATABASE_URL, Factory, bearer, csrf_from, free_port, settled

TOKENS = "/settings/api-tokens"
CREATE = {"scopes": ["documents"], "permissions": ["read"]}


# --------------------------------------------------------------------------- HTTP helpers


@dataclass
class Answer:
    status: int
    body: str
    content_type: str

    def json(self) -> dict:
        return json.loads(self.body)


class Browser:
    """urllib with a cookie jar: the API (bearer) and the portal (session cookie) alike."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def send(self, method: str, path: str, *, headers: dict | None = None, json_body: dict | None = None,
             form: dict | None = None) -> Answer:
        headers = dict(headers or {})
        data = None
        if json_body is not None:
            data, headers["Content-Type"] = json.dumps(json_body).encode(), "application/json"
        if form is not None:
            data = urllib.parse.urlencode(form, doseq=True).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with self.opener.open(request, timeout=30) as response:
                return Answer(response.status, response.read().decode(), response.headers.get("Content-Type", ""))
        except urllib.error.HTTPError as error:
            return Answer(error.code, error.read().decode(), error.headers.get("Content-Type", ""))

    def sign_in(self, email: str, password: str) -> None:
        page = self.send("GET", "/login")
        answer = self.send("POST", "/login", form={"email": email, "password": password,
                                                    "csrf_token": csrf_from(page.body)})
        assert answer.status == 200 and "API tokens" in answer.body, answer.body[:500]  # followed the redirect


def wait_for(condition, what: str, timeout: float = 20.0):
    """Poll until condition() is truthy (a server reaching a state), failing after the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def assert_unavailable_api(answer: Answer) -> None:
    assert answer.status == 503, (answer.status, answer.body[:300])
    assert answer.content_type.startswith("application/json")
    assert answer.json()["error"]["code"] == "unavailable"
    assert "Traceback" not in answer.body and "sqlalchemy" not in answer.body.lower()


def assert_unavailable_page(answer: Answer) -> None:
    assert answer.status == 503, (answer.status, answer.body[:300])
    assert answer.content_type.startswith("text/html")
    assert "temporarily unavailable" in answer.body
    assert "Traceback" not in answer.body and "sqlalchemy" not in answer.body.lower()


def assert_unhealthy(browser: Browser) -> None:
    answer = browser.send("GET", "/healthz")
    assert (answer.status, answer.json()) == (503, {"status": "unavailable"})


# --------------------------------------------------------------------------- database checks


def token_rows(factory: Factory) -> dict[str, str]:
    """public id -> name of every token row."""
    from shared.core.extensions import db
    from shared.models import ApiToken

    return factory.run(lambda: dict(db.session.execute(select(ApiToken.public_id, ApiToken.name)).all()))


def created_events(factory: Factory) -> set[str]:
    return {event.target_id for event in factory.audit("token.created")}


def usage_count(factory: Factory, public_id: str) -> int:
    from shared.core.extensions import db
    from shared.models import ApiToken

    return factory.run(lambda: db.session.scalar(
        select(ApiToken.usage_count).where(ApiToken.public_id == public_id)))


def audit_count(factory: Factory) -> int:
    from shared.core.extensions import db
    from shared.models import AuditEvent

    return factory.run(lambda: db.session.scalar(select(func.count()).select_from(AuditEvent)))


# --------------------------------------------------------------------------- SQLite


def worker_pids(master: int) -> set[int]:
    pids = set()
    for stat in glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[1]) == master:
            pids.add(int(stat.split("/")[2]))
    return pids


@pytest.fixture
def sqlite_folder(database_template, tmp_path) -> Path:
    if TEST_DATABASE_URL:
        pytest.skip("SQLite outage: the PostgreSQL run has its own fault test")
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(database_template, folder / "keyward.db")
    return folder


def test_sqlite_file_gone_gives_503s_then_recovers_without_restart(sqlite_folder, app_with, live_server):
    url = f"sqlite:///{sqlite_folder / 'keyward.db'}"
    factory = Factory(app_with(SQLALCHEMY_DATABASE_URI=url))
    member = factory.member(factory.org("business"), "editor")
    key = factory.token(member, scopes=["tokens", "documents"], permissions=["read", "write"])
    server = live_server(workers=2, DATABASE_URL=url)
    api, portal = Browser(server.url), Browser(server.url)
    portal.sign_in(member.email, member.password)
    accepted = Counter()

    def use(times: int) -> None:
        for _ in range(times):
            answer = api.send("GET", "/api/v1/me", headers=key.headers)
            assert answer.status == 200, answer.body
            accepted["me"] += 1

    use(5)
    before = api.send("POST", "/api/v1/tokens", headers=key.headers, json_body={"name": "before", **CREATE})
    assert before.status == 201
    accepted["create"] += 1

    away = sqlite_folder.with_name("data-away")
    sqlite_folder.rename(away)
    old_workers = worker_pids(server.process.pid)
    os.kill(server.process.pid, signal.SIGHUP)
    wait_for(lambda: len(fresh := worker_pids(server.process.pid)) == 2 and not fresh & old_workers,
             "gunicorn to replace its workers")
    try:
        assert_unhealthy(api)
        for _ in range(4):  # every worker, whichever answers
            assert_unavailable_api(api.send("GET", "/api/v1/me", headers=key.headers))
        assert_unavailable_api(api.send("POST", "/api/v1/tokens", headers=key.headers,
                                        json_body={"name": "during", **CREATE}))
        assert_unavailable_page(portal.send("GET", TOKENS))
    finally:
        away.rename(sqlite_folder)

    wait_for(lambda: api.send("GET", "/healthz").status == 200, "/healthz to recover")
    use(5)
    assert "API tokens" in portal.send("GET", TOKENS).body  # the session survived the outage
    after = api.send("POST", "/api/v1/tokens", headers=key.headers, json_body={"name": "after", **CREATE})
    assert after.status == 201
    accepted["create"] += 1

    rows = token_rows(factory)
    assert sorted(name for public_id, name in rows.items() if public_id != key.id) == ["after", "before"]
    assert created_events(factory) == set(rows)  # every row whole, with its audit event
    # Counted by the flushers: the replaced workers' at their graceful exit, the new ones' within an interval.
    expected = accepted["me"] + accepted["create"]
    assert settled(lambda: usage_count(factory, key.id), expected) == expected
    assert "Traceback" not in server.output()


# --------------------------------------------------------------------------- PostgreSQL


@dataclass
class PrivateCluster:
    """A PostgreSQL server of our own: initdb in a temporary folder, listening on a free port."""

    bin_dir: Path
    data_dir: Path
    port: int
    run_as: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        result = subprocess.run([*self.run_as, str(self.bin_dir / args[0]), *args[1:]], check=False,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{args[0]} failed:\n{result.stdout}\n{result.stderr}"

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "--no-sync",
                  "--no-instructions", "-E", "UTF8")

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c max_connections=50")
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.data_dir / "server.log"), "-w", "-t", "30",
                  "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "30", "stop")


def _postgres_bin_dir() -> Path | None:
    found = sorted(glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture
def private_postgres():
    if not TEST_DATABASE_URL:
        pytest.skip("PostgreSQL outage: runs in the PostgreSQL pass (TEST_DATABASE_URL)")
    bin_dir = _postgres_bin_dir()
    if bin_dir is None or not (bin_dir / "pg_ctl").exists():
        pytest.skip("initdb/pg_ctl not installed: cannot run a private PostgreSQL cluster")
    run_as: list[str] = []
    data_dir = Path(tempfile.mkdtemp(prefix="keyward-pg-"))
    if os.geteuid() == 0:  # initdb refuses to run as root: run the cluster as the postgres user
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(data_dir)
            pytest.skip("running as root and there is no postgres user to run a private cluster as")
        if not shutil.which("runuser"):
            shutil.rmtree(data_dir)
            pytest.skip("running as root without runuser: cannot start a private cluster as postgres")
        os.chown(data_dir, account.pw_uid, account.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    cluster = PrivateCluster(bin_dir, data_dir, free_port(), run_as)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "stop"],
                       check=False, capture_output=True, timeout=60)
        shutil.rmtree(data_dir, ignore_errors=True)


@dataclass
class Traffic:
    """Clients sending GET /me (and now and then a token creation) until told to stop."""

    browser: Browser
    secret: str  # GET /me, counted
    creator_secret: str  # POST /tokens
    clients: int = 8
    statuses: Counter = field(default_factory=Counter)
    bad: list = field(default_factory=list)
    created: list = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _client(self, n: int) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            creating = i % 10 == 0
            if creating:
                answer = self.browser.send("POST", "/api/v1/tokens", headers=bearer(self.creator_secret),
                                           json_body={"name": f"traffic {n}-{i}", **CREATE})
            else:
                answer = self.browser.send("GET", "/api/v1/me", headers=bearer(self.secret))
            with self.lock:
                self.statuses[(answer.status, creating)] += 1
                if answer.status == 201:
                    self.created.append(answer.json()["token"]["id"])
                elif answer.status == 503:
                    try:
                        assert_unavailable_api(answer)
                    except AssertionError as error:
                        self.bad.append(str(error))
                elif answer.status != 200:
                    self.bad.append((answer.status, answer.body[:300]))

    def __enter__(self) -> Self:
        self.threads = [threading.Thread(target=self._client, args=(n,)) for n in range(self.clients)]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def count(self, status: int, creating: bool | None = None) -> int:
        with self.lock:
            return sum(n for (code, kind), n in self.statuses.items()
                       if code == status and (creating is None or kind == creating))


def test_postgres_stopped_mid_run_gives_503s_then_recovers_without_restart(private_postgres, app_with, live_server):
    from tests.conftest import _migrate

    cluster = private_postgres
    sqlalchemy_url = cluster.url.replace("postgresql://", "postgresql+psycopg://", 1)
    _migrate(sqlalchemy_url)
    factory = Factory(app_with(SQLALCHEMY_DATABASE_URI=sqlalchemy_url))
    member = factory.member(factory.org("business"), "editor")
    key = factory.token(member)
    creator = factory.token(member, scopes=["tokens", "documents"], permissions=["read", "write"])
    server = live_server(workers=2, DATABASE_URL=cluster.url)
    api, portal = Browser(server.url), Browser(server.url)
    portal.sign_in(member.email, member.password)

    for _ in range(10):
        assert api.send("GET", "/api/v1/me", headers=key.headers).status == 200
    assert settled(lambda: usage_count(factory, key.id), 10) == 10

    with Traffic(api, key.secret, creator.secret) as traffic:
        wait_for(lambda: traffic.count(200) >= 40 and traffic.count(201) >= 2, "traffic before the outage")
        cluster.stop("fast")
        wait_for(lambda: traffic.count(503) >= 16, "503s during the outage")
        assert_unhealthy(api)
        assert_unavailable_page(portal.send("GET", TOKENS))
        served_before_restart = traffic.count(200) + traffic.count(201)
        created_before_restart = traffic.count(201)
        cluster.start()
        wait_for(lambda: traffic.count(200) + traffic.count(201) >= served_before_restart + 40
                 and traffic.count(201) > created_before_restart,
                 "traffic to recover")
    assert not traffic.bad, traffic.bad[:5]

    # Sequential requests after recovery, then a graceful stop: every worker writes what it holds
    # (batches that failed during the outage included, each exactly once).
    assert api.send("GET", "/healthz").status == 200
    assert "API tokens" in portal.send("GET", TOKENS).body
    for _ in range(10):
        assert api.send("GET", "/api/v1/me", headers=key.headers).status == 200
    server.stop()
    counted = usage_count(factory, key.id)

    # No lost count: every 2xx was counted. A request that had already been counted when the server
    # went away may still have answered 503 (at most one in flight per client).
    answered = 10 + traffic.count(200) + 10
    assert answered <= counted <= answered + traffic.clients, (counted, answered, traffic.statuses)

    # No half-written token: every row has its audit event; every 201 left its row; a creation
    # that answered 503 left a whole row or none.
    rows = token_rows(factory)
    created = set(rows) - {key.id, creator.id}
    assert created_events(factory) == set(rows)
    assert set(traffic.created) <= created
    assert len(created) - len(traffic.created) <= min(traffic.count(503, creating=True), traffic.clients)
    assert "Traceback" not in server.output(), server.output()[-3000:]
