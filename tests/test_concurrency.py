"""Races against a real gunicorn server with several worker processes (SQLite WAL, or PostgreSQL)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import bearer


def call(method: str, url: str, secret: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={**bearer(secret), "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def test_usage_count_exact_with_16_concurrent_clients(make, live_server):
    issued = make.token(make.member(make.org(), "editor"))
    server = live_server(workers=3)
    per_client = 25

    def client(_):
        return [call("GET", server.url + "/api/v1/me", issued.secret)[0] for _ in range(per_client)]

    with ThreadPoolExecutor(16) as pool:
        statuses = [status for batch in pool.map(client, range(16)) for status in batch]
    assert statuses.count(200) == 16 * per_client, set(statuses)
    assert make.get_token(issued.id).usage_count == 16 * per_client


def test_free_plan_limit_holds_when_12_creations_race(make, live_server):
    member = make.member(make.org("free"), "editor")
    key = make.token(member, scopes=["tokens", "documents"], permissions=["read", "write"])
    server = live_server(workers=3)

    def create(i):
        return call("POST", server.url + "/api/v1/tokens", key.secret,
                    {"name": f"race {i}", "scopes": ["documents"], "permissions": ["read"]})

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(create, range(12)))
    statuses = sorted(status for status, _ in results)
    # the calling token is the first of the ten
    assert statuses.count(201) == 9, statuses
    assert statuses.count(409) == 3, statuses
    assert all(body["error"]["code"] == "token_limit_reached" for status, body in results if status == 409)

    def live_count():
        from shared.tokens import active_token_count

        return active_token_count(member.id)

    assert make.run(live_count) == 10
