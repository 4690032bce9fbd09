"""GET/POST /api/v1/trusted-publishers and DELETE /api/v1/trusted-publishers/{id}: owners and
admins only, every field validated (400 with fields), tenancy (another org's id is 404), and the
rights a publisher may grant (within the role, the policy and the calling token)."""

from __future__ import annotations

import pytest

from shared.core.oidc_issuers import GITHUB_ACTIONS_ISSUER, GITLAB_ISSUER
from tests.publishers.issuer import PublisherHelper


def fields_of(response) -> dict:
    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "invalid_request"
    return error["fields"]


def post(publishers, key=None, **fields):
    return publishers.client.post("/api/v1/trusted-publishers", json=publishers.body(**fields),
                                  headers=(key or publishers.key).headers)


def test_owner_registers_and_lists_a_publisher(publishers, make):
    registered = publishers.register(audience="keyward-ci", lifetime_minutes=30)

    assert registered["id"].startswith("tp_") and registered["name"] == "CI deploy"
    assert registered["conditions"] == {"repository": "acme/widgets", "ref": "refs/heads/main"}
    assert registered["rights"] == {"documents": ["read"]}
    assert registered["audience"] == "keyward-ci"
    assert (registered["lifetime_minutes"], registered["project_id"]) == (30, None)
    assert registered["created_by"]["id"] == publishers.owner.user_id
    listed = publishers.client.get("/api/v1/trusted-publishers", headers=publishers.key.headers).get_json()
    assert [item["id"] for item in listed["items"]] == [registered["id"]] and listed["total"] == 1
    [record] = make.audit("trusted_publisher.created")
    assert record.target_id == registered["id"]
    assert record.details["conditions"]["repository"] == "acme/widgets"


def test_defaults_are_audience_keyward_and_fifteen_minutes(publishers):
    registered = publishers.register()
    assert (registered["audience"], registered["lifetime_minutes"]) == ("keyward", 15)


@pytest.mark.parametrize("role", ["security_manager", "maintainer", "editor"])
def test_only_owners_and_admins_manage_publishers(publishers, make, role):
    # Each role's widest token with scope tokens (an editor holds no delete).
    key = make.token(make.api_member(publishers.org, role), scopes=["tokens", "documents"],
                     permissions=["read", "write"])
    assert post(publishers, key=key).status_code == 403
    assert publishers.client.get("/api/v1/trusted-publishers", headers=key.headers).status_code == 403


def test_admin_may_register(publishers, make):
    admin = make.api_member(publishers.org, "admin")
    assert post(publishers, key=publishers.manager(admin)).status_code == 201


def test_scope_tokens_is_needed(publishers, make):
    key = make.token(publishers.owner, scopes=["documents"], permissions=["read", "write"])
    response = post(publishers, key=key)
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "insufficient_scope"


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"conditions": {}}, "conditions", "at least one claim condition"),
    ({"conditions": {"iss": "x"}}, "conditions", "checked by Keyward"),
    ({"conditions": {"repository": ""}}, "conditions", "exact value"),
    ({"conditions": {"bad claim": "x"}}, "conditions", "not a claim name"),
    ({"conditions": {"repository": 5}}, "conditions", "string"),
    ({"rights": {}}, "rights", "at least one"),
    ({"rights": {"tokens": ["read"]}}, "rights", "cannot grant the tokens scope"),
    ({"rights": {"documents": ["admin"]}}, "rights", ""),
    ({"rights": {"documentz": ["read"]}}, "rights", "Unknown scope"),
    ({"issuer": "https://ci.example.com"}, "issuer", "issuers this Keyward trusts"),
    ({"lifetime_minutes": 4}, "lifetime_minutes", "5"),
    ({"lifetime_minutes": 61}, "lifetime_minutes", "60"),
    ({"name": ""}, "name", ""),
    ({"audience": " keyward"}, "audience", "audience"),
    ({"project_id": 999999}, "project_id", "No such project"),
])
def test_bad_fields_are_400_with_the_field_named(publishers, fields, field, message):
    found = fields_of(post(publishers, **fields))
    assert field in found and message.lower() in found[field].lower(), found


def test_empty_conditions_are_refused_by_the_service_too(publishers, app):
    from shared.audit.record import Actor
    from shared.core.errors import InvalidRequest
    from shared.core.extensions import db
    from shared.models import Membership
    from shared.publishers import service

    with app.app_context(), pytest.raises(InvalidRequest) as caught:
        service.register_publisher(Actor(db.session.get(Membership, publishers.owner.id)), name="x",
                                   issuer=publishers.issuer.url, conditions={},
                                   rights={"documents": ["read"]})
    assert "conditions" in caught.value.fields


@pytest.mark.parametrize(("issuer", "conditions"), [
    (GITHUB_ACTIONS_ISSUER, {"ref": "refs/heads/main"}),
    (GITHUB_ACTIONS_ISSUER, {"job_workflow_ref": "acme/shared/.github/workflows/deploy.yml@refs/heads/main"}),
    (GITLAB_ISSUER, {"ref": "main", "ref_protected": "true"}),
])
def test_publishers_on_shared_platforms_must_pin_the_repository(publishers, issuer, conditions):
    found = fields_of(post(publishers, issuer=issuer, conditions=conditions))
    assert "Include at least one of" in found["conditions"]


def test_pinned_github_and_gitlab_publishers_are_accepted(publishers):
    publishers.register(issuer=GITHUB_ACTIONS_ISSUER,
                        conditions={"repository": "acme/widgets", "environment": "production"})
    publishers.register(issuer=GITLAB_ISSUER, conditions={"project_path": "acme/widgets", "ref": "main",
                                                          "ref_protected": "true"})


def test_another_organizations_project_is_refused(publishers, make):
    foreign = make.project(make.org("business"))
    assert "No such project" in fields_of(post(publishers, project_id=foreign))["project_id"]


def test_minting_follows_the_registering_members_current_role(publishers, make, mint):
    admin = make.api_member(publishers.org, "admin")
    publishers.register(key=publishers.manager(admin), rights={"documents": ["read", "write", "delete"]})

    def demote():
        from shared.core.extensions import db
        from shared.identity import accounts
        from shared.models import Membership

        accounts.set_role(db.session.get(Membership, admin.id), "editor")

    make.run(demote)
    response = publishers.exchange(mint())

    assert response.status_code == 400
    message = response.get_json()["error"]["message"]
    assert "CI deploy" in message and "editor" in message and "delete" in message


def test_a_token_cannot_register_a_publisher_wider_than_itself(publishers, make):
    narrow = make.token(publishers.owner, scopes=["tokens", "documents"], permissions=["read", "write"])
    found = fields_of(post(publishers, key=narrow, rights={"documents": ["read", "write", "delete"]}))
    assert "calling token does not hold the delete permission" in found["rights"]
    found = fields_of(post(publishers, key=narrow, rights={"projects": ["read"]}))
    assert "calling token does not hold the projects scope" in found["rights"]
    assert post(publishers, key=narrow, rights={"documents": ["read", "write"]}).status_code == 201


def test_a_project_token_registers_only_publishers_of_its_project(publishers, make):
    project = make.project(publishers.org)
    bound = make.token(publishers.owner, type="project", project_id=project, scopes=["tokens", "documents"],
                       permissions=["read", "write"])
    assert "project_id" in fields_of(post(publishers, key=bound))
    assert post(publishers, key=bound, project_id=project).status_code == 201


def test_a_token_with_an_ip_allowlist_cannot_register(publishers, make):
    fenced = make.token(publishers.owner, scopes=["tokens", "documents"], permissions=["read", "write"],
                        ip_allowlist=["127.0.0.1"])
    assert "allowlist" in fields_of(post(publishers, key=fenced))["body"]


def test_policy_restricting_scopes_applies_at_registration(publishers, make):
    def restrict():
        from shared.core.extensions import db
        from shared.models import Organization

        db.session.get(Organization, publishers.org.id).policy_allowed_scopes = ["projects"]
        db.session.commit()

    make.run(restrict)
    assert "does not allow the scope documents" in fields_of(post(publishers))["rights"]


def test_plan_none_cannot_register(client, make, oidc_issuer):
    helper = PublisherHelper(client, make, oidc_issuer)

    def no_plan():
        from shared.core.extensions import db
        from shared.models import Organization

        db.session.get(Organization, helper.org.id).plan = "none"
        db.session.commit()

    make.run(no_plan)
    response = client.post("/api/v1/trusted-publishers", json=helper.body(), headers=helper.key.headers)
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "plan_required"


def test_another_organizations_publisher_is_404(publishers, make):
    theirs = publishers.register()
    other_org = make.org("business")
    other_key = publishers.manager(make.api_member(other_org, "owner"))

    for publisher_id in (theirs["id"], "tp_ffffffffffffffff", "nope"):
        response = publishers.client.delete(f"/api/v1/trusted-publishers/{publisher_id}",
                                            headers=other_key.headers)
        assert response.status_code == 404, publisher_id
    theirs_listed = publishers.client.get("/api/v1/trusted-publishers", headers=other_key.headers).get_json()
    assert theirs_listed["total"] == 0
    listed = publishers.client.get("/api/v1/trusted-publishers", headers=publishers.key.headers).get_json()
    assert listed["total"] == 1


def test_openapi_documents_the_publisher_endpoints(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/trusted-publishers"])
    assert "delete" in paths["/api/v1/trusted-publishers/{publisher_id}"]
    exchange = paths["/api/v1/oidc/exchange"]["post"]
    assert exchange["security"] == [] and {"201", "401", "429", "503"} <= set(exchange["responses"])
    assert exchange["requestBody"]["content"]["application/json"]["schema"]["required"] == ["token"]
