"""Rate limits: per token by plan, X-RateLimit-* on every API response to a token,
429 rate_limited with Retry-After; failed authentication and failed sign-ins throttled per client
address; and one limit for all gunicorn workers when Redis holds the counters.

Windows are cut on shared.core.clock: in these tests they stand still for the whole test (or move
with the test's clock), so a minute boundary falling mid-test cannot reset a window being exhausted.
Live servers run on real time, so their tests use windows a test cannot straddle in practice.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.core import ratelimits
from tests.api.helpers import ENDPOINTS, call
from tests.conftest import TEST_REDIS_URL, Factory, bearer, login, settled

RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
ALL_SCOPES = ["documents", "projects", "templates", "analytics", "billing", "tokens"]


def error_code(response) -> str:
    return response.get_json()["error"]["code"]


def rate(response) -> tuple[int, int, int]:
    """(limit, remaining, reset) from the headers; fails when one is missing."""
    missing = [name for name in RATE_HEADERS if name not in response.headers]
    assert not missing, f"{response.status_code} answer without {missing}"
    return tuple(int(response.headers[name]) for name in RATE_HEADERS)


def assert_rate_limited(response, limit: int) -> None:
    assert response.status_code == 429 and error_code(response) == "rate_limited"
    assert set(response.get_json()) == {"error"}
    assert 1 <= int(response.headers["Retry-After"]) <= 61  # whole seconds, rounded up
    assert rate(response)[:2] == (limit, 0)


def owner_with_token(make: Factory, plan: str = "business", **payload):
    org = make.org(plan)
    payload.setdefault("scopes", ALL_SCOPES)
    payload.setdefault("permissions", ["read", "write", "delete"])
    return org, make.token(make.api_member(org, "owner"), **payload)


# --------------------------------------------------------------------------- headers


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_every_endpoint_answers_rate_limit_headers_on_success_and_on_bad_input(client, make, endpoint):
    org, issued = owner_with_token(make)
    doc = make.document(org, "to touch")
    ok = call(client, endpoint, issued, doc=doc, org=org.id)
    bad = call(client, endpoint, issued, doc=doc, org=org.id, query={"unknown": "1"})
    assert (ok.status_code, bad.status_code) == (endpoint.ok, 400)
    (limit, remaining, reset), after = rate(ok), rate(bad)
    assert limit == 600  # business plan default
    assert after[:2] == (600, remaining - 1)
    window_now = ratelimits.window_now()  # the test's window: real time when the test began
    assert window_now < reset <= window_now + 60
    assert abs(after[2] - reset) <= 1  # the same window (Redis reports its TTL in whole seconds)


def test_refusals_after_authentication_carry_the_headers_and_count(client, make):
    _, issued = owner_with_token(make, scopes=["documents"], permissions=["read"])
    answers = [
        client.get("/api/v1/documents", headers=issued.headers),  # 200
        client.get("/api/v1/billing", headers=issued.headers),  # 403 insufficient_scope
        client.delete("/api/v1/documents/1", headers=issued.headers),  # 403 insufficient_permission
        client.get("/api/v1/documents/2000000000", headers=issued.headers),  # 404 not_found
        client.get("/api/v1/documents", headers=issued.headers, query_string={"per_page": 0}),  # 400
    ]
    assert [a.status_code for a in answers] == [200, 403, 403, 404, 400]
    assert [rate(a)[1] for a in answers] == [599, 598, 597, 596, 595]


@pytest.mark.parametrize("plan, limit", [("free", 60), ("business", 600), ("enterprise", 3000)])
def test_limit_follows_the_organizations_plan(client, make, plan, limit):
    _, issued = owner_with_token(make, plan)
    assert rate(client.get("/api/v1/documents", headers=issued.headers))[:2] == (limit, limit - 1)


def test_upgrading_the_plan_raises_the_limit_on_the_next_request(client, make):
    from shared.core.extensions import db
    from shared.models import Organization

    org, issued = owner_with_token(make, "free")
    assert rate(client.get("/api/v1/me", headers=issued.headers))[0] == 60

    def upgrade():
        db.session.get(Organization, org.id).plan = "business"
        db.session.commit()

    make.run(upgrade)
    assert rate(client.get("/api/v1/me", headers=issued.headers))[0] == 600


# --------------------------------------------------------------------------- the per-token limit


def test_free_plan_refuses_the_61st_request_within_a_minute(client, make):
    _, issued = owner_with_token(make, "free", scopes=["documents"])
    remaining = []
    for _ in range(60):
        response = client.get("/api/v1/documents", headers=issued.headers)
        assert response.status_code == 200
        remaining.append(rate(response)[1])
    assert remaining == list(range(59, -1, -1))
    refused = client.get("/api/v1/documents", headers=issued.headers)
    assert_rate_limited(refused, 60)
    assert_rate_limited(client.get("/api/v1/me", headers=issued.headers), 60)  # every endpoint, one budget
    make.flush_usage()
    assert make.get_token(issued.id).usage_count == 60  # refused requests are not counted as used


def test_the_limit_is_per_token_not_per_member_or_address(client, make):
    _, first = owner_with_token(make, "free", scopes=["documents"])
    second = make.token(first.member, scopes=["documents"])
    for _ in range(60):
        client.get("/api/v1/me", headers=first.headers)
    assert client.get("/api/v1/me", headers=first.headers).status_code == 429
    response = client.get("/api/v1/documents", headers=second.headers)
    assert response.status_code == 200 and rate(response)[:2] == (60, 59)


def test_creating_documents_beyond_the_limit_creates_nothing(app_with):
    app = app_with(KEYWARD_RATE_LIMITS={"free": "3/minute"})
    make = Factory(app)
    _, issued = owner_with_token(make, "free", scopes=["documents"], permissions=["read", "write"])
    client = app.test_client()
    statuses = [client.post("/api/v1/documents", headers=issued.headers, json={"title": f"n{i}"}).status_code
                for i in range(5)]
    assert statuses == [201, 201, 201, 429, 429]
    assert make.get_token(issued.id).documents_processed == 3


# --------------------------------------------------------------------------- failed authentication


def test_thirty_failed_authentications_per_minute_then_the_address_is_refused(client, make):
    from shared.tokens.format import generate_secret

    _, issued = owner_with_token(make)
    guesser = {"REMOTE_ADDR": "203.0.113.7"}
    well_formed_but_unknown = make.run(generate_secret)
    attempts = [bearer("kw_guess"), bearer(well_formed_but_unknown), {"X-API-Key": "nope"},
                {"Authorization": "Basic abc"}, {}]
    for i in range(30):
        response = client.get("/api/v1/documents", headers=attempts[i % len(attempts)], environ_base=guesser)
        assert response.status_code == 401 and error_code(response) == "invalid_api_key"
    refused = client.get("/api/v1/documents", headers=bearer("kw_guess"), environ_base=guesser)
    assert refused.status_code == 429 and error_code(refused) == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 61
    # Until the window ends, even a valid token from that address is refused: guessing cannot
    # continue by mixing in good requests.
    assert client.get("/api/v1/documents", headers=issued.headers, environ_base=guesser).status_code == 429
    # A token refused for itself gets the same answer there: the address learns nothing more.
    _, inactive = owner_with_token(make)
    make.run(lambda: _deactivate(inactive.id))
    assert client.get("/api/v1/documents", headers=inactive.headers, environ_base=guesser).status_code == 429
    assert client.get("/api/v1/documents", headers=issued.headers,
                      environ_base={"REMOTE_ADDR": "198.51.100.8"}).status_code == 200


def test_only_unknown_keys_count_as_failed_attempts(app_with, clock):
    app = app_with(KEYWARD_AUTH_FAILURE_LIMIT="3/minute")
    make = Factory(app)
    _, good = owner_with_token(make, scopes=["documents"])
    _, inactive = owner_with_token(make)
    _, expiring = owner_with_token(make, expires_in_days=1)
    make.run(lambda: _deactivate(inactive.id))
    client = app.test_client()
    for _ in range(5):
        assert client.get("/api/v1/documents", headers=good.headers).status_code == 200
        assert client.get("/api/v1/billing", headers=good.headers).status_code == 403
        assert error_code(client.get("/api/v1/me", headers=inactive.headers)) == "token_inactive"
    clock.advance(days=2)
    for _ in range(3):
        assert error_code(client.get("/api/v1/me", headers=expiring.headers)) == "token_expired"
    assert [client.get("/api/v1/me", headers=bearer("kw_x")).status_code for _ in range(4)] == [401, 401, 401, 429]


def _deactivate(public_id: str) -> None:
    from sqlalchemy import update

    from shared.core.extensions import db
    from shared.models import ApiToken

    db.session.execute(update(ApiToken).where(ApiToken.public_id == public_id).values(is_active=False))
    db.session.commit()


def test_failures_are_counted_per_forwarded_client_behind_trusted_proxies(app_with):
    client = app_with(KEYWARD_AUTH_FAILURE_LIMIT="2/minute", KEYWARD_TRUSTED_PROXIES=1).test_client()

    def attempt(client_ip: str) -> int:
        return client.get("/api/v1/me", headers={**bearer("kw_x"), "X-Forwarded-For": client_ip},
                          environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code

    assert [attempt("198.51.100.1") for _ in range(3)] == [401, 401, 429]
    assert attempt("198.51.100.2") == 401  # another client behind the same proxy


def test_a_forged_forwarded_for_does_not_escape_the_throttle(app_with):
    client = app_with(KEYWARD_AUTH_FAILURE_LIMIT="2/minute").test_client()  # no trusted proxy
    statuses = [client.get("/api/v1/me", headers={**bearer("kw_x"), "X-Forwarded-For": f"192.0.2.{i}"},
                           environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code for i in range(3)]
    assert statuses == [401, 401, 429]


# --------------------------------------------------------------------------- failed sign-ins


def test_failed_sign_ins_are_throttled_per_address_whatever_the_email(app_with):
    app = app_with(KEYWARD_LOGIN_FAILURE_LIMIT="3/minute")
    make = Factory(app)
    member = make.api_member(make.org(), "editor")

    def client_at(address: str):
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = address
        return client

    guesser = client_at("203.0.113.20")
    for email in (member.email, "nobody@example.test", "other@example.test"):  # unknown emails count too
        assert login(guesser, email, "wrong password!").status_code == 401
    throttled = login(guesser, member)  # the right password, too late
    assert throttled.status_code == 429 and "Too many failed sign-ins" in throttled.get_data(as_text=True)
    assert guesser.get("/settings/api-tokens").status_code == 302  # not signed in
    colleague = client_at("198.51.100.20")
    assert login(colleague, member).status_code == 302
    assert colleague.get("/settings/api-tokens").status_code == 200


# --------------------------------------------------------------------------- several workers


def _get(url: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            json.loads(response.read())
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_one_limit_holds_across_gunicorn_workers_with_redis(make, live_server, request):
    if not TEST_REDIS_URL:
        pytest.skip("needs TEST_REDIS_URL: with memory:// each worker keeps its own counters "
                    "(CI runs the suite again with Redis)")
    import redis

    _, issued = owner_with_token(make, "free", scopes=["documents"])
    prefix = f"kwtest-workers-{uuid.uuid4().hex}"
    store = redis.Redis.from_url(TEST_REDIS_URL)
    request.addfinalizer(lambda: [store.delete(key) for key in store.scan_iter(f"*{prefix}*")] and None)
    server = live_server(workers=3, RATELIMIT_STORAGE_URI=TEST_REDIS_URL, RATELIMIT_KEY_PREFIX=prefix,
                         KEYWARD_RATE_LIMITS="free=20/year;business=100000/minute;enterprise=100000/minute",
                         KEYWARD_AUTH_FAILURE_LIMIT="5/year")  # a real-time window no test run straddles
    with ThreadPoolExecutor(max_workers=12) as pool:  # concurrent connections, spread over the workers
        statuses = list(pool.map(lambda _: _get(f"{server.url}/api/v1/documents", issued.headers), range(60)))
    assert sorted(statuses) == [200] * 20 + [429] * 40, server.output()
    # The workers' flushers write the tallies within about two intervals.
    assert settled(lambda: make.get_token(issued.id).usage_count, 20) == 20
    guesses = [_get(f"{server.url}/api/v1/me", bearer("kw_guess")) for _ in range(8)]
    assert guesses == [401] * 5 + [429] * 3


# --------------------------------------------------------------------------- windows on the clock


def test_windows_are_cut_on_the_clock_and_reset_when_it_moves_on(app_with, clock):
    app = app_with(KEYWARD_RATE_LIMITS={"free": "3/minute"})
    make = Factory(app)
    _, issued = owner_with_token(make, "free", scopes=["documents"])
    client = app.test_client()
    clock.current = clock.current.replace(second=30)
    window_end = int(clock.current.replace(second=0).timestamp()) + 60
    answers = [client.get("/api/v1/me", headers=issued.headers) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [rate(a) for a in answers[:3]] == [(3, 2, window_end), (3, 1, window_end), (3, 0, window_end)]
    assert answers[3].headers["Retry-After"] == "30"  # to the window's end on the same clock
    clock.advance(seconds=29)
    assert client.get("/api/v1/me", headers=issued.headers).status_code == 429
    clock.advance(seconds=1)  # the next minute: a fresh window
    fresh = client.get("/api/v1/me", headers=issued.headers)
    assert fresh.status_code == 200 and rate(fresh) == (3, 2, window_end + 60)


def test_without_a_test_clock_the_window_stands_still_for_the_whole_test(app_with, monkeypatch):
    """The real clock may cross a minute boundary mid-test; the window the test's requests count in
    does not change."""
    app = app_with(KEYWARD_RATE_LIMITS={"free": "3/minute"})
    make = Factory(app)
    _, issued = owner_with_token(make, "free", scopes=["documents"])
    client = app.test_client()
    first = rate(client.get("/api/v1/me", headers=issued.headers))
    monkeypatch.setattr(time, "time", lambda: first[2] + 1.0)  # real time is now past that window
    answers = [client.get("/api/v1/me", headers=issued.headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert rate(answers[0])[2] == first[2]
