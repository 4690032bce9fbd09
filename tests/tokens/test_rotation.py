"""Rotation with a grace period: Regenerate may keep the old value working for a while.

The old value authenticates as the same token (same id, counters and rate-limit bucket) until
previous_expires_at and not a second longer; ending the grace period, revoking, deactivating or
regenerating again ends it at once. Time moves with the `clock` fixture, never with sleeps.
Covered through the API, the portal and the hub without JavaScript, and against a real server
for two regenerations racing.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from datetime import timedelta

import pytest

from tests.conftest import bearer, csrf_from
from tests.pages import button_labels, csrf, html, row_html, shown_secret, signed_in

TOKENS = "/settings/api-tokens"
HUB = "/hub/api-tokens"
HTMX = {"HX-Request": "true"}
ALL = ["read", "write", "delete"]
# "old value valid until <time datetime=ISO title=exact>relative</time>"
GRACE_NOTE = re.compile(r"old value valid until\s*<time datetime=\"([^\"]+)\" title=\"([^\"]+)\">([^<]+)</time>")


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def org(make):
    return make.org("business", name="Acme")


@pytest.fixture
def admin(make, org):
    return make.member(org, "admin")


@pytest.fixture
def admin_key(make, admin):
    return make.token(admin, name="rotation admin", scopes=["tokens", "documents"], permissions=ALL,
                      expires_at=None)


@pytest.fixture
def target(make, admin):
    return make.token(admin, name="CI deploys")


def regenerate(client, key, token_id: str, grace_period: str | None = None):
    body = {} if grace_period is None else {"grace_period": grace_period}
    return client.post(f"/api/v1/tokens/{token_id}/regenerate", headers=key.headers, json=body)


def regenerated(client, key, token_id: str, grace_period: str | None = None) -> tuple[dict, str]:
    response = regenerate(client, key, token_id, grace_period)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    return body["token"], body["secret"]


def me(client, secret: str):
    return client.get("/api/v1/me", headers=bearer(secret))


def refused(client, secret: str) -> bool:
    """Refused exactly as an unknown value is: 401 invalid_api_key."""
    response = me(client, secret)
    return response.status_code == 401 and response.get_json()["error"]["code"] == "invalid_api_key"


def token_object(client, key, token_id: str) -> dict:
    return client.get(f"/api/v1/tokens/{token_id}", headers=key.headers).get_json()


def previous_columns(make, token_id: str) -> tuple[str | None, object]:
    row = make.get_token(token_id)
    return row.previous_token_hash, row.previous_expires_at


# --------------------------------------------------------------------------- the grace period (API)


def test_old_value_works_during_the_grace_and_is_refused_a_second_after_it(client, make, admin_key, target, clock):
    start = clock.now()
    token, new = regenerated(client, admin_key, target.id, "24h")
    grace_end = start + timedelta(hours=24)
    assert token["previous_expires_at"] == "2026-11-24T12:00:00Z"

    clock.advance(hours=24, seconds=-1)
    old_answer = me(client, target.secret)
    assert old_answer.status_code == 200
    assert old_answer.get_json()["token"]["id"] == target.id  # the same token, not a copy
    assert me(client, new).status_code == 200

    clock.current = grace_end + timedelta(seconds=1)
    assert refused(client, target.secret)
    assert me(client, new).status_code == 200
    assert token_object(client, admin_key, target.id)["previous_expires_at"] is None


@pytest.mark.parametrize(("grace_period", "length"), [("1h", timedelta(hours=1)), ("7d", timedelta(days=7))])
def test_every_grace_period_lasts_as_long_as_its_name(client, admin_key, target, clock, grace_period, length):
    regenerated(client, admin_key, target.id, grace_period)
    clock.advance(seconds=length.total_seconds() - 1)
    assert me(client, target.secret).status_code == 200
    clock.advance(seconds=2)
    assert refused(client, target.secret)


def test_both_values_count_on_the_one_token(client, make, admin_key, target, clock):
    _, new = regenerated(client, admin_key, target.id, "1h")
    for secret in (target.secret, new, target.secret, new, new):
        assert me(client, secret).status_code == 200
    make.flush_usage()
    assert make.get_token(target.id).usage_count == 5
    assert token_object(client, admin_key, target.id)["usage_count"] == 5


def test_both_values_share_one_rate_limit_bucket(make, app_with, clock):
    from tests.conftest import Factory

    app = app_with(KEYWARD_RATE_LIMITS={"free": "4/day", "business": "4/day", "enterprise": "4/day"})
    factory = Factory(app)
    admin = factory.member(factory.org("business"), "admin")
    key = factory.token(admin, scopes=["tokens", "documents"], permissions=ALL)
    target = factory.token(admin)
    client = app.test_client()
    _, new = regenerated(client, key, target.id, "1h")

    answers = [me(client, secret) for secret in (target.secret, new, target.secret, new)]
    assert [a.status_code for a in answers] == [200] * 4
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["3", "2", "1", "0"]
    for secret in (target.secret, new):  # the bucket is the token's, whichever value is sent
        over = me(client, secret)
        assert over.status_code == 429 and over.get_json()["error"]["code"] == "rate_limited"


@pytest.mark.parametrize("grace_period", [None, "none"])
def test_without_a_grace_period_the_old_value_is_refused_at_once(client, make, admin_key, target, clock,
                                                                  grace_period):
    token, new = regenerated(client, admin_key, target.id, grace_period)
    assert token["previous_expires_at"] is None
    assert refused(client, target.secret)
    assert me(client, new).status_code == 200
    assert previous_columns(make, target.id) == (None, None)


def test_end_grace_ends_it_now(client, make, admin_key, target, clock):
    _, new = regenerated(client, admin_key, target.id, "7d")
    response = client.post(f"/api/v1/tokens/{target.id}/end-grace", headers=admin_key.headers)
    assert response.status_code == 200
    assert response.get_json()["previous_expires_at"] is None
    assert refused(client, target.secret)
    assert me(client, new).status_code == 200
    assert previous_columns(make, target.id) == (None, None)
    events = make.audit("token.grace_ended")
    assert len(events) == 1 and events[0].target_id == target.id


def test_revoke_ends_it(client, admin_key, target, clock):
    _, new = regenerated(client, admin_key, target.id, "7d")
    assert client.delete(f"/api/v1/tokens/{target.id}", headers=admin_key.headers).status_code == 200
    assert refused(client, target.secret)
    assert refused(client, new)


def test_deactivate_ends_it_even_after_reactivation(client, admin_key, target, clock):
    _, new = regenerated(client, admin_key, target.id, "7d")
    deactivated = client.post(f"/api/v1/tokens/{target.id}/deactivate", headers=admin_key.headers)
    assert deactivated.get_json()["previous_expires_at"] is None
    assert refused(client, target.secret)
    assert me(client, new).get_json()["error"]["code"] == "token_inactive"
    client.post(f"/api/v1/tokens/{target.id}/reactivate", headers=admin_key.headers)
    assert refused(client, target.secret)
    assert me(client, new).status_code == 200


def test_patch_is_active_false_ends_it_even_after_reactivation(client, admin_key, target, clock):
    _, new = regenerated(client, admin_key, target.id, "24h")
    patched = client.patch(f"/api/v1/tokens/{target.id}", headers=admin_key.headers, json={"is_active": False})
    assert patched.status_code == 200 and patched.get_json()["previous_expires_at"] is None
    client.patch(f"/api/v1/tokens/{target.id}", headers=admin_key.headers, json={"is_active": True})
    assert refused(client, target.secret)
    assert me(client, new).status_code == 200


def test_other_edits_keep_the_grace(client, admin_key, target, clock):
    _, new = regenerated(client, admin_key, target.id, "24h")
    patched = client.patch(f"/api/v1/tokens/{target.id}", headers=admin_key.headers, json={"name": "renamed"})
    assert patched.get_json()["previous_expires_at"] == "2026-11-24T12:00:00Z"
    assert me(client, target.secret).status_code == 200 and me(client, new).status_code == 200


def test_a_second_regeneration_ends_the_first_previous_value(client, make, admin_key, target, clock):
    _, first = regenerated(client, admin_key, target.id, "24h")
    clock.advance(minutes=5)
    token, second = regenerated(client, admin_key, target.id, "1h")
    assert refused(client, target.secret)  # the original: at most one previous value
    assert me(client, first).status_code == 200  # the first new value is now the previous one
    assert me(client, second).status_code == 200
    assert token["previous_expires_at"] == "2026-11-23T13:05:00Z"
    clock.advance(hours=1, seconds=1)
    assert refused(client, first)
    assert me(client, second).status_code == 200


def test_a_second_regeneration_without_grace_leaves_only_the_new_value(client, make, admin_key, target, clock):
    _, first = regenerated(client, admin_key, target.id, "24h")
    token, second = regenerated(client, admin_key, target.id, "none")
    assert refused(client, target.secret) and refused(client, first)
    assert me(client, second).status_code == 200
    assert token["previous_expires_at"] is None
    assert previous_columns(make, target.id) == (None, None)


@pytest.mark.parametrize("grace_period", ["2d", "", "NONE", 24, None, ["1h"], {"h": 1}])
def test_bad_grace_period_is_refused_and_changes_nothing(client, make, admin_key, target, clock, grace_period):
    response = client.post(f"/api/v1/tokens/{target.id}/regenerate", headers=admin_key.headers,
                           json={"grace_period": grace_period})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_request" and "grace_period" in error["fields"]
    assert me(client, target.secret).status_code == 200
    assert make.audit("token.regenerated") == []


def test_token_object_shows_previous_expires_at_only_while_it_lasts(client, admin_key, target, clock):
    assert token_object(client, admin_key, target.id)["previous_expires_at"] is None
    regenerated(client, admin_key, target.id, "1h")
    assert token_object(client, admin_key, target.id)["previous_expires_at"] == "2026-11-23T13:00:00Z"
    items = client.get("/api/v1/tokens", headers=admin_key.headers).get_json()["items"]
    assert {t["id"]: t["previous_expires_at"] for t in items}[target.id] == "2026-11-23T13:00:00Z"
    clock.advance(hours=1)
    assert token_object(client, admin_key, target.id)["previous_expires_at"] is None


def test_regeneration_is_audited_with_its_grace_period(client, make, admin_key, target, clock):
    regenerated(client, admin_key, target.id, "24h")
    regenerated(client, admin_key, target.id)
    first, second = make.audit("token.regenerated")
    assert first.target_id == second.target_id == target.id
    assert first.details["grace_period"] == "24h"
    assert first.details["previous_expires_at"].startswith("2026-11-24T12:00:00")
    assert second.details["grace_period"] == "none" and second.details["previous_expires_at"] is None
    assert target.secret not in json.dumps(first.details)


def test_end_grace_without_a_grace_is_harmless_and_not_audited(client, make, admin_key, target, clock):
    response = client.post(f"/api/v1/tokens/{target.id}/end-grace", headers=admin_key.headers)
    assert response.status_code == 200 and response.get_json()["previous_expires_at"] is None
    assert me(client, target.secret).status_code == 200
    assert make.audit("token.grace_ended") == []


def test_end_grace_of_another_orgs_token_is_not_found(client, make, admin_key, clock):
    elsewhere = make.org()
    theirs = make.token(make.member(elsewhere, "admin"))
    assert client.post(f"/api/v1/tokens/{theirs.id}/end-grace", headers=admin_key.headers).status_code == 404


# --------------------------------------------------------------------------- the portal without JavaScript


def portal_regenerate(client, token_id: str, grace_period: str, **headers):
    page = html(client.get(f"{TOKENS}/{token_id}/regenerate"))
    return client.post(f"{TOKENS}/{token_id}/regenerate",
                       data={"csrf_token": csrf_from(page), "grace_period": grace_period}, headers=headers)


def test_regenerate_dialog_offers_the_grace_periods_from_one_table(client, make, admin, target):
    from shared.tokens.lifecycle import GRACE_PERIODS

    signed_in(client, admin)
    assert f'action="{TOKENS}/{target.id}/regenerate"' in row_html(html(client.get(TOKENS)), target.id)
    # The row's Regenerate fetches the page's one dialog (htmx); it holds the select.
    dialog = html(client.get(f"{TOKENS}/{target.id}/regenerate", query_string={"next": TOKENS}, headers=HTMX))
    assert re.search(r'<dialog[^>]*id="confirm-regenerate"[^>]*data-reopen', dialog)
    assert f'hx-post="{TOKENS}/{target.id}/regenerate" hx-target="#token-{target.id}"' in dialog
    label = re.search(r'<label for="([^"]+)">Keep the old value working for</label>', dialog)
    assert label, "the select has no label"
    select = re.search(rf'<select id="{label.group(1)}" name="grace_period" form="([^"]+)"', dialog)
    assert select and f'<form method="post" id="{select.group(1)}"' in dialog
    options = re.findall(r'<option value="([^"]+)"\s*(selected)?>([^<]+)</option>', dialog)
    assert [(value, text) for value, _, text in options] == [(v, label) for v, (label, _) in GRACE_PERIODS.items()]
    assert [value for value, selected, _ in options if selected] == ["none"]
    confirm = html(client.get(f"{TOKENS}/{target.id}/regenerate"))
    assert "Keep the old value working for" in confirm
    assert [text for _, _, text in re.findall(r'<option value="([^"]+)"\s*(selected)?>([^<]+)</option>', confirm)] \
        == ["No", "1 hour", "24 hours", "7 days"]


def test_portal_regenerate_with_grace_shows_the_value_once_and_the_grace_end(client, make, admin, target, clock):
    signed_in(client, admin)
    response = portal_regenerate(client, target.id, "24h")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    new = shown_secret(response)
    assert "The old value keeps working until" in html(response)
    assert me(client, target.secret).status_code == 200 and me(client, new).status_code == 200

    row = row_html(html(client.get(TOKENS)), target.id)
    note = GRACE_NOTE.search(row)
    assert note and note.groups() == ("2026-11-24T12:00:00Z", "2026-11-24 12:00 UTC", "in 1 day")
    assert "End grace period" in button_labels(row)
    assert new not in html(client.get(TOKENS))


def test_portal_row_has_no_grace_note_without_a_grace(client, make, admin, target, clock):
    signed_in(client, admin)
    portal_regenerate(client, target.id, "none")
    row = row_html(html(client.get(TOKENS)), target.id)
    assert "old value valid until" not in row and "End grace period" not in button_labels(row)
    assert refused(client, target.secret)


def test_portal_grace_note_disappears_when_the_grace_is_over(client, make, admin, target, clock):
    signed_in(client, admin)
    portal_regenerate(client, target.id, "1h")
    clock.advance(hours=1)
    row = row_html(html(client.get(TOKENS)), target.id)
    assert "old value valid until" not in row and "End grace period" not in button_labels(row)


def test_portal_end_grace_period_confirms_then_ends_it(client, make, admin, target, clock):
    signed_in(client, admin)
    new = shown_secret(portal_regenerate(client, target.id, "7d"))
    confirm = html(client.get(f"{TOKENS}/{target.id}/end-grace"))
    assert "Stop the old value now" in confirm and "Cancel" in confirm
    assert me(client, target.secret).status_code == 200  # a GET changes nothing

    ended = client.post(f"{TOKENS}/{target.id}/end-grace", data={"csrf_token": csrf_from(confirm)})
    assert ended.status_code == 302
    page = html(client.get(ended.headers["Location"]))
    assert "no longer works" in page
    assert "old value valid until" not in row_html(page, target.id)
    assert refused(client, target.secret) and me(client, new).status_code == 200
    assert len(make.audit("token.grace_ended")) == 1


def test_portal_end_grace_needs_csrf(client, make, admin, target, clock):
    signed_in(client, admin)
    portal_regenerate(client, target.id, "7d")
    assert client.post(f"{TOKENS}/{target.id}/end-grace", data={}).status_code in (400, 403)
    assert me(client, target.secret).status_code == 200


def test_portal_end_grace_page_after_the_grace_ended_goes_back_to_the_list(client, admin, target, clock):
    signed_in(client, admin)
    portal_regenerate(client, target.id, "1h")
    clock.advance(hours=2)
    response = client.get(f"{TOKENS}/{target.id}/end-grace")
    assert response.status_code == 302 and response.headers["Location"].endswith(TOKENS)


def test_portal_htmx_regenerate_and_end_grace_swap_the_row(client, make, admin, target, clock):
    signed_in(client, admin)
    token = csrf(client)
    response = client.post(f"{TOKENS}/{target.id}/regenerate", data={"grace_period": "24h"},
                           headers={**HTMX, "X-CSRFToken": token})
    fragment = html(response)
    assert response.status_code == 200 and "<html" not in fragment and fragment.count("<tr") == 1
    assert GRACE_NOTE.search(row_html(fragment, target.id))
    new = shown_secret(response)

    ended = html(client.post(f"{TOKENS}/{target.id}/end-grace", headers={**HTMX, "X-CSRFToken": token}))
    assert "<html" not in ended and ended.count("<tr") == 1
    assert "old value valid until" not in ended and "End grace period" not in button_labels(ended)
    assert refused(client, target.secret) and me(client, new).status_code == 200


def test_portal_deactivate_button_ends_the_grace(client, make, admin, target, clock):
    signed_in(client, admin)
    portal_regenerate(client, target.id, "7d")
    client.post(f"{TOKENS}/{target.id}/deactivate", data={"csrf_token": csrf(client)})
    row = row_html(html(client.get(TOKENS)), target.id)
    assert "old value valid until" not in row
    client.post(f"{TOKENS}/{target.id}/reactivate", data={"csrf_token": csrf(client)})
    assert refused(client, target.secret)


def test_portal_revoke_button_ends_the_grace(client, make, admin, target, clock):
    signed_in(client, admin)
    new = shown_secret(portal_regenerate(client, target.id, "7d"))
    client.post(f"{TOKENS}/{target.id}/revoke", data={"csrf_token": csrf(client)})
    assert refused(client, target.secret) and refused(client, new)
    assert "old value valid until" not in row_html(html(client.get(f"{TOKENS}?tab=deleted")), target.id)


def test_portal_unknown_grace_period_is_an_error_beside_the_field(client, make, admin, target, clock):
    signed_in(client, admin)
    response = portal_regenerate(client, target.id, "forever")
    page = html(response)
    assert response.status_code == 422
    assert re.search(r'<p class="field-error" id="grace-period-error">[^<]+</p>', page)
    assert 'aria-invalid="true"' in page and "Keep the old value working for" in page
    assert not re.search(r"data-token-value>", page)
    assert me(client, target.secret).status_code == 200
    assert make.audit("token.regenerated") == []


def test_portal_unknown_grace_period_by_htmx_reopens_the_dialog_with_the_error(client, make, admin, target, clock):
    signed_in(client, admin)
    response = client.post(f"{TOKENS}/{target.id}/regenerate", data={"grace_period": "1y"},
                           headers={**HTMX, "X-CSRFToken": csrf(client)})
    fragment = html(response)
    assert response.status_code == 422 and "<html" not in fragment
    assert response.headers["HX-Retarget"] == "#token-dialog"  # the dialog again, not the row
    assert re.search(r'<dialog[^>]*id="confirm-regenerate"[^>]*data-reopen', fragment)
    assert 'id="confirm-regenerate-grace-error"' in fragment
    assert me(client, target.secret).status_code == 200


def test_exposed_token_says_so_in_its_row(client, make, admin, target, clock):
    from shared.core.db import write_transaction
    from shared.tokens import access, lifecycle

    plain = make.token(admin, name="Plainly revoked")

    def expose():
        token = access.get_token_for(_actor(make, admin), target.id)
        with write_transaction():
            lifecycle.mark_revoked(token, None, lifecycle.REVOKED_EXPOSED, {"url": "https://example.test/leak"})

    make.run(expose)
    signed_in(client, admin)
    client.post(f"{TOKENS}/{plain.id}/revoke", data={"csrf_token": csrf(client)})
    deleted = html(client.get(f"{TOKENS}?tab=deleted"))
    assert "Revoked: reported as exposed" in row_html(deleted, target.id)
    assert "reported as exposed" not in row_html(deleted, plain.id)


def _actor(make, member):
    from shared.audit.record import Actor
    from shared.core.extensions import db
    from shared.models import Membership

    return Actor(membership=db.session.get(Membership, member.id))


def test_security_manager_sees_the_grace_but_cannot_end_it(client, make, org, admin, admin_key, target, clock):
    """Security managers see every token but may not regenerate, so they get no End grace period
    button (the same check as tokens.end_grace); Deactivate, which they may use, ends it."""
    security = make.member(org, "security_manager")
    regenerated(client, admin_key, target.id, "24h")
    signed_in(client, security)
    page = html(client.get(TOKENS))
    row = row_html(page, target.id)
    assert GRACE_NOTE.search(row)
    assert "Regenerate" not in button_labels(row) and "End grace period" not in button_labels(row)
    assert client.get(f"{TOKENS}/{target.id}/end-grace").status_code == 403
    assert client.post(f"{TOKENS}/{target.id}/end-grace", data={"csrf_token": csrf_from(page)}).status_code == 403
    assert me(client, target.secret).status_code == 200
    client.post(f"{TOKENS}/{target.id}/deactivate", data={"csrf_token": csrf_from(page)})
    assert refused(client, target.secret)


# --------------------------------------------------------------------------- the hub


@pytest.fixture
def partner_user(make, org):
    globex = make.partner(org, "Globex")
    return make.member(org, "partner_admin", partner_id=globex)


def test_hub_regenerate_with_grace_and_end_grace(client, make, partner_user, clock):
    issued = make.token(partner_user, name="Globex sync")
    signed_in(client, partner_user)
    confirm = html(client.get(f"{HUB}/{issued.id}/regenerate"))
    assert "Keep the old value working for" in confirm
    response = client.post(f"{HUB}/{issued.id}/regenerate",
                           data={"csrf_token": csrf_from(confirm), "grace_period": "24h"})
    assert response.status_code == 200
    new = shown_secret(response)
    assert me(client, issued.secret).status_code == 200 and me(client, new).status_code == 200

    row = row_html(html(client.get(HUB)), issued.id)
    assert GRACE_NOTE.search(row).group(2) == "2026-11-24 12:00 UTC"  # exact on hover
    assert "End grace period" in button_labels(row)
    assert f'action="{HUB}/{issued.id}/end-grace"' in row

    end_page = html(client.get(f"{HUB}/{issued.id}/end-grace"))
    ended = client.post(f"{HUB}/{issued.id}/end-grace", data={"csrf_token": csrf_from(end_page)})
    assert ended.status_code == 302 and ended.headers["Location"].startswith(HUB)
    assert refused(client, issued.secret) and me(client, new).status_code == 200
    assert "old value valid until" not in row_html(html(client.get(HUB)), issued.id)


# --------------------------------------------------------------------------- racing regenerations


def _post_json(url: str, secret: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {secret}",
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def _works(server, secret: str) -> bool:
    request = urllib.request.Request(server.url + "/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status == 200
    except urllib.error.HTTPError as error:
        assert error.code == 401, error.code
        return False


@pytest.mark.parametrize("grace_period", ["none", "1h"])
def test_racing_regenerations_leave_one_current_and_at_most_one_previous_value(make, admin, admin_key,
                                                                                 live_server, grace_period):
    from shared.tokens import format as token_format

    server = live_server(workers=3)
    for round_ in range(4):
        issued = make.token(admin, name=f"raced {round_}")
        barrier = threading.Barrier(2)
        results: list[tuple[int, dict] | None] = [None, None]

        def race(i: int, token_id: str = issued.id, barrier=barrier, results=results) -> None:
            barrier.wait()
            results[i] = _post_json(f"{server.url}/api/v1/tokens/{token_id}/regenerate", admin_key.secret,
                                    {"grace_period": grace_period})

        threads = [threading.Thread(target=race, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert all(r is not None and r[0] == 200 for r in results), (results, server.output())
        secrets = [r[1]["secret"] for r in results]
        assert secrets[0] != secrets[1]

        row = make.get_token(issued.id)
        hashes = {secret: make.run(lambda s=secret: token_format.hash_secret(s)) for secret in secrets}
        last = [secret for secret in secrets if hashes[secret] == row.token_hash]
        assert len(last) == 1, "the row's current value is one of the two answers"
        first = next(secret for secret in secrets if secret != last[0])

        working = {name for name, secret in (("original", issued.secret), ("first", first), ("last", last[0]))
                   if _works(server, secret)}
        assert "last" in working  # the value the last committed regeneration answered
        assert len(working) <= 2  # at most one other value
        if grace_period == "none":
            assert working == {"last"}
            assert row.previous_token_hash is None and row.previous_expires_at is None
        else:
            # The later regeneration kept the earlier one's value, never the original.
            assert working == {"last", "first"}
            assert row.previous_token_hash == hashes[first] and row.previous_expires_at is not None
