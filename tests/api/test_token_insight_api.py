"""GET /tokens/{id}/usage and /tokens/{id}/rights (Insight); the rights table agrees with
what real API calls answer, cell by cell."""

from __future__ import annotations

import pytest

from shared.identity.roles import KNOWN_SCOPES

REFUSALS = {"insufficient_scope", "insufficient_permission", "plan_required"}


@pytest.fixture
def org(make):
    return make.org("business")


def _manager(make, org):
    return make.token(make.api_member(org, "owner"), scopes=list(KNOWN_SCOPES),
                      permissions=["read", "write", "delete", "admin"])


def test_usage_lists_every_day_oldest_first(client, make, org, clock):
    manager = _manager(make, org)
    issued = make.token(make.api_member(org, "editor"))
    client.get("/api/v1/me", headers=issued.headers)
    clock.advance(days=2)
    for _ in range(3):
        client.get("/api/v1/me", headers=issued.headers)
    make.flush_usage()

    answer = client.get(f"/api/v1/tokens/{issued.id}/usage?days=4", headers=manager.headers)

    assert answer.status_code == 200
    today = clock.now().date()
    assert answer.json == {"days": [
        {"date": (today.fromordinal(today.toordinal() - back)).isoformat(), "requests": requests}
        for back, requests in ((3, 0), (2, 1), (1, 0), (0, 3))]}


@pytest.mark.parametrize("days", ["0", "91", "x", "-1"])
def test_usage_days_out_of_bounds_is_400(client, make, org, days):
    manager = _manager(make, org)
    answer = client.get(f"/api/v1/tokens/{manager.id}/usage?days={days}", headers=manager.headers)
    assert answer.status_code == 400 and "days" in answer.json["error"]["fields"]


def test_usage_and_rights_of_another_orgs_token_are_404(client, make, org):
    manager = _manager(make, org)
    stranger = make.token(make.api_member(make.org(), "editor"))
    for path in ("usage", "rights"):
        answer = client.get(f"/api/v1/tokens/{stranger.id}/{path}", headers=manager.headers)
        assert answer.status_code == 404


def _set_role(make, membership_id: int, role: str) -> None:
    from shared.core.extensions import db
    from shared.identity import accounts
    from shared.models import Membership

    with make.app.app_context():
        accounts.set_role(db.session.get(Membership, membership_id), role)


def _call(client, make, org, issued, scope: str, method: str):
    """A real request for this scope and method, or None where the API has no such endpoint."""
    document = make.document(org, "Doc")
    paths = {
        ("documents", "GET"): ("GET", "/api/v1/documents", None),
        ("documents", "POST"): ("POST", "/api/v1/documents", {"title": "New"}),
        ("documents", "PATCH"): ("PATCH", f"/api/v1/documents/{document}", {"title": "Renamed"}),
        ("documents", "DELETE"): ("DELETE", f"/api/v1/documents/{document}", None),
        ("projects", "GET"): ("GET", "/api/v1/projects", None),
        ("templates", "GET"): ("GET", "/api/v1/templates", None),
        ("analytics", "GET"): ("GET", "/api/v1/analytics/usage", None),
        ("billing", "GET"): ("GET", "/api/v1/billing", None),
        ("tokens", "GET"): ("GET", "/api/v1/tokens", None),
        ("tokens", "POST"): ("POST", "/api/v1/tokens", {"name": "child", "scopes": [], "permissions": []}),
        ("tokens", "PATCH"): ("PATCH", f"/api/v1/tokens/{issued.id}", {"description": "x"}),
        ("tokens", "DELETE"): ("DELETE", "/api/v1/tokens/tok_0000000000000000", None),
    }
    if (scope, method) not in paths:
        return None
    verb, path, body = paths[(scope, method)]
    return client.open(path, method=verb, json=body, headers=issued.headers)


@pytest.mark.parametrize("kind", ["editor", "viewer", "project", "partner"])
def test_rights_table_agrees_with_real_calls_for_every_cell(client, make, org, kind):
    manager = _manager(make, org)
    everything = {"scopes": list(KNOWN_SCOPES), "permissions": ["read", "write", "delete"]}
    if kind == "project":
        member = make.api_member(org, "admin")
        issued = make.token(member, type="project", project_id=make.project(org), **everything)
    elif kind == "partner":
        member = make.api_member(org, "partner_admin", partner_id=make.partner(org))
        issued = make.token(member, scopes=["documents", "projects", "templates", "analytics", "tokens"],
                            permissions=["read", "write"])
    else:
        member = make.api_member(org, "editor")
        issued = make.token(member, scopes=["documents", "projects", "templates", "tokens"],
                            permissions=["read", "write"])
        if kind == "viewer":  # viewers cannot create tokens; a token whose creator became one
            _set_role(make, member.id, "viewer")

    rights = client.get(f"/api/v1/tokens/{issued.id}/rights", headers=manager.headers).json["rights"]

    assert len(rights) == len(KNOWN_SCOPES) * 4
    compared = 0
    for cell in rights:
        answer = _call(client, make, org, issued, cell["scope"], cell["method"])
        if answer is None:
            continue
        compared += 1
        refused = answer.status_code == 403 and answer.json["error"]["code"] in REFUSALS
        assert refused != cell["allowed"], (cell, answer.status_code, answer.get_json())
        if not cell["allowed"]:
            assert cell["reason"] == answer.json["error"]["message"]
        else:
            assert cell["reason"] is None
    assert compared == 12
