"""Races against a real gunicorn server with several worker processes (SQLite WAL, or PostgreSQL when
TEST_DATABASE_URL is set: live_server serves the test database)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import bearer, settled


def call(method: str, url: str, secret: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={**bearer(secret), "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


CLIENTS = 32


def test_usage_count_exact_with_32_concurrent_clients_over_4_workers(make, live_server):
    issued = make.token(make.member(make.org(), "editor"))
    server = live_server(workers=4)
    per_client = 20

    def client(_):
        return [call("GET", server.url + "/api/v1/me", issued.secret)[0] for _ in range(per_client)]

    with ThreadPoolExecutor(CLIENTS) as pool:
        statuses = [status for batch in pool.map(client, range(CLIENTS)) for status in batch]
    assert statuses.count(200) == CLIENTS * per_client, set(statuses)
    # Each worker's flusher writes its tally within about two intervals.
    assert settled(lambda: make.get_token(issued.id).usage_count, CLIENTS * per_client) == CLIENTS * per_client
    assert make.get_token(issued.id).last_used_ip == "127.0.0.1"


def test_usage_count_exact_when_32_clients_also_write_with_the_token(make, live_server):
    """Requests that write (here: create tokens) commit again after counting; no count may be lost."""
    issued = make.token(make.member(make.org(), "editor"), scopes=["tokens", "documents"],
                        permissions=["read", "write"])
    server = live_server(workers=4)
    per_client = 10

    def client(n):
        statuses = []
        for i in range(per_client):
            if i % 3 == 0:
                statuses.append(call("POST", server.url + "/api/v1/tokens", issued.secret,
                                     {"name": f"client {n}-{i}", "scopes": ["documents"], "permissions": ["read"]})[0])
            else:
                statuses.append(call("GET", server.url + "/api/v1/me", issued.secret)[0])
        return statuses

    with ThreadPoolExecutor(CLIENTS) as pool:
        statuses = [status for batch in pool.map(client, range(CLIENTS)) for status in batch]
    assert sorted(set(statuses)) == [200, 201], set(statuses)
    assert settled(lambda: make.get_token(issued.id).usage_count, CLIENTS * per_client) == CLIENTS * per_client


def test_free_plan_limit_holds_when_32_creations_race(make, live_server):
    member = make.member(make.org("free"), "editor")
    key = make.token(member, scopes=["tokens", "documents"], permissions=["read", "write"])
    server = live_server(workers=4)

    def create(i):
        return call("POST", server.url + "/api/v1/tokens", key.secret,
                    {"name": f"race {i}", "scopes": ["documents"], "permissions": ["read"]})

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(create, range(CLIENTS)))
    statuses = sorted(status for status, _ in results)
    # the calling token is the first of the ten
    assert statuses.count(201) == 9, statuses
    assert statuses.count(409) == CLIENTS - 9, statuses
    assert all(body["error"]["code"] == "token_limit_reached" for status, body in results if status == 409)

    def live_count():
        from shared.tokens.access import active_token_count

        return active_token_count(member.id)

    assert make.run(live_count) == 10
