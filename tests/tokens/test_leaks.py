"""POST /api/v1/leaks: live values are revoked at once, and the answer never tells."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.conftest import bearer

LEAKS = "/api/v1/leaks"
URL = "https://gist.example/abc"


@pytest.fixture
def org(make):
    return make.org("business")


def _notified(make, token_public_id: str) -> set[str]:
    """Emails of the users notified about this token."""
    from shared.core.extensions import db
    from shared.models import ApiToken, Notification, User

    with make.app.app_context():
        token_id = db.session.scalars(select(ApiToken.id).where(ApiToken.public_id == token_public_id)).one()
        return set(db.session.scalars(select(User.email).join(Notification, Notification.user_id == User.id)
                                      .where(Notification.token_id == token_id, Notification.kind == "exposed")))


def _events(make, event_type: str) -> list:
    from shared.core.extensions import db
    from shared.models import Event

    with make.app.app_context():
        return list(db.session.scalars(select(Event).where(Event.type == event_type)))


def test_a_live_value_is_revoked_audited_and_notified(client, make, org):
    owner = make.api_member(org, "owner")
    admin = make.api_member(org, "admin")
    make.api_member(org, "viewer")
    editor = make.api_member(org, "editor")
    issued = make.token(editor)

    response = client.post(LEAKS, json={"tokens": [issued.secret], "url": URL},
                           environ_base={"REMOTE_ADDR": "203.0.113.9"})

    assert response.status_code == 202 and response.json == {"received": 1}
    token = make.get_token(issued.id)
    assert token.revoked_at is not None and token.revoked_reason == "exposed"
    assert client.get("/api/v1/me", headers=issued.headers).json["error"]["code"] == "invalid_api_key"
    [event] = make.audit("token.revoked")
    assert event.details["reason"] == "exposed" and event.details["url"] == URL
    assert event.source_ip == "203.0.113.9" and event.actor_user_id is None
    # A personal token, but exposure is serious: its creator and the org's owners and admins hear of it.
    assert _notified(make, issued.id) == {editor.email, owner.email, admin.email}
    [exposed] = _events(make, "token.exposed")
    assert exposed.data["token"]["id"] == issued.id and issued.secret not in str(exposed.data)
    assert not _events(make, "token.revoked")


def test_revoked_as_exposed_shows_in_the_token_object(client, make, org):
    owner = make.api_member(org, "owner")
    manager = make.token(owner, scopes=["tokens"])
    issued = make.token(make.api_member(org, "editor"))
    client.post(LEAKS, json={"tokens": [issued.secret]})
    answer = client.get(f"/api/v1/tokens/{issued.id}", headers=manager.headers).json
    assert answer["status"] == "revoked" and answer["revoked_reason"] == "exposed"


def test_unknown_and_malformed_values_change_nothing_and_answer_the_same_bytes(client, make, org):
    issued = make.token(make.api_member(org, "editor"))
    forged = issued.secret[:-1] + ("0" if issued.secret[-1] != "0" else "1")  # checksum no longer matches

    live = client.post(LEAKS, json={"tokens": [issued.secret, "hello"], "url": URL})
    make.token(make.api_member(org, "editor"))  # a fresh org state for the second call to compare with
    dead = client.post(LEAKS, json={"tokens": [forged, "kw_" + "0" * 64], "url": URL})

    assert live.status_code == dead.status_code == 202
    assert live.data == dead.data == b'{"received":2}\n'
    assert live.headers["Content-Type"] == dead.headers["Content-Type"]
    assert set(live.headers.keys()) == set(dead.headers.keys())
    assert [e.details["reason"] for e in make.audit("token.revoked")] == ["exposed"]  # only the live one


def test_a_value_in_its_grace_period_is_live_and_one_past_it_is_not(client, make, org, clock):
    owner = make.api_member(org, "owner")
    manager = make.token(owner, scopes=["tokens", "documents"], permissions=["read", "write"])
    graced = make.token(make.api_member(org, "editor"))
    expired = make.token(make.api_member(org, "editor"))
    for issued in (graced, expired):
        answer = client.post(f"/api/v1/tokens/{issued.id}/regenerate", json={"grace_period": "1h"},
                             headers=manager.headers)
        assert answer.status_code == 200
    clock.advance(minutes=30)
    client.post(LEAKS, json={"tokens": [graced.secret]})
    assert make.get_token(graced.id).revoked_reason == "exposed"

    clock.advance(hours=1)  # expired's old value is past its grace: reporting it does nothing
    client.post(LEAKS, json={"tokens": [expired.secret]})
    assert make.get_token(expired.id).revoked_at is None


@pytest.mark.parametrize("body, field", [
    ({}, "tokens"),
    ({"tokens": []}, "tokens"),
    ({"tokens": "kw_x"}, "tokens"),
    ({"tokens": ["x"] * 101}, "tokens"),
    ({"tokens": [7]}, "tokens"),
    ({"tokens": ["x"], "url": 5}, "url"),
    ({"tokens": ["x"], "extra": 1}, "extra"),
])
def test_bad_reports_are_400_with_the_field(client, body, field):
    response = client.post(LEAKS, json=body)
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_request" and field in response.json["error"]["fields"]


def test_no_authentication_needed_and_a_token_does_not_change_the_answer(client, make, org):
    issued = make.token(make.api_member(org, "editor"))
    response = client.post(LEAKS, json={"tokens": ["nothing"]}, headers=bearer(issued.secret))
    assert response.status_code == 202 and response.json == {"received": 1}
    assert make.get_token(issued.id).revoked_at is None


def test_reports_are_rate_limited_per_address(app_with, make):
    app = app_with(KEYWARD_LEAK_REPORT_LIMIT="3/minute")
    client = app.test_client()
    here, there = {"REMOTE_ADDR": "198.51.100.1"}, {"REMOTE_ADDR": "198.51.100.2"}
    answers = [client.post(LEAKS, json={"tokens": ["x"]}, environ_base=here) for _ in range(3)]
    assert [a.status_code for a in answers] == [202, 202, 202]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["2", "1", "0"]
    refused = client.post(LEAKS, json={"tokens": ["x"]}, environ_base=here)
    assert refused.status_code == 429 and refused.json["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    # Bad requests count too (a limit that only counted good ones would not stop probing).
    assert client.post(LEAKS, json={}, environ_base=here).status_code == 429
    assert client.post(LEAKS, json={"tokens": ["x"]}, environ_base=there).status_code == 202
