"""Rights per scope in the API: a token may write documents and only read projects.

`rights` on create, edit and every token object; the older `scopes` + `permissions` still accepted
(their cross product) and still returned; never both shapes at once; the policy, the role, the
no-escalation rule, narrowing and the rights table all work pair by pair.
"""

from __future__ import annotations

import pytest

from tests.conftest import bearer

ALL = ["read", "write", "delete"]
PER_SCOPE = {"documents": ["read", "write"], "projects": ["read"]}


@pytest.fixture
def org(make):
    return make.org("business")


@pytest.fixture
def owner(make, org):
    return make.api_member(org, "owner")


@pytest.fixture
def owner_key(make, owner):
    return make.token(owner, name="owner key", expires_at=None,
                      rights={scope: ALL for scope in ("tokens", "documents", "projects", "templates")})


def create(client, key, **body):
    body.setdefault("name", "made by api")
    return client.post("/api/v1/tokens", headers=key.headers, json=body)


def fields_of(response) -> dict:
    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "invalid_request"
    return error["fields"]


# --------------------------------------------------------------------------- the shapes


def test_rights_per_scope_are_kept_returned_and_enforced_per_scope(client, make, org, owner_key):
    response = create(client, owner_key, rights={"projects": ["read"], "documents": ["write", "read"]})
    assert response.status_code == 201, response.get_json()
    token, secret = response.get_json()["token"], response.get_json()["secret"]
    assert token["rights"] == PER_SCOPE  # in a fixed order, whatever order was sent
    assert (token["scopes"], token["permissions"]) == (["documents", "projects"], ["read", "write"])
    assert client.get("/api/v1/me", headers=bearer(secret)).get_json()["token"]["rights"] == PER_SCOPE

    assert client.post("/api/v1/documents", json={"title": "x"}, headers=bearer(secret)).status_code == 201
    assert client.get("/api/v1/projects", headers=bearer(secret)).status_code == 200
    document = make.document(org)
    refused = client.delete(f"/api/v1/documents/{document}", headers=bearer(secret))
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "insufficient_permission"
    assert refused.get_json()["error"]["required"] == {"scope": "documents", "permission": "delete"}


def test_a_permission_held_on_one_scope_is_not_held_on_another(client, make, owner):
    # Before rights per scope, `write` on tokens would have meant `write` on documents too.
    issued = make.token(owner, rights={"tokens": ["read", "write"], "documents": ["read"]})
    assert client.get("/api/v1/documents", headers=issued.headers).status_code == 200
    refused = client.post("/api/v1/documents", json={"title": "x"}, headers=issued.headers)
    assert refused.status_code == 403
    assert {k: v for k, v in refused.get_json()["error"].items() if k != "request_id"} == {
        "code": "insufficient_permission",
        "message": "The token does not have the write permission on documents",
        "required": {"scope": "documents", "permission": "write"}}
    scope_refused = client.get("/api/v1/templates", headers=issued.headers)
    assert scope_refused.get_json()["error"]["code"] == "insufficient_scope"
    assert scope_refused.get_json()["error"]["required"] == {"scope": "templates", "permission": "read"}


def test_the_older_shape_means_the_cross_product(client, owner_key):
    response = create(client, owner_key, scopes=["projects", "documents"], permissions=["read", "write"])
    assert response.status_code == 201
    token = response.get_json()["token"]
    assert token["rights"] == {"documents": ["read", "write"], "projects": ["read", "write"]}
    assert (token["scopes"], token["permissions"]) == (["documents", "projects"], ["read", "write"])


@pytest.mark.parametrize("body", [
    {"rights": PER_SCOPE, "scopes": ["documents"], "permissions": ["read"]},
    {"rights": PER_SCOPE, "scopes": ["documents"]},
    {"rights": PER_SCOPE, "permissions": ["read"]},
])
def test_both_shapes_at_once_are_refused_with_a_field_error(client, make, owner_key, body):
    before = len(make.audit("token.created"))
    assert fields_of(create(client, owner_key, **body)) == {
        "rights": "Give rights, or scopes and permissions, not both"}
    assert len(make.audit("token.created")) == before


@pytest.mark.parametrize("body, field", [
    ({}, "rights"),  # neither shape
    ({"scopes": ["documents"]}, "permissions"),  # half of the older one
    ({"permissions": ["read"]}, "scopes"),
    ({"rights": {}}, "rights"),
    ({"rights": None}, "rights"),
    ({"rights": ["documents"]}, "rights"),
    ({"rights": {"documents": "read"}}, "rights"),  # the API wants lists
    ({"rights": {"documents": []}}, "rights"),
    ({"rights": {"documents": [1]}}, "rights"),
    ({"rights": {"documents": ["has space"]}}, "rights"),
    ({"rights": {"has space": ["read"]}}, "rights"),
    ({"rights": {"": ["read"]}}, "rights"),
    ({"rights": {"x" * 51: ["read"]}}, "rights"),
    ({"rights": {"nul\u0000": ["read"]}}, "rights"),
    ({"rights": {f"scope-{i}": ["read"] for i in range(21)}}, "rights"),
    ({"rights": {"documents": [f"p{i}" for i in range(21)]}}, "rights"),
])
def test_bad_rights_answer_400_with_a_field_error(client, make, owner_key, body, field):
    before = len(make.audit("token.created"))
    assert field in fields_of(create(client, owner_key, **body))
    assert len(make.audit("token.created")) == before


def test_unknown_labels_are_kept_and_shown_and_grant_nothing(client, owner_key):
    response = create(client, owner_key, rights={"documents": ["read", "admin"], "x-team": ["read"]})
    assert response.status_code == 201
    token, secret = response.get_json()["token"], response.get_json()["secret"]
    assert token["rights"] == {"documents": ["read", "admin"], "x-team": ["read"]}
    assert token["permissions"] == ["read", "admin"] and token["scopes"] == ["documents", "x-team"]
    table = client.get(f"/api/v1/tokens/{token['id']}/rights", headers=owner_key.headers).get_json()["rights"]
    assert {(row["scope"], row["method"]) for row in table if row["allowed"]} == {("documents", "GET")}
    assert client.post("/api/v1/documents", json={"title": "x"}, headers=bearer(secret)).status_code == 403


# --------------------------------------------------------------------------- editing


def test_an_edit_replaces_the_rights(client, make, owner, owner_key):
    target = make.token(owner, rights={"documents": ["read"], "templates": ["read"]})
    response = client.patch(f"/api/v1/tokens/{target.id}", headers=owner_key.headers,
                            json={"rights": PER_SCOPE})
    assert response.status_code == 200 and response.get_json()["rights"] == PER_SCOPE
    assert make.get_token(target.id).rights == PER_SCOPE
    [updated] = make.audit("token.updated")
    assert updated.details["changes"]["rights"] == {"from": {"documents": ["read"], "templates": ["read"]},
                                                    "to": PER_SCOPE}


def test_an_edit_in_the_older_shape_combines_one_list_with_the_token_s_other(client, make, owner, owner_key):
    target = make.token(owner, rights=PER_SCOPE)
    # `scopes` alone: every permission the token shows (read, write) on the scopes given.
    response = client.patch(f"/api/v1/tokens/{target.id}", headers=owner_key.headers,
                            json={"scopes": ["documents", "templates"]})
    assert response.get_json()["rights"] == {"documents": ["read", "write"], "templates": ["read", "write"]}
    response = client.patch(f"/api/v1/tokens/{target.id}", headers=owner_key.headers,
                            json={"permissions": ["read"]})
    assert response.get_json()["rights"] == {"documents": ["read"], "templates": ["read"]}
    response = client.patch(f"/api/v1/tokens/{target.id}", headers=owner_key.headers,
                            json={"name": "renamed"})
    assert response.get_json()["rights"] == {"documents": ["read"], "templates": ["read"]}  # rights untouched


def test_an_edit_with_both_shapes_is_refused(client, make, owner, owner_key):
    target = make.token(owner, rights=PER_SCOPE)
    response = client.patch(f"/api/v1/tokens/{target.id}", headers=owner_key.headers,
                            json={"rights": {"documents": ["read"]}, "permissions": ["read"]})
    assert fields_of(response) == {"rights": "Give rights, or scopes and permissions, not both"}
    assert make.get_token(target.id).rights == PER_SCOPE


# --------------------------------------------------------------------------- the rules, pair by pair


def test_the_role_refuses_pairs_it_does_not_hold(client, make, org):
    editor_key = make.token(make.api_member(org, "editor"), rights={"tokens": ["read", "write"]})
    refused = create(client, editor_key, rights={"documents": ["read", "delete"]})
    assert fields_of(refused) == {"rights": "Your role (editor) does not include the delete permission"}
    billing = create(client, editor_key, rights={"billing": ["read"]})
    assert fields_of(billing) == {"rights": "Your role (editor) does not include the billing scope"}


def test_the_policy_allows_pairs_by_scope(client, make, org, owner_key):
    def restrict():
        from shared.core.extensions import db
        from shared.models import Organization

        db.session.get(Organization, org.id).policy_allowed_scopes = ["documents", "tokens"]
        db.session.commit()

    make.run(restrict)
    assert fields_of(create(client, owner_key, rights=PER_SCOPE)) == {
        "rights": "Your organization does not allow the scope projects"}
    assert create(client, owner_key, rights={"documents": ["read", "write"]}).status_code == 201


def test_a_token_grants_only_the_pairs_it_holds(client, make, owner):
    key = make.token(owner, rights={"tokens": ["read", "write"], **PER_SCOPE})
    wider = create(client, key, rights={"projects": ["read", "write"]})
    assert fields_of(wider) == {"rights": "The calling token does not hold the write permission on projects"}
    elsewhere = create(client, key, rights={"templates": ["read"]})
    assert fields_of(elsewhere) == {"rights": "The calling token does not hold the templates scope"}
    # The older shape's cross product holds projects write: refused, on the list that asked for it.
    square = create(client, key, scopes=["documents", "projects"], permissions=["read", "write"])
    assert fields_of(square) == {
        "permissions": "The calling token does not hold the write permission on projects"}
    assert create(client, key, rights=PER_SCOPE).status_code == 201
    assert create(client, key, rights={"documents": ["write"], "projects": ["read"]}).status_code == 201


def test_a_token_cannot_widen_a_token_pair_by_pair(client, make, owner):
    key = make.token(owner, rights={"tokens": ["read", "write"], **PER_SCOPE})
    target = make.token(owner, rights={"documents": ["read"]})
    widened = client.patch(f"/api/v1/tokens/{target.id}", headers=key.headers,
                           json={"rights": {"documents": ["read"], "projects": ["write"]}})
    assert fields_of(widened) == {
        "rights": "The calling token does not hold the write permission on projects"}
    assert make.get_token(target.id).rights == {"documents": ["read"]}


def test_a_token_cannot_regenerate_a_token_holding_a_pair_it_lacks(client, make, owner):
    # Label by label the caller holds `projects` and `write`; the pair (projects, write) it does not.
    key = make.token(owner, rights={"tokens": ["read", "write"], **PER_SCOPE})
    target = make.token(owner, rights={"projects": ["write"]})
    refused = client.post(f"/api/v1/tokens/{target.id}/regenerate", headers=key.headers)
    assert refused.status_code == 403
    assert client.get("/api/v1/me", headers=target.headers).status_code == 200  # the old value still works
    narrower = make.token(owner, rights={"documents": ["write"]})
    assert client.post(f"/api/v1/tokens/{narrower.id}/regenerate", headers=key.headers).status_code == 200


# --------------------------------------------------------------------------- rights table, narrowing, events


def test_the_rights_table_reads_the_pairs(client, make, owner, owner_key):
    target = make.token(owner, rights=PER_SCOPE)
    table = client.get(f"/api/v1/tokens/{target.id}/rights", headers=owner_key.headers).get_json()["rights"]
    cells = {(row["scope"], row["method"]): row["reason"] for row in table}
    assert {cell for cell, reason in cells.items() if reason is None} == {
        ("documents", "GET"), ("documents", "POST"), ("documents", "PATCH"), ("projects", "GET")}
    assert cells[("documents", "DELETE")] == "The token does not have the delete permission on documents"
    assert cells[("projects", "POST")] == "The token does not have the write permission on projects"
    assert cells[("templates", "GET")] == "The token does not have the templates scope"


def test_narrowing_keeps_exactly_the_pairs_used(client, make, owner, owner_key):
    target = make.token(owner, rights={"documents": ["read", "write"], "projects": ["read", "write"]})
    assert client.post("/api/v1/documents", json={"title": "x"}, headers=target.headers).status_code == 201
    assert client.get("/api/v1/projects", headers=target.headers).status_code == 200
    make.flush_usage()  # observed use is written by the usage flusher
    response = client.post(f"/api/v1/tokens/{target.id}/narrow", headers=owner_key.headers)
    # A cross product could only have kept documents and projects × read and write.
    assert response.status_code == 200 and response.get_json()["rights"] == {
        "documents": ["write"], "projects": ["read"]}
    [record] = make.audit("token.narrowed")
    assert record.details["removed"] == {"documents": ["read"], "projects": ["write"]}
    assert client.get("/api/v1/documents", headers=target.headers).status_code == 403
    assert client.post("/api/v1/documents", json={"title": "y"}, headers=target.headers).status_code == 201


def test_events_and_the_audit_log_carry_the_rights(client, make, owner_key):
    from shared.models import Event

    token = create(client, owner_key, rights=PER_SCOPE).get_json()["token"]
    [event] = [e for e in make.rows(Event, type="token.created") if e.data["token"]["id"] == token["id"]]
    assert event.data["token"]["rights"] == PER_SCOPE
    assert event.data["token"]["scopes"] == ["documents", "projects"]
    assert event.data["token"]["permissions"] == ["read", "write"]
    [created] = [a for a in make.audit("token.created") if a.target_id == token["id"]]
    assert created.details["rights"] == PER_SCOPE


def test_the_openapi_document_describes_both_shapes(client, owner_key):
    document = client.get("/api/v1/openapi.json").get_json()
    create_body = document["paths"]["/api/v1/tokens"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    assert create_body["properties"]["rights"]["type"] == "object"
    assert create_body["properties"]["rights"]["additionalProperties"]["type"] == "array"
    assert create_body["required"] == ["name"]
    assert [alternative["required"] for alternative in create_body["oneOf"]] == [
        ["rights"], ["scopes", "permissions"]]
    update_body = document["paths"]["/api/v1/tokens/{token_id}"]["patch"]["requestBody"]["content"][
        "application/json"]["schema"]
    assert "not" in update_body and "oneOf" not in update_body
    token = document["components"]["schemas"]["Token"]
    assert {"rights", "scopes", "permissions"} <= set(token["required"])
    # What the document calls valid is accepted: each shape alone.
    assert create(client, owner_key, rights=PER_SCOPE).status_code == 201
    assert create(client, owner_key, scopes=["documents"], permissions=["read"]).status_code == 201
