"""Alerts the API's requests call for: a new network (`token.anomaly`) and a canary
token presented (`token.canary_used`), raised by the usage flusher (make.flush_usage), off the
request path."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from tests.conftest import bearer
from tests.statements import statements, writes


def _rows(make, model, **where) -> list:
    from shared.core.extensions import db

    with make.app.app_context():
        query = select(model)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return list(db.session.scalars(query))


def _token_row_id(make, public_id: str) -> int:
    return make.get_token(public_id).id


def _from(address: str) -> dict:
    return {"REMOTE_ADDR": address}


def test_anomaly_fires_once_per_new_network_never_for_known_ones_or_the_first_use(client, make):
    from shared.models import AuditEvent, Event, Notification

    org = make.org()
    creator = make.api_member(org, "editor")
    make.api_member(org, "owner")  # a personal token: owners are not told of its new networks
    issued = make.token(creator)
    token_id = _token_row_id(make, issued.id)
    for address in ("198.51.100.1", "198.51.100.9", "203.0.113.5", "203.0.113.6", "198.51.100.2",
                    "192.0.2.1", "192.0.2.1"):
        assert client.get("/api/v1/me", headers=issued.headers, environ_base=_from(address)).status_code == 200
    make.flush_usage()

    anomalies = _rows(make, Event, type="token.anomaly", token_id=token_id)
    assert [e.data["network"] for e in anomalies] == ["203.0.113.0/24", "192.0.2.0/24"]
    assert issued.secret not in str([e.data for e in anomalies])
    assert [a.details["network"] for a in _rows(make, AuditEvent, action="token.anomaly")] == [
        "203.0.113.0/24", "192.0.2.0/24"]
    notices = _rows(make, Notification, kind="anomaly", token_id=token_id)
    assert {n.user_id for n in notices} == {creator.user_id} and len(notices) == 2
    assert "203.0.113.0/24" in notices[0].message
    assert make.get_token(issued.id).new_network_at is not None


def test_an_organization_tokens_new_network_is_told_to_owners_and_admins(client, make):
    from shared.models import Notification

    org = make.org()
    admin = make.api_member(org, "admin")
    owner = make.api_member(org, "owner")
    issued = make.token(admin, type="organization")
    for address in ("198.51.100.1", "203.0.113.1"):
        client.get("/api/v1/me", headers=issued.headers, environ_base=_from(address))
    make.flush_usage()
    notices = _rows(make, Notification, kind="anomaly")
    assert {n.user_id for n in notices} == {admin.user_id, owner.user_id}


def _make_canary(make, member):
    from shared.core.extensions import db
    from shared.models import ApiToken

    issued = make.token(member, scopes=["documents", "tokens", "billing"], permissions=["read", "write"])
    with make.app.app_context():
        db.session.execute(update(ApiToken).where(ApiToken.public_id == issued.id).values(is_canary=True))
        db.session.commit()
    return issued


def _comparable(response) -> tuple:
    """Status, headers and body, less the date and the request id (random on every response)."""
    request_id = response.headers["X-Request-Id"]
    headers = sorted((k, v) for k, v in response.headers.items() if k not in ("Date", "X-Request-Id"))
    return response.status_code, headers, response.data.replace(request_id.encode(), b"<request id>")


def test_a_canary_is_answered_exactly_as_an_unknown_token(app, make):
    org = make.org()
    canary = _make_canary(make, make.api_member(org, "owner"))
    from shared.tokens.format import _checksum

    unknown = "kw_" + "ab" * 28 + _checksum("ab" * 28)  # well formed, valid checksum, never issued
    # Separate clients and addresses: the failure throttle must be in the same state for both.
    here, there = app.test_client(), app.test_client()
    for path in ("/api/v1/me", "/api/v1/documents", "/api/v1/tokens"):
        tripped = here.get(path, headers=bearer(canary.secret), environ_base=_from("198.51.100.1"))
        unknown_answer = there.get(path, headers=bearer(unknown), environ_base=_from("198.51.100.2"))
        assert tripped.status_code == 401
        assert _comparable(tripped) == _comparable(unknown_answer)


def test_a_canary_takes_as_long_to_answer_as_an_unknown_token(app, make):
    """The trip is recorded by the usage flusher, off the request path: the request itself writes
    nothing, so its time cannot tell a canary from a value nobody issued."""
    import statistics
    import time

    from shared.tokens.format import _checksum

    canary = _make_canary(make, make.api_member(make.org(), "owner"))
    unknown = "kw_" + "cd" * 28 + _checksum("cd" * 28)
    client = app.test_client()
    timings: dict[str, list[float]] = {"canary": [], "unknown": []}
    with statements() as sent:
        for n in range(41):  # interleaved, each from its own network (the failure throttle stays out)
            for kind, secret in (("canary", canary.secret), ("unknown", unknown)):
                began = time.perf_counter()
                answer = client.get("/api/v1/me", headers=bearer(secret),
                                    environ_base=_from(f"10.{n}.{1 if kind == 'canary' else 2}.1"))
                timings[kind].append(time.perf_counter() - began)
                assert answer.status_code == 401
    assert writes(sent) == []
    canary_median, unknown_median = (statistics.median(timings[kind]) for kind in ("canary", "unknown"))
    # The same work: within half again plus half a millisecond (a recorded trip cost ~6x before).
    assert canary_median <= 1.5 * unknown_median + 0.0005, (canary_median, unknown_median)
    make.flush_usage()
    assert make.get_token(canary.id).canary_trips == 41


def test_a_canary_use_is_counted_audited_and_notified_and_never_counted_as_usage(client, make):
    from shared.models import AuditEvent, Event, Notification

    org = make.org()
    owner = make.api_member(org, "owner")
    security = make.api_member(org, "security_manager")
    make.api_member(org, "editor")
    canary = _make_canary(make, owner)

    client.get("/api/v1/documents?q=x", headers={**bearer(canary.secret), "User-Agent": "curl/8.0"},
               environ_base=_from("203.0.113.77"))
    client.post("/api/v1/tokens", json={"name": "x"}, headers=bearer(canary.secret),
                environ_base=_from("203.0.113.77"))
    make.flush_usage()

    token = make.get_token(canary.id)
    assert token.canary_trips == 2 and token.usage_count == 0 and token.last_used_at is None
    [first, second] = _rows(make, AuditEvent, action="token.canary_used")
    assert (first.source_ip, first.user_agent, first.details["path"]) == ("203.0.113.77", "curl/8.0",
                                                                            "/api/v1/documents")
    assert second.details["path"] == "/api/v1/tokens"
    assert len(_rows(make, Event, type="token.canary_used")) == 2
    told = {n.user_id for n in _rows(make, Notification, kind="canary_used")}
    assert told == {owner.user_id, security.user_id}


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/v1/me"), ("GET", "/api/v1/documents"), ("POST", "/api/v1/documents"),
    ("GET", "/api/v1/projects"), ("GET", "/api/v1/templates"), ("GET", "/api/v1/analytics/usage"),
    ("GET", "/api/v1/billing"), ("GET", "/api/v1/tokens"), ("POST", "/api/v1/tokens"),
])
def test_a_canary_grants_nothing(client, make, method, path):
    canary = _make_canary(make, make.api_member(make.org(), "owner"))
    answer = client.open(path, method=method, json={} if method == "POST" else None, headers=bearer(canary.secret))
    assert answer.status_code == 401 and answer.json["error"]["code"] == "invalid_api_key"
