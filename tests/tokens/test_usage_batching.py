"""Usage accounting off the request path: requests are tallied and a flusher writes each batch in one
transaction, exactly once, even when a flush fails, a commit's answer is lost, several processes
flush at once, a worker is stopped (SIGTERM) or, with Redis, killed (SIGKILL).

In-process tests drive the flusher with make.flush_usage() (apps built for tests start no thread);
tests against a real gunicorn wait for its flushers with a deadline."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from glob import glob
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL, Factory, bearer, csrf_from, settled
from tests.statements import statements, writes

needs_redis = pytest.mark.skipif(not TEST_REDIS_URL,
                                 reason="needs TEST_REDIS_URL (the suite runs again with Redis)")


# --------------------------------------------------------------------------- helpers


def counts(factory: Factory, public_id: str) -> tuple[int, dict[str, int], dict[str, int]]:
    """The token's usage_count, its requests per day and per network."""
    from shared.core.extensions import db
    from shared.models import TokenDailyUsage, TokenNetwork

    token = factory.get_token(public_id)
    with factory.app.app_context():
        days = dict(db.session.execute(select(TokenDailyUsage.day, TokenDailyUsage.requests)
                                       .where(TokenDailyUsage.token_id == token.id)).all())
        networks = dict(db.session.execute(select(TokenNetwork.network, TokenNetwork.requests)
                                           .where(TokenNetwork.token_id == token.id)).all())
    return token.usage_count, {day.isoformat(): n for day, n in days.items()}, networks


def anomalies(factory: Factory) -> list[str]:
    from shared.models import Event

    return [e.data["network"] for e in factory.rows(Event, type="token.anomaly")]


def me(client, issued, address: str = "198.51.100.7"):
    return client.get("/api/v1/me", headers=issued.headers, environ_base={"REMOTE_ADDR": address})


# --------------------------------------------------------------------------- the request path


def test_the_request_path_writes_nothing_and_the_flush_counts_every_request_once(client, make, clock):
    issued = make.token(make.api_member(make.org(), "editor"))
    with statements() as sent:
        for _ in range(5):
            assert me(client, issued).status_code == 200
    assert writes(sent) == []
    assert counts(make, issued.id)[0] == 0  # tallied, not written yet

    make.flush_usage()
    make.flush_usage()  # nothing new: nothing counted twice
    today = clock.now().date().isoformat()
    assert counts(make, issued.id) == (5, {today: 5}, {"198.51.100.0/24": 5})
    token = make.get_token(issued.id)
    assert (token.last_used_at, token.last_used_ip) == (clock.now(), "198.51.100.7")


def test_me_shows_the_count_including_what_is_not_written_yet(client, make):
    issued = make.token(make.api_member(make.org(), "editor"))
    me(client, issued)
    make.flush_usage()
    me(client, issued)
    answer = me(client, issued, "203.0.113.4").get_json()["token"]
    assert (answer["usage_count"], answer["last_used_ip"]) == (3, "203.0.113.4")


def test_one_busy_token_costs_one_write_of_its_counter_per_flush(client, make):
    issued = make.token(make.api_member(make.org(), "editor"))
    for _ in range(40):
        me(client, issued)
    with statements() as sent:
        make.flush_usage()
    counter_updates = [s for s in writes(sent) if s.startswith("UPDATE api_tokens SET usage_count")]
    assert len(counter_updates) == 1
    # The whole batch is one transaction: its mark, the counter, the day and the network.
    assert len([s for s in sent if s.upper().startswith(("BEGIN", "COMMIT"))]) <= 2
    assert counts(make, issued.id)[0] == 40


def test_a_new_network_is_raised_by_the_flush_not_by_the_request(client, make):
    issued = make.token(make.api_member(make.org(), "editor"))
    me(client, issued, "198.51.100.1")
    make.flush_usage()
    me(client, issued, "203.0.113.1")
    assert anomalies(make) == []
    make.flush_usage()
    assert anomalies(make) == ["203.0.113.0/24"]


def test_a_tokens_first_use_is_no_anomaly_even_when_its_first_batch_holds_several_networks(
        client, make, clock):
    issued = make.token(make.api_member(make.org(), "editor"))
    for address in ("192.0.2.1", "198.51.100.1", "192.0.2.2", "203.0.113.1"):
        me(client, issued, address)  # all at the same instant (frozen clock): order decides
    make.flush_usage()
    assert anomalies(make) == ["198.51.100.0/24", "203.0.113.0/24"]


# --------------------------------------------------------------------------- failures


def test_a_failed_flush_keeps_the_batch_and_the_next_flush_counts_it_once(client, make, monkeypatch):
    from shared.tokens import usage_batches, usage_flush

    issued = make.token(make.api_member(make.org(), "editor"))
    for _ in range(3):
        me(client, issued)
    real_apply = usage_batches._apply

    def database_down(connection, tally):
        raise OperationalError("UPDATE", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(usage_batches, "_apply", database_down)
    assert usage_flush.flush_now(make.app) is False
    me(client, issued, "203.0.113.9")  # requests go on meanwhile
    assert counts(make, issued.id)[0] == 0

    monkeypatch.setattr(usage_batches, "_apply", real_apply)
    make.flush_usage()
    usage_count, _, networks = counts(make, issued.id)
    assert (usage_count, networks) == (4, {"198.51.100.0/24": 3, "203.0.113.0/24": 1})


def test_a_batch_whose_commit_answer_was_lost_is_never_counted_twice(client, make, monkeypatch):
    from shared.tokens import usage_batches, usage_flush

    issued = make.token(make.api_member(make.org(), "editor"))
    for _ in range(3):
        me(client, issued)
    real_apply_batch = usage_batches.apply_batch

    def commit_then_connection_lost(connection, tally, source, number):
        real_apply_batch(connection, tally, source, number)  # committed...
        raise OperationalError("COMMIT", {}, Exception("connection lost"))  # ...but we never heard back

    monkeypatch.setattr(usage_batches, "apply_batch", commit_then_connection_lost)
    assert usage_flush.flush_now(make.app) is False
    monkeypatch.setattr(usage_batches, "apply_batch", real_apply_batch)
    me(client, issued)
    make.flush_usage()  # the kept batch again (recognized, nothing written), then the new request
    assert counts(make, issued.id)[0] == 4


def test_tallies_of_several_processes_add_up_and_a_new_network_is_raised_once(client, make, app_with):
    other_process = app_with()  # another app on the same database: its own tally and source
    other = other_process.test_client()
    issued = make.token(make.api_member(make.org(), "editor"))
    me(client, issued, "198.51.100.1")
    make.flush_usage()
    for _ in range(2):
        me(client, issued, "203.0.113.1")
        me(other, issued, "203.0.113.2")
    me(other, issued, "192.0.2.1")
    Factory(other_process).flush_usage()
    make.flush_usage()
    assert counts(make, issued.id)[0] == 6
    assert counts(make, issued.id)[2] == {"198.51.100.0/24": 1, "203.0.113.0/24": 4, "192.0.2.0/24": 1}
    assert sorted(anomalies(make)) == ["192.0.2.0/24", "203.0.113.0/24"]


def test_refused_requests_are_not_tallied(make, app_with):
    app = app_with(KEYWARD_RATE_LIMITS={"free": "2/minute"})
    factory = Factory(app)
    issued = factory.token(factory.member(factory.org("free"), "editor"))
    client = app.test_client()
    statuses = [me(client, issued).status_code for _ in range(4)]
    assert statuses == [200, 200, 429, 429]
    factory.flush_usage()
    assert counts(factory, issued.id)[0] == 2


@pytest.mark.parametrize("value", ["0", "-1", "soon", "86400"])
def test_a_bad_flush_interval_is_a_clear_error(app_config, value, monkeypatch):
    from shared.app import create_app
    from shared.core.config import ConfigError

    monkeypatch.setenv("KEYWARD_USAGE_FLUSH_SECONDS", value)
    with pytest.raises(ConfigError, match="KEYWARD_USAGE_FLUSH_SECONDS"):
        create_app(app_config)


def test_the_workers_sweep_writes_waiting_usage_and_forgets_long_gone_processes(client, make, runner, clock):
    from shared.core.extensions import db
    from shared.models import UsageFlush

    issued = make.token(make.api_member(make.org(), "editor"))
    me(client, issued)
    with make.app.app_context():
        db.session.add(UsageFlush(source="process:gone:1:x", last_batch=7,
                                  updated_at=clock.now() - timedelta(days=31)))
        db.session.commit()
    assert runner.invoke(args=["worker", "--once"]).exit_code == 0
    assert counts(make, issued.id)[0] == 1
    sources = make.run(lambda: set(db.session.scalars(select(UsageFlush.source))))
    assert "process:gone:1:x" not in sources and len(sources) == 1  # this process's own mark stays


# --------------------------------------------------------------------------- Redis


@pytest.mark.skipif(bool(TEST_DATABASE_URL or TEST_REDIS_URL), reason="a SQLite file and tallies in memory")
def test_a_stopping_process_writes_its_tallies_through_a_connection_still_open(app, client, make):
    """The database's folder gone as the process stops (tests/test_faults.py does it to gunicorn):
    its last flush can still write through a connection opened before, the token lookup's."""
    from shared.core.extensions import db
    from shared.tokens import usage_tally

    issued = make.token(make.api_member(make.org(), "editor"))
    for _ in range(3):
        assert me(client, issued).status_code == 200
    usage = usage_tally.accounting(app)
    usage.interval = 3600  # a server's flusher (tests run without one), which has not flushed yet
    usage._start()
    with app.app_context():
        db.engine.pool.dispose()  # no pooled connection left open; the lookup holds its own
    folder = Path(app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")).parent
    away = folder.with_name(f"{folder.name}-away")
    folder.rename(away)
    try:
        assert usage.close()
    finally:
        away.rename(folder)
    assert counts(make, issued.id)[0] == 3


@needs_redis
def test_with_redis_a_request_costs_one_round_trip(client, make, monkeypatch):
    from redis.connection import Connection

    issued = make.token(make.api_member(make.org(), "editor"))
    me(client, issued)  # scripts loaded
    sent = []
    real = Connection.send_packed_command

    def counting(connection, command, check_health=True):
        packed = command if isinstance(command, bytes) else b"".join(bytes(part) for part in command)
        sent.append(packed.split(b"\r\n")[2].decode().upper())  # *<n> $<length> <name> ...
        return real(connection, command, check_health)

    # Every command any connection sends, whichever way it is sent (client, pipeline, held connection).
    monkeypatch.setattr(Connection, "send_packed_command", counting)
    assert me(client, issued).status_code == 200
    monkeypatch.undo()
    # One round trip: the address's failed attempts, the window's increment and the tally together.
    assert sent == ["EVALSHA"]
    make.flush_usage()
    assert counts(make, issued.id)[0] == 2


@needs_redis
def test_with_redis_a_drain_cut_short_before_its_commit_loses_nothing(client, make):
    from shared.tokens import usage_tally

    issued = make.token(make.api_member(make.org(), "editor"))
    for _ in range(3):
        me(client, issued)
    tallies = usage_tally.accounting(make.app).redis
    _, pending = tallies.cut()  # a drainer renamed the live tally to a batch... and died
    assert len(pending) == 1
    me(client, issued)
    make.flush_usage()  # any process: the pending batch, then the new one
    assert counts(make, issued.id)[0] == 4
    assert tallies.cut()[1] == []


@needs_redis
def test_with_redis_a_drain_cut_short_after_its_commit_counts_nothing_twice(client, make):
    from shared.core.extensions import db
    from shared.tokens import usage_batches, usage_tally

    issued = make.token(make.api_member(make.org(), "editor"))
    for _ in range(3):
        me(client, issued)
    tallies = usage_tally.accounting(make.app).redis
    epoch, [number] = tallies.cut()
    with make.app.app_context(), db.engine.connect() as connection:  # applied... and died before deleting
        applied = usage_batches.apply_batch(connection, tallies.read(number), tallies.source(epoch), number)
    assert applied.requests == 3
    make.flush_usage()
    assert counts(make, issued.id)[0] == 3
    assert tallies.cut()[1] == [] and not tallies.client.exists(f"{tallies.batch_prefix}{number}")


@needs_redis
def test_with_redis_two_drainers_of_one_batch_apply_it_once(client, make):
    from shared.core.extensions import db
    from shared.tokens import usage_batches, usage_tally

    issued = make.token(make.api_member(make.org(), "editor"))
    me(client, issued)
    tallies = usage_tally.accounting(make.app).redis
    epoch, [number] = tallies.cut()
    batch = tallies.read(number)
    with make.app.app_context(), db.engine.connect() as connection:
        first = usage_batches.apply_batch(connection, batch, tallies.source(epoch), number)
        second = usage_batches.apply_batch(connection, batch, tallies.source(epoch), number)
    assert (first.requests, first.again, second.requests, second.again) == (1, False, 0, True)
    assert counts(make, issued.id)[0] == 1


# --------------------------------------------------------------------------- a real gunicorn


def call(url: str, headers: dict, method: str = "GET") -> int:
    request = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def worker_pids(master: int) -> set[int]:
    pids = set()
    for stat in glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:
            pids.add(int(stat.split("/")[2]))
    return pids


def wait_gone(pids: set[int], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while any(Path(f"/proc/{pid}").exists() for pid in pids):
        assert time.monotonic() < deadline, "the workers did not exit"
        time.sleep(0.05)


CLIENTS = 32


def test_32_clients_on_3_workers_are_counted_exactly_once(make, live_server, clock):
    issued = make.token(make.member(make.org(), "editor"))
    # Short intervals: the three workers flush many times, concurrently, while requests arrive.
    server = live_server(workers=3, KEYWARD_USAGE_FLUSH_SECONDS="0.2")
    per_client = 15

    def client(_):
        return [call(server.url + "/api/v1/me", bearer(issued.secret)) for _ in range(per_client)]

    with ThreadPoolExecutor(CLIENTS) as pool:
        statuses = [status for batch in pool.map(client, range(CLIENTS)) for status in batch]
    total = CLIENTS * per_client
    assert statuses == [200] * total
    assert settled(lambda: counts(make, issued.id)[0], total) == total
    server.stop()  # nothing more arrives after a graceful stop
    usage_count, days, networks = counts(make, issued.id)
    assert (usage_count, sum(days.values()), networks) == (total, total, {"127.0.0.0/24": total})
    assert anomalies(make) == []


def test_sigterm_of_the_workers_loses_no_count(make, live_server):
    issued = make.token(make.member(make.org(), "editor"))
    # Tallies in each worker's memory, and no periodic flush within the test: only the stop writes them.
    server = live_server(workers=3, RATELIMIT_STORAGE_URI="memory://", KEYWARD_USAGE_FLUSH_SECONDS="600")
    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(lambda _: call(server.url + "/api/v1/me", bearer(issued.secret)), range(60)))
    assert statuses == [200] * 60
    assert counts(make, issued.id)[0] == 0
    workers = worker_pids(server.process.pid)
    assert len(workers) == 3
    for pid in workers:
        os.kill(pid, signal.SIGTERM)
    wait_gone(workers)
    assert counts(make, issued.id)[0] == 60
    assert call(server.url + "/api/v1/me", bearer(issued.secret)) == 200  # the replacements serve on


def test_sigterm_of_the_development_server_loses_no_count(make, app_config, tmp_path):
    from tests.conftest import ROOT, free_port

    issued = make.token(make.member(make.org(), "editor"))
    port = free_port()
    env = {**os.environ, "DATABASE_URL": app_config["SQLALCHEMY_DATABASE_URI"],
           "RATELIMIT_STORAGE_URI": "memory://", "KEYWARD_QUEUE_URL": app_config["KEYWARD_QUEUE_URL"],
           "KEYWARD_USAGE_FLUSH_SECONDS": "600"}
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "run", "--port", str(port)]
    with open(tmp_path / "flask-run.log", "wb") as log:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/api/v1/me"
        assert settled(lambda: _status_or_none(url, bearer(issued.secret)), 200) == 200
        for _ in range(9):
            assert call(url, bearer(issued.secret)) == 200
        assert counts(make, issued.id)[0] == 0
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    assert counts(make, issued.id)[0] == 10, (tmp_path / "flask-run.log").read_text()


def _status_or_none(url: str, headers: dict) -> int | None:
    try:
        return call(url, headers)
    except OSError:  # not listening yet
        return None


@needs_redis
def test_with_redis_sigkill_of_the_workers_loses_no_count(make, live_server):
    issued = make.token(make.member(make.org(), "editor"))
    server = live_server(workers=3, RATELIMIT_STORAGE_URI=TEST_REDIS_URL, KEYWARD_USAGE_FLUSH_SECONDS="600")
    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(lambda _: call(server.url + "/api/v1/me", bearer(issued.secret)), range(60)))
    assert statuses == [200] * 60
    workers = worker_pids(server.process.pid)
    for pid in workers:
        os.kill(pid, signal.SIGKILL)  # no exit hook runs
    wait_gone(workers)
    make.flush_usage()  # any process drains Redis: this one shares the server's Redis and prefix
    assert counts(make, issued.id)[0] == 60


def test_a_revoked_token_is_refused_on_the_next_request_on_every_worker(make, live_server):
    org = make.org()
    manager = make.token(make.member(org, "admin"), scopes=["tokens"],
                         permissions=["read", "write", "delete"])
    issued = make.token(make.member(org, "editor"))
    server = live_server(workers=3, KEYWARD_AUTH_FAILURE_LIMIT="1000/minute")  # refusals are no guessing here
    url = server.url + "/api/v1/me"
    with ThreadPoolExecutor(12) as pool:  # concurrent requests reach every worker
        assert list(pool.map(lambda _: call(url, bearer(issued.secret)), range(48))) == [200] * 48
        assert call(f"{server.url}/api/v1/tokens/{issued.id}", bearer(manager.secret), "DELETE") == 200
        assert list(pool.map(lambda _: call(url, bearer(issued.secret)), range(48))) == [401] * 48


class Portal:
    """A signed-in browser (cookie jar) against the live server."""

    def __init__(self, base_url: str, email: str, password: str):
        self.base_url = base_url
        cookies = urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        self.opener = urllib.request.build_opener(cookies)
        page = self.get("/login")
        form = urllib.parse.urlencode({"email": email, "password": password, "csrf_token": csrf_from(page)})
        self.opener.open(urllib.request.Request(base_url + "/login", data=form.encode()), timeout=30).read()

    def get(self, path: str) -> str:
        with self.opener.open(self.base_url + path, timeout=30) as response:
            return response.read().decode()


def test_usage_page_api_and_alerts_are_current_within_about_two_flush_intervals(make, live_server):
    interval = 0.5
    org = make.org()
    owner = make.member(org, "owner")
    manager = make.token(owner, scopes=["tokens"], permissions=["read"])
    issued = make.token(make.member(org, "editor"), type="personal")
    server = live_server(workers=3, KEYWARD_USAGE_FLUSH_SECONDS=str(interval), KEYWARD_TRUSTED_PROXIES="1")
    portal = Portal(server.url, owner.email, owner.password)

    def from_(address: str) -> dict:
        return {**bearer(issued.secret), "X-Forwarded-For": address}

    for _ in range(7):
        assert call(server.url + "/api/v1/me", from_("198.51.100.1")) == 200
    assert call(server.url + "/api/v1/me", from_("203.0.113.1")) == 200

    def api_count() -> int:
        request = urllib.request.Request(f"{server.url}/api/v1/tokens/{issued.id}",
                                         headers=bearer(manager.secret))
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["usage_count"]

    def page_count() -> int:
        page = portal.get(f"/settings/api-tokens/{issued.id}")
        match = re.search(r"<dt>Requests</dt><dd>([\d,]+)</dd>", page)
        return int(match.group(1).replace(",", ""))

    # About two intervals, with room for a loaded machine.
    deadline = 2 * interval + 2.0
    assert settled(api_count, 8, timeout=deadline) == 8
    assert settled(page_count, 8, timeout=deadline) == 8
    assert settled(lambda: anomalies(make), ["203.0.113.0/24"], timeout=deadline) == ["203.0.113.0/24"]
