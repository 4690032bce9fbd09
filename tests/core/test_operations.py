"""Operating at scale: request ids, JSON logs, Prometheus metrics (/metrics, multiprocess under a
real gunicorn) and readiness (/readyz, with a Redis of the test's own stopped)."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.core import logs
from shared.core.config import ConfigError, build_config
from tests.conftest import ROOT, Factory, bearer, csrf_from, free_port

METRICS_TOKEN = "metrics-token-for-tests-0123456789"
SCRAPE = {"Authorization": f"Bearer {METRICS_TOKEN}"}
GENERATED_ID = re.compile(r"[0-9a-f]{32}")


def owner_key(make, plan: str = "business"):
    owner = make.api_member(make.org(plan), "owner")
    return owner, make.token(owner, scopes=["documents", "tokens"], permissions=["read", "write", "delete"],
                             expires_at=None)


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of an exposition."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(text: str, name: str, **labels) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(client) -> str:
    response = client.get("/metrics", headers=SCRAPE)
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


# --------------------------------------------------------------------------- request ids


def test_every_response_carries_its_own_request_id(client, make):
    _, key = owner_key(make)
    responses = [client.get("/healthz"), client.get("/login"), client.get("/api/v1/me", headers=key.headers),
                 client.get("/api/v1/me"), client.get("/no-such-page"), client.get("/static/app.css")]
    for response in responses:
        response.close()  # the static file's
    ids = [response.headers.get("X-Request-Id") for response in responses]
    assert all(GENERATED_ID.fullmatch(request_id or "") for request_id in ids), ids
    assert len(set(ids)) == len(ids)


def test_an_incoming_request_id_is_ignored_without_trusted_proxies(client):
    response = client.get("/healthz", headers={"X-Request-Id": "from-the-client"})
    assert GENERATED_ID.fullmatch(response.headers["X-Request-Id"])


@pytest.mark.parametrize("incoming, kept", [
    ("lb-7f3a.42_x", True),
    ("A" * 64, True),
    ("A" * 65, False),
    ("two words", False),
    ("id;drop", False),
    ("café", False),
    ("", False),
])
def test_behind_trusted_proxies_a_sane_incoming_request_id_is_kept(app_with, incoming, kept):
    client = app_with(KEYWARD_TRUSTED_PROXIES=1).test_client()
    answered = client.get("/healthz", headers={"X-Request-Id": incoming}).headers["X-Request-Id"]
    assert (answered == incoming) is kept
    if not kept:
        assert GENERATED_ID.fullmatch(answered)


def test_api_errors_name_the_request_id(client, make):
    _, key = owner_key(make)
    for response in (client.get("/api/v1/me"), client.get("/api/v1/tokens/tok_nope", headers=key.headers),
                     client.post("/api/v1/tokens", headers=key.headers, json={"name": ""})):
        error = response.get_json()["error"]
        assert response.status_code in (400, 401, 404)
        assert error["request_id"] == response.headers["X-Request-Id"]


def test_the_error_page_shows_the_request_id(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert f"<code>{response.headers['X-Request-Id']}</code>" in response.get_data(as_text=True)


# --------------------------------------------------------------------------- logs


@pytest.fixture
def json_log():
    """The root logger's Keyward handler writing JSON lines into a buffer (as gunicorn's is set up)."""
    root, buffer = logging.getLogger(), io.StringIO()
    level, before = root.level, list(root.handlers)
    logs.install_root_handler(logging.StreamHandler(buffer), "json")
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    for handler in root.handlers[:]:
        if handler not in before:
            root.removeHandler(handler)
    root.setLevel(level)
    logs.request_log.setLevel(logging.NOTSET)
    logging.getLogger("keyward").setLevel(logging.NOTSET)


def test_json_mode_writes_one_request_line_per_request(app_with, json_log):
    app = app_with(KEYWARD_LOG_FORMAT="json")
    _, key = owner_key(Factory(app))
    client = app.test_client()
    accepted = client.get("/api/v1/tokens?per_page=7", headers=key.headers)
    refused = client.get("/api/v1/me", headers=bearer("kw_not_a_token"))
    lines = [line for line in json_log() if line["logger"] == "keyward.request"]
    assert [(line["method"], line["path"], line["status"]) for line in lines] == [
        ("GET", "/api/v1/tokens", 200), ("GET", "/api/v1/me", 401)]
    assert [line["request_id"] for line in lines] == [accepted.headers["X-Request-Id"],
                                                      refused.headers["X-Request-Id"]]
    assert [line["token_id"] for line in lines] == [key.id, None]
    assert all(isinstance(line["duration_ms"], float) and line["duration_ms"] > 0 for line in lines)
    assert {"time", "level"} <= lines[0].keys() and lines[0]["level"] == "info"
    text = json.dumps(lines)
    assert key.secret not in text and "per_page" not in text


def test_text_mode_writes_no_request_line(app_with, json_log):
    client = app_with(KEYWARD_LOG_FORMAT="text").test_client()
    client.get("/healthz")
    assert not [line for line in json_log() if line["logger"] == "keyward.request"]


def test_an_unexpected_error_is_logged_with_its_request_id(app_with, json_log):
    app = app_with(KEYWARD_LOG_FORMAT="json")

    def broken():
        raise RuntimeError("boom")

    app.add_url_rule("/broken", view_func=broken)
    response = app.test_client().get("/broken")
    assert response.status_code == 500
    [error] = [line for line in json_log() if line["level"] == "error"]
    assert error["request_id"] == response.headers["X-Request-Id"]
    assert "unhandled error on GET /broken" in error["message"] and "RuntimeError: boom" in error["exception"]
    assert response.headers["X-Request-Id"] in response.get_data(as_text=True)


class Gunicorn:
    """gunicorn with gunicorn.conf.py (as deployed) on a free loopback port, against the test's data."""

    def __init__(self, app_config: dict, log_path: Path, *args: str, **env: str):
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log_path = log_path
        environment = {**os.environ, "DATABASE_URL": app_config["SQLALCHEMY_DATABASE_URI"],
                       "RATELIMIT_STORAGE_URI": app_config["RATELIMIT_STORAGE_URI"],
                       "RATELIMIT_KEY_PREFIX": app_config["RATELIMIT_KEY_PREFIX"],
                       "KEYWARD_QUEUE_URL": app_config["KEYWARD_QUEUE_URL"], **env}
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-b", self.url.removeprefix("http://"), *args],
                cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("gunicorn did not start:\n" + self.output())
            time.sleep(0.1)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def get(self, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def gunicorn(app_config, tmp_path):
    started: list[Gunicorn] = []

    def start(*args: str, **env: str) -> Gunicorn:
        started.append(Gunicorn(app_config, tmp_path / f"gunicorn-{len(started)}.log", *args, **env))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def test_under_gunicorn_json_mode_makes_every_line_json(gunicorn, make):
    _, key = owner_key(make)
    server = gunicorn("-w", "1", "--log-level", "info", KEYWARD_LOG_FORMAT="json", GUNICORN_ACCESS_LOG="-")
    status, headers, _ = server.get("/api/v1/tokens?per_page=7", bearer(key.secret))
    assert status == 200
    _, missing_headers, _ = server.get("/nowhere")
    server.stop()
    lines = [json.loads(line) for line in server.output().splitlines() if line.strip()]  # all JSON
    requests = [line for line in lines if line["logger"] == "keyward.request"]
    assert [(r["path"], r["status"], r["token_id"], r["request_id"]) for r in requests if r["path"] != "/healthz"] == [
        ("/api/v1/tokens", 200, key.id, headers["X-Request-Id"]),
        ("/nowhere", 404, None, missing_headers["X-Request-Id"])]
    gunicorn_lines = [line for line in lines if line["logger"] == "gunicorn.error"]
    assert any("Booting worker" in line["message"] for line in gunicorn_lines)
    assert key.secret not in server.output() and "per_page" not in server.output()


# --------------------------------------------------------------------------- metrics


def test_metrics_are_off_by_default(client):
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers=SCRAPE).status_code == 404


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-0123456789"},
                                     {"Authorization": f"Basic {METRICS_TOKEN}"},
                                     {"Authorization": f"Bearer {METRICS_TOKEN}x"},
                                     {"Authorization": "Bearer"}])
def test_metrics_need_the_metrics_bearer_token(app_with, headers):
    response = app_with(KEYWARD_METRICS_TOKEN=METRICS_TOKEN).test_client().get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "keyward_" not in response.get_data(as_text=True)


def test_metrics_are_in_the_prometheus_text_format(app_with):
    response = app_with(KEYWARD_METRICS_TOKEN=METRICS_TOKEN).test_client().get("/metrics", headers=SCRAPE)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain; version=")
    assert response.headers["Cache-Control"] == "no-store"
    names = {family.name for family in text_string_to_metric_families(response.get_data(as_text=True))}
    assert {"keyward_http_requests", "keyward_http_request_duration_seconds", "keyward_api_auth_refusals",
            "keyward_rate_limited_requests", "keyward_token_operations", "keyward_usage_flush_lag_seconds",
            "keyward_usage_flush_batch_size", "keyward_webhook_deliveries", "keyward_webhook_delivery_seconds",
            "keyward_reminders_sent", "keyward_emails_sent", "keyward_queue_depth", "keyward_queue_reachable",
            "keyward_outbox_pending_events", "keyward_webhook_deliveries_due",
            "keyward_webhook_oldest_due_seconds"} <= names


def test_requests_are_counted_by_url_rule_and_status_never_by_path_or_token(app_with):
    app = app_with(KEYWARD_METRICS_TOKEN=METRICS_TOKEN)
    make = Factory(app)
    owner, key = owner_key(make)
    others = [make.token(owner) for _ in range(2)]
    client = app.test_client()
    before = scrape(client)
    for other in others:
        assert client.get(f"/api/v1/tokens/{other.id}", headers=key.headers).status_code == 200
    assert client.get("/api/v1/tokens/tok_missing", headers=key.headers).status_code == 404
    client.open("/api/v1/me", method="BREW", headers=key.headers)
    after = scrape(client)
    rule = "/api/v1/tokens/<token_id>"

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("keyward_http_requests_total", endpoint=rule, method="GET", status="200") == 2
    assert delta("keyward_http_requests_total", endpoint=rule, method="GET", status="404") == 1
    assert delta("keyward_http_request_duration_seconds_count", endpoint=rule) == 3
    assert delta("keyward_http_requests_total", endpoint="unmatched", method="other", status="405") == 1
    for secret_or_id in [key.secret, key.id, "tok_missing", "BREW", *(o.id for o in others)]:
        assert secret_or_id not in after


def test_auth_refusals_are_counted_by_code_and_rate_limits_by_url_rule(app_with):
    app = app_with(KEYWARD_METRICS_TOKEN=METRICS_TOKEN, KEYWARD_RATE_LIMITS={"business": "2/minute"})
    make = Factory(app)
    owner, key = owner_key(make)
    parked = make.token(owner)
    client = app.test_client()
    assert client.post(f"/api/v1/tokens/{parked.id}/deactivate", headers=key.headers).status_code == 200
    before = scrape(client)
    assert client.get("/api/v1/me", headers=bearer("kw_nope")).status_code == 401
    assert client.get("/api/v1/me").status_code == 401
    assert client.get("/api/v1/me", headers=parked.headers).status_code == 401
    # The key's 2nd and 3rd requests this minute (the deactivation was its 1st).
    assert [client.get("/api/v1/me", headers=key.headers).status_code for _ in range(2)] == [200, 429]
    after = scrape(client)
    assert value(after, "keyward_api_auth_refusals_total", code="invalid_api_key") - \
        value(before, "keyward_api_auth_refusals_total", code="invalid_api_key") == 2
    assert value(after, "keyward_api_auth_refusals_total", code="token_inactive") - \
        value(before, "keyward_api_auth_refusals_total", code="token_inactive") == 1
    assert value(after, "keyward_rate_limited_requests_total", endpoint="/api/v1/me") - \
        value(before, "keyward_rate_limited_requests_total", endpoint="/api/v1/me") == 1


def test_token_operations_are_counted_once_committed(app_with):
    app = app_with(KEYWARD_METRICS_TOKEN=METRICS_TOKEN)
    _, key = owner_key(Factory(app))
    client = app.test_client()
    before = scrape(client)
    created = client.post("/api/v1/tokens", headers=key.headers, json={"name": "ci", "scopes": ["documents"],
                                                                      "permissions": ["read"]})
    token_id = created.get_json()["token"]["id"]
    assert client.post(f"/api/v1/tokens/{token_id}/regenerate", headers=key.headers).status_code == 200
    assert client.delete(f"/api/v1/tokens/{token_id}", headers=key.headers).status_code == 200
    assert client.delete(f"/api/v1/tokens/{token_id}", headers=key.headers).status_code == 409  # nothing happens
    assert client.post("/api/v1/tokens", headers=key.headers, json={"name": ""}).status_code == 400
    after = scrape(client)
    for operation, count in (("created", 1), ("regenerated", 1), ("revoked", 1)):
        assert value(after, "keyward_token_operations_total", operation=operation) - \
            value(before, "keyward_token_operations_total", operation=operation) == count, operation


def test_usage_flushes_are_measured_by_size_and_lag_and_failures_counted(app_with, clock, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from shared.tokens import usage_batches, usage_flush

    app = app_with(KEYWARD_METRICS_TOKEN=METRICS_TOKEN)
    make = Factory(app)
    owner, key = owner_key(make)
    other = make.token(owner)
    client = app.test_client()
    make.flush_usage()  # whatever making them counted
    before = scrape(client)
    assert client.get("/api/v1/me", headers=key.headers).status_code == 200
    clock.advance(seconds=2)
    for _ in range(3):
        assert client.get("/api/v1/me", headers=other.headers).status_code == 200
    clock.advance(seconds=3)

    def database_down(connection, tally):
        raise OperationalError("UPDATE", {}, Exception("server closed the connection unexpectedly"))

    real_apply = usage_batches._apply
    monkeypatch.setattr(usage_batches, "_apply", database_down)
    assert usage_flush.flush_now(app) is False
    monkeypatch.setattr(usage_batches, "_apply", real_apply)
    make.flush_usage()  # the batch kept from the failed flush: 2 tokens, its oldest request 5 s old
    after = scrape(client)

    def delta(name):
        return value(after, name) - value(before, name)

    assert delta("keyward_usage_flush_failures_total") == 1
    assert delta("keyward_usage_flush_batch_size_count") == 1
    assert delta("keyward_usage_flush_batch_size_sum") == 2
    assert delta("keyward_usage_flush_lag_seconds_sum") == 5.0


def test_the_backlog_is_read_at_scrape_time(app_with):
    app = app_with(KEYWARD_METRICS_TOKEN=METRICS_TOKEN)
    owner_key(Factory(app))  # its token.created event waits: no worker has run
    client = app.test_client()
    text = scrape(client)
    assert value(text, "keyward_outbox_pending_events") >= 1
    assert value(text, "keyward_queue_depth") >= 1 and value(text, "keyward_queue_reachable") == 1
    assert app.test_cli_runner().invoke(args=["worker", "--once"]).exit_code == 0
    text = scrape(client)
    assert value(text, "keyward_outbox_pending_events") == 0 and value(text, "keyward_queue_depth") == 0


def _readyz_count(directory: Path) -> dict[str, float]:
    """/readyz requests counted in each worker process's file of the multiprocess folder."""
    from prometheus_client.multiprocess import MultiProcessCollector

    counts = {}
    for path in directory.glob("counter_*.db"):
        for metric in MultiProcessCollector.merge([str(path)]):
            for sample in metric.samples:
                if sample.name == "keyward_http_requests_total" and sample.labels.get("endpoint") == "/readyz":
                    counts[path.name] = counts.get(path.name, 0) + sample.value
    return counts


def test_under_gunicorn_with_two_workers_metrics_add_up_every_process(gunicorn, tmp_path):
    folder = tmp_path / "prometheus"
    folder.mkdir()
    (folder / "counter_999999.db").write_bytes(b"left by an earlier run")  # emptied at start
    server = gunicorn("-w", "2", PROMETHEUS_MULTIPROC_DIR=str(folder), KEYWARD_METRICS_TOKEN=METRICS_TOKEN)
    assert not (folder / "counter_999999.db").exists()
    status, _, _ = server.get("/metrics")
    assert status == 401
    sent = 0
    with ThreadPoolExecutor(8) as pool:
        # Until both workers have served some (bounded): concurrent requests reach both.
        while len([n for n in _readyz_count(folder).values() if n > 0]) < 2 and sent < 2000:
            statuses = list(pool.map(lambda _: server.get("/readyz")[0], range(40)))
            assert set(statuses) == {200}
            sent += 40
    per_process = _readyz_count(folder)
    assert len([n for n in per_process.values() if n > 0]) == 2 and sum(per_process.values()) == sent
    for _ in range(6):  # whichever worker answers the scrape, it reports every worker's requests
        status, _, body = server.get("/metrics", SCRAPE)
        assert status == 200
        assert value(body.decode(), "keyward_http_requests_total", endpoint="/readyz", method="GET",
                     status="200") == sent


# --------------------------------------------------------------------------- readiness


def test_readyz_checks_the_database_the_queue_and_redis_rate_limits_when_configured(client, rate_limit_storage):
    response = client.get("/readyz")
    assert response.status_code == 200
    checks = {"database": "ok", "queue": "ok"}
    if rate_limit_storage.startswith("redis://"):
        checks["rate_limits"] = "ok"
    assert response.get_json() == {"status": "ok", "checks": checks}


def test_readyz_is_503_naming_the_database_when_it_is_gone(app_with, tmp_path):
    client = app_with(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'missing' / 'keyward.db'}",
                      RATELIMIT_STORAGE_URI="memory://").test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "checks": {"database": "unavailable", "queue": "ok"}}


@pytest.fixture
def own_redis():
    """A redis-server of this test's own on a free loopback port (never the machine's shared one)."""
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.skip("needs redis-server")
    port = free_port()
    process = subprocess.Popen([executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    connection = redis.Redis(port=port, socket_connect_timeout=1)
    deadline = time.monotonic() + 10
    while True:
        try:
            connection.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.05)
    yield port, process
    if process.poll() is None:
        process.kill()
        process.wait(10)


def test_readyz_reports_the_queue_and_rate_limit_redis_and_503_when_it_stops(app_with, own_redis):
    port, redis_process = own_redis
    client = app_with(RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{port}/0",
                      KEYWARD_QUEUE_URL=f"redis://127.0.0.1:{port}/1").test_client()
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok",
                                   "checks": {"database": "ok", "queue": "ok", "rate_limits": "ok"}}
    redis_process.kill()
    redis_process.wait(10)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "checks": {
        "database": "ok", "queue": "unavailable", "rate_limits": "unavailable"}}
    assert client.get("/healthz").status_code == 200  # liveness: the database still answers


def _serving_on_own_redis(app_with, port: int):
    """An app whose rate limits and tallies are in the test's own Redis, a token, and one request
    it answered: (factory, issued token, client)."""
    app = app_with(RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{port}/0")
    make = Factory(app)
    issued = make.token(make.api_member(make.org(), "editor"))
    client = app.test_client()
    assert client.get("/api/v1/me", headers=issued.headers).status_code == 200
    return make, issued, client


def test_without_the_rate_limit_redis_requests_are_refused_as_unavailable_never_a_500(app_with, own_redis,
                                                                                       caplog):
    port, redis_process = own_redis
    _, issued, client = _serving_on_own_redis(app_with, port)
    redis_process.kill()
    redis_process.wait(10)

    response = client.get("/api/v1/me", headers=issued.headers)
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == "unavailable"
    assert response.headers["Retry-After"] == "5"
    # Signing in is throttled through the same Redis: the page says so instead of failing.
    form = {"email": "someone@example.test", "password": "wrong password",
            "csrf_token": csrf_from(client.get("/login").get_data(as_text=True))}
    page = client.post("/login", data=form)
    assert page.status_code == 503 and "temporarily unavailable" in page.get_data(as_text=True)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no unhandled error logged


def test_a_redis_connection_dropped_or_scripts_forgotten_cost_no_request_and_no_count(app_with, own_redis):
    """Each request's count runs on a Redis connection held between requests: one the server
    closed (a restart, an idle timeout) is replaced, a script it forgot is loaded again, and every
    request is still counted exactly once."""
    import redis

    port, _ = own_redis
    make, issued, client = _serving_on_own_redis(app_with, port)
    admin = redis.Redis(port=port)
    counting = [client_info["id"] for client_info in admin.client_list() if client_info["cmd"] == "evalsha"]
    assert counting  # the connection the count ran on, kept for the next request
    for client_id in counting:
        admin.client_kill_filter(_id=client_id)
    assert client.get("/api/v1/me", headers=issued.headers).status_code == 200
    admin.script_flush()
    assert client.get("/api/v1/me", headers=issued.headers).status_code == 200
    make.flush_usage()
    assert make.get_token(issued.id).usage_count == 3


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize("env, message", [
    ({"KEYWARD_LOG_FORMAT": "xml"}, "KEYWARD_LOG_FORMAT must be text or json"),
    ({"KEYWARD_METRICS_TOKEN": "short"}, "KEYWARD_METRICS_TOKEN must be at least 16 characters"),
    ({"KEYWARD_WEBHOOK_CONCURRENCY": "0"}, "KEYWARD_WEBHOOK_CONCURRENCY must be at least 1"),
    ({"KEYWARD_WEBHOOK_CONCURRENCY": "many"}, "KEYWARD_WEBHOOK_CONCURRENCY must be a whole number"),
])
def test_bad_operations_settings_are_refused_at_start(tmp_path, env, message):
    with pytest.raises(ConfigError, match=message):
        build_config(tmp_path, env)


def test_operations_settings_default_to_off(tmp_path):
    config = build_config(tmp_path, {})
    assert (config["KEYWARD_LOG_FORMAT"], config["KEYWARD_METRICS_TOKEN"], config["KEYWARD_WEBHOOK_CONCURRENCY"],
            config["KEYWARD_WORKER_METRICS_BIND"]) == ("text", None, 8, None)



@pytest.mark.parametrize("settings, message", [
    ({"KEYWARD_WORKER_METRICS_BIND": "127.0.0.1:9464"}, "needs KEYWARD_METRICS_TOKEN"),
    ({"KEYWARD_WORKER_METRICS_BIND": "9464", "KEYWARD_METRICS_TOKEN": METRICS_TOKEN}, "must be host:port"),
])
def test_the_worker_refuses_a_metrics_address_it_cannot_serve(app_with, settings, message):
    result = app_with(**settings).test_cli_runner().invoke(args=["worker"])
    assert result.exit_code == 1 and message in result.output


def test_the_worker_serves_its_metrics_on_its_own_address_behind_the_bearer_token(app_with):
    from shared.monitoring.scrape import serve_worker_metrics

    port = free_port()
    app = app_with(KEYWARD_METRICS_TOKEN=METRICS_TOKEN, KEYWARD_WORKER_METRICS_BIND=f"127.0.0.1:{port}")
    owner_key(Factory(app))  # its token.created event waits in the outbox
    server = serve_worker_metrics(app)
    try:
        base = f"http://127.0.0.1:{port}"

        def get(path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
            try:
                with urllib.request.urlopen(urllib.request.Request(base + path, headers=headers or {}),
                                            timeout=5) as response:
                    return response.status, response.read().decode()
            except urllib.error.HTTPError as error:
                return error.code, error.read().decode()

        assert get("/elsewhere", SCRAPE)[0] == 404
        status, body = get("/metrics", {"Authorization": "Bearer wrong-token-0123456789"})
        assert status == 401 and "keyward_" not in body
        status, body = get("/metrics", SCRAPE)
        assert status == 200
        assert value(body, "keyward_outbox_pending_events") >= 1
    finally:
        server.shutdown()
        server.server_close()
