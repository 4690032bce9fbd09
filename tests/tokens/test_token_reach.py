"""A token manages only tokens within its own reach: never beyond its rights, allowlist, expiry or
project (regenerate, reactivate, edit, end-grace, transfer, narrow), and a project token sees and
counts only its project's tokens (list, read, revoke, bulk revoke, analytics)."""

from __future__ import annotations

import pytest

from tests.conftest import bearer

ALL = ["read", "write", "delete"]
INSIDE = {"REMOTE_ADDR": "10.1.2.3"}  # within the restricted key's allowlist


@pytest.fixture
def org(make):
    return make.org("business", name="Acme")


@pytest.fixture
def admin(make, org):
    return make.api_member(org, "admin")


@pytest.fixture
def restricted(make, admin):
    """Every right an admin's token can hold, but only from 10/8 and for 30 days."""
    return make.token(admin, name="restricted", scopes=["tokens", "documents"], permissions=ALL,
                      expires_in_days=30, ip_allowlist=["10.0.0.0/8"])


@pytest.fixture
def unbounded(make, admin):
    """The same rights, usable from anywhere and never expiring: beyond the restricted key."""
    return make.token(admin, name="unbounded", scopes=["tokens", "documents"], permissions=ALL,
                      expires_at=None)


def call(client, key, method: str, path: str, **kwargs):
    return client.open("/api/v1" + path, method=method, headers=key.headers, environ_base=INSIDE, **kwargs)


def test_a_restricted_token_cannot_regenerate_a_token_without_its_allowlist_or_expiry(client, restricted,
                                                                                        unbounded):
    response = call(client, restricted, "POST", f"/tokens/{unbounded.id}/regenerate")
    assert response.status_code == 403, response.get_json()
    assert "secret" not in response.get_json()
    assert client.get("/api/v1/me", headers=unbounded.headers).status_code == 200  # its value did not change


def test_a_restricted_token_cannot_reactivate_a_token_beyond_it(client, make, admin, restricted, unbounded):
    target = f"/tokens/{unbounded.id}"
    assert call(client, restricted, "POST", f"{target}/deactivate").status_code == 200  # only reduces
    assert call(client, restricted, "POST", f"{target}/reactivate").status_code == 403
    assert call(client, restricted, "PATCH", target, json={"is_active": True}).status_code == 403
    assert call(client, restricted, "POST", f"{target}/regenerate").status_code == 403
    assert client.get("/api/v1/me", headers=unbounded.headers).get_json()["error"]["code"] == "token_inactive"


def test_a_restricted_token_cannot_widen_a_token_it_does_not_contain(client, make, admin, restricted):
    # Billing is beyond the key: adding write to this token would grant billing write.
    billing = make.token(admin, scopes=["billing"], permissions=["read"], expires_in_days=7,
                         ip_allowlist=["10.1.0.0/16"])
    response = call(client, restricted, "PATCH", f"/tokens/{billing.id}",
                    json={"permissions": ["read", "write"]})
    # Refused as the no-escalation rule words it: billing write is not the key's to grant.
    assert response.status_code == 400 and "billing" in str(response.get_json()["error"]["fields"])
    assert make.get_token(billing.id).rights == {"billing": ["read"]}


def test_a_restricted_token_cannot_end_grace_transfer_or_narrow_a_token_beyond_it(client, make, org, admin,
                                                                                   restricted):
    other_admin = make.api_member(org, "admin")
    shared = make.token(admin, type="organization", scopes=["documents"], permissions=ALL, expires_at=None)
    for method, path, body in (("POST", f"/tokens/{shared.id}/end-grace", None),
                               ("POST", f"/tokens/{shared.id}/transfer", {"to_user_id": other_admin.user_id}),
                               ("POST", f"/tokens/{shared.id}/narrow", None)):
        response = call(client, restricted, method, path, json=body)
        assert response.status_code == 403, (path, response.get_json())
    assert make.get_token(shared.id).created_by_membership_id == admin.id


def test_tokens_within_the_restricted_key_stay_manageable(client, make, admin, restricted):
    inside = make.token(admin, scopes=["documents"], permissions=["read"], expires_in_days=7,
                        ip_allowlist=["10.1.0.0/16"])
    assert call(client, restricted, "POST", f"/tokens/{inside.id}/deactivate").status_code == 200
    assert call(client, restricted, "POST", f"/tokens/{inside.id}/reactivate").status_code == 200
    regenerated = call(client, restricted, "POST", f"/tokens/{inside.id}/regenerate")
    assert regenerated.status_code == 200 and regenerated.get_json()["secret"].startswith("kw_")
    renamed = call(client, restricted, "PATCH", f"/tokens/{inside.id}", json={"name": "renamed"})
    assert renamed.status_code == 200


# --------------------------------------------------------------------------- project tokens


@pytest.fixture
def world(make, org, admin):
    owner = make.api_member(org, "owner")
    editor = make.api_member(org, "editor")
    alpha, beta = make.project(org, "Alpha"), make.project(org, "Beta")
    key = make.token(owner, name="alpha key", type="project", project_id=alpha,
                     scopes=["tokens", "analytics"], permissions=ALL, expires_at=None)
    return {
        "key": key,
        "alpha": make.token(admin, name="alpha deploy", type="project", project_id=alpha, expires_in_days=7),
        "beta": make.token(admin, name="beta deploy", type="project", project_id=beta, expires_in_days=7),
        "org": make.token(admin, name="org robot", type="organization", expires_in_days=7),
        "personal": make.token(editor, name="editor's own", expires_in_days=7),
    }


def test_a_project_token_lists_and_reads_only_its_projects_tokens(client, world):
    key = world["key"]
    listed = client.get("/api/v1/tokens?per_page=100", headers=key.headers).get_json()
    assert {item["name"] for item in listed["items"]} == {"alpha key", "alpha deploy"}
    assert listed["total"] == 2
    assert client.get(f"/api/v1/tokens/{world['alpha'].id}", headers=key.headers).status_code == 200
    for name in ("beta", "org", "personal"):
        response = client.get(f"/api/v1/tokens/{world[name].id}", headers=key.headers)
        assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found", name


def test_a_project_token_cannot_act_on_other_tokens_of_the_org(client, make, org, world):
    key = world["key"]
    receiver = make.api_member(org, "admin")
    for name in ("beta", "org", "personal"):
        target = world[name].id
        for method, path, body in (("DELETE", f"/tokens/{target}", None),
                                   ("POST", f"/tokens/{target}/deactivate", None),
                                   ("POST", f"/tokens/{target}/narrow", None),
                                   ("POST", f"/tokens/{target}/transfer", {"to_user_id": receiver.user_id})):
            response = client.open("/api/v1" + path, method=method, headers=key.headers, json=body)
            assert response.status_code == 404, (name, path, response.get_json())
        assert client.get("/api/v1/me", headers=bearer(world[name].secret)).status_code == 200


def test_a_project_tokens_bulk_revoke_reaches_only_its_project(client, world):
    key = world["key"]
    dry = client.post("/api/v1/tokens/bulk-revoke", headers=key.headers, json={"all": True, "dry_run": True})
    assert dry.status_code == 200
    assert dry.get_json() == {"would_revoke": 1, "ids": [world["alpha"].id]}
    by_id = client.post("/api/v1/tokens/bulk-revoke", headers=key.headers,
                        json={"token_ids": [world["org"].id, world["alpha"].id]})
    assert by_id.status_code == 404  # the whole batch is refused, nothing revoked
    assert client.get("/api/v1/me", headers=bearer(world["org"].secret)).status_code == 200
    revoked = client.post("/api/v1/tokens/bulk-revoke", headers=key.headers, json={"all": True})
    assert revoked.get_json() == {"revoked": 1, "ids": [world["alpha"].id]}
    for name in ("beta", "org", "personal"):
        assert client.get("/api/v1/me", headers=bearer(world[name].secret)).status_code == 200


def test_a_project_tokens_analytics_count_only_its_projects_tokens(client, world):
    for name in ("alpha", "beta", "org", "personal"):
        client.get("/api/v1/me", headers=bearer(world[name].secret))
    usage = client.get("/api/v1/analytics/usage?days=1", headers=world["key"].headers)
    assert usage.status_code == 200
    assert {item["name"] for item in usage.get_json()["items"]} == {"alpha key", "alpha deploy"}
