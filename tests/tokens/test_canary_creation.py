"""Creating canary tokens: the API's `canary` field and the form's checkbox, for owners,
admins and security managers only; what a created canary answers (exactly what an unknown value
does), what it raises, that it grants nothing anywhere, and that it is no use of the plan."""

from __future__ import annotations

import re

import pytest

from tests.conftest import bearer, csrf_from, login

CHECKBOX = "Canary (alerts when used, grants nothing)"
CREATE = "/api/v1/tokens"


def _key(make, member):
    """A key with every right the member's role allows (a token creates nothing beyond its own)."""
    from shared.identity import roles

    return make.token(member, name="key", scopes=sorted(s.value for s in roles.role_scopes(member.role)),
                      permissions=sorted(p.value for p in roles.role_permissions(member.role)))


def _canary_body(**extra) -> dict:
    return {"name": "backup-credentials.txt", "canary": True, "scopes": ["documents", "billing"],
            "permissions": ["read", "write"], **extra}


@pytest.fixture
def org(make):
    return make.org("business", name="Acme")


@pytest.mark.parametrize("role", ["owner", "admin", "security_manager"])
def test_owners_admins_and_security_managers_create_canaries_over_the_api(client, make, org, role):
    from shared.models import AuditEvent

    member = make.api_member(org, role)
    body = _canary_body() if role != "security_manager" else _canary_body(scopes=["documents"])
    response = client.post(CREATE, json=body, headers=_key(make, member).headers)
    assert response.status_code == 201, response.get_json()
    token = response.get_json()["token"]
    # A canary is an organization token (even a security manager's, who creates no other kind).
    assert (token["canary"], token["canary_trips"], token["type"]) == (True, 0, "organization")
    assert response.get_json()["secret"].startswith("kw_")
    created = make.rows(AuditEvent, action="token.created")[-1]
    assert created.details["canary"] is True and created.target_id == token["id"]
    listed = client.get(CREATE, headers=_key(make, member).headers).get_json()["items"]
    assert [t["canary"] for t in listed if t["id"] == token["id"]] == [True]


@pytest.mark.parametrize("role", ["maintainer", "editor", "partner_admin"])
def test_other_roles_cannot_create_canaries(client, make, org, role):
    partner = make.partner(org) if role.startswith("partner") else None
    member = make.api_member(org, role, partner_id=partner)
    response = client.post(CREATE, json=_canary_body(scopes=["documents"], permissions=["read"]),
                           headers=_key(make, member).headers)
    assert response.status_code == 400 and "canary" in response.get_json()["error"]["fields"]
    assert client.post(CREATE, json={**_canary_body(scopes=["documents"], permissions=["read"]), "canary": False},
                       headers=_key(make, member).headers).status_code == 201


@pytest.mark.parametrize("extra, field", [
    ({"type": "personal"}, "type"),
    ({"type": "project", "project_id": 1}, "type"),
    ({"canary": "yes"}, "canary"),
    ({"canary": 1}, "canary"),
])
def test_bad_canary_requests_are_400_with_the_field(client, make, org, extra, field):
    key = _key(make, make.api_member(org, "owner"))
    response = client.post(CREATE, json=_canary_body(**extra), headers=key.headers)
    assert response.status_code == 400 and field in response.get_json()["error"]["fields"]


def test_canary_is_chosen_at_creation_only(client, make, org):
    owner = make.api_member(org, "owner")
    key = _key(make, owner)
    plain = make.token(owner)
    response = client.patch(f"{CREATE}/{plain.id}", json={"canary": True}, headers=key.headers)
    assert response.status_code == 400 and "canary" in response.get_json()["error"]["fields"]
    with_type = client.post(CREATE, json=_canary_body(type="organization"), headers=key.headers)
    assert with_type.status_code == 201


def _unknown_value() -> str:
    from shared.tokens.format import _checksum

    body = "cd" * 28
    return "kw_" + body + _checksum(body)  # well formed, never issued


def _comparable(response) -> tuple:
    """Status, headers and body, less the date and the request id (random on every response)."""
    request_id = response.headers["X-Request-Id"]
    headers = sorted((k, v) for k, v in response.headers.items() if k not in ("Date", "X-Request-Id"))
    return response.status_code, headers, response.data.replace(request_id.encode(), b"<request id>")


def test_a_created_canary_answers_byte_for_byte_as_an_unknown_token_and_is_audited_and_notified(app, make, org):
    from shared.models import AuditEvent, Event, Notification

    owner = make.api_member(org, "owner")
    admin = make.api_member(org, "admin")
    security = make.api_member(org, "security_manager")
    make.api_member(org, "editor")
    canary = make.token(security, name="canary", canary=True)
    here, there = app.test_client(), app.test_client()
    for path in ("/api/v1/me", "/api/v1/documents?q=payroll", "/api/v1/billing"):
        tripped = here.get(path, headers={**bearer(canary.secret), "User-Agent": "intruder/1.0"},
                           environ_base={"REMOTE_ADDR": "203.0.113.9"})
        unknown = there.get(path, headers={**bearer(_unknown_value()), "User-Agent": "intruder/1.0"},
                            environ_base={"REMOTE_ADDR": "198.51.100.9"})
        assert tripped.status_code == 401 and _comparable(tripped) == _comparable(unknown)
    make.flush_usage()

    token = make.get_token(canary.id)
    assert token.canary_trips == 3 and token.usage_count == 0
    trips = make.rows(AuditEvent, action="token.canary_used")
    assert [(a.source_ip, a.user_agent, a.details["path"]) for a in trips] == [
        ("203.0.113.9", "intruder/1.0", path) for path in ("/api/v1/me", "/api/v1/documents", "/api/v1/billing")]
    assert len(make.rows(Event, type="token.canary_used")) == 3
    told = {n.user_id for n in make.rows(Notification, kind="canary_used")}
    assert told == {owner.user_id, admin.user_id, security.user_id}


def _example_path(rule: str) -> str:
    """An API rule with every variable filled in (ids that exist or not: a canary gets no further)."""
    path = re.sub(r"<int[^>]*:\w+>", "1", rule)
    return "/api/v1" + re.sub(r"<\w+>", "tok_0000000000000000", path)


def test_a_created_canary_grants_nothing_on_any_endpoint(app, client, make, org):
    from api.schema import OPERATIONS

    # Each refused request counts as a failed authentication: one per endpoint, more than the default limit.
    app.config["KEYWARD_AUTH_FAILURE_LIMIT"] = "1000/minute"
    owner = make.api_member(org, "owner")
    canary = make.token(owner, canary=True, scopes=["documents", "projects", "templates", "analytics", "billing",
                                                     "tokens"], permissions=["read", "write", "delete"])
    authenticated = [op for op in OPERATIONS if op.authenticated]
    assert len(authenticated) >= 20
    for op in authenticated:
        response = client.open(_example_path(op.rule), method=op.method, json={} if op.body else None,
                               headers=bearer(canary.secret))
        assert response.status_code == 401, (op.method, op.rule, response.status_code)
        assert response.get_json()["error"]["code"] == "invalid_api_key"
    make.flush_usage()
    assert make.get_token(canary.id).canary_trips == len(authenticated)


def test_canaries_are_no_use_of_the_free_plan(client, make, app):
    from shared.models import Plan

    app.config["KEYWARD_FREE_TOKEN_LIMIT"] = 2
    org = make.org(Plan.FREE)
    owner = make.api_member(org, "owner")
    key = _key(make, owner)  # 1 of 2
    make.token(owner)  # 2 of 2
    canary = client.post(CREATE, json=_canary_body(), headers=key.headers)
    assert canary.status_code == 201  # at the limit, a canary is still allowed…
    refused = client.post(CREATE, json={**_canary_body(), "canary": False}, headers=key.headers)
    assert refused.status_code == 409  # …and it did not take a plain token's place either
    signed_in = app.test_client()
    login(signed_in, owner)
    page = signed_in.get("/settings/api-tokens/new").get_data(as_text=True)
    assert "you have 2 of 2 active tokens" in page


# --------------------------------------------------------------------------- the form


def test_the_form_offers_the_canary_checkbox_to_owners_admins_and_security_managers_only(client, make, org):
    for role, offered in (("owner", True), ("admin", True), ("security_manager", True), ("maintainer", False),
                          ("editor", False)):
        browser = client.application.test_client()
        login(browser, make.member(org, role))
        page = browser.get("/settings/api-tokens/new").get_data(as_text=True)
        assert (CHECKBOX in page) is offered, role


def _post_canary_form(client, member, name: str):
    """Sign in as `member` and send the New token form with the Canary box ticked (type: personal)."""
    login(client, member)
    form = client.get("/settings/api-tokens/new").get_data(as_text=True)
    return client.post("/settings/api-tokens", data={
        "csrf_token": csrf_from(form), "name": name, "type": "personal", "permissions": "read",
        "scopes": "documents", "expiration": "365", "canary": "1"})


def _row(listing: str, public_id: str) -> str:
    start = listing.index(f'id="token-{public_id}"')
    return listing[start:listing.index("</tr>", start)]


def test_a_security_manager_creates_a_canary_in_the_form_and_the_list_shows_its_trips(client, make, org):
    response = _post_canary_form(client, make.member(org, "security_manager"), "aws-keys-backup")
    assert response.status_code == 200
    secret = re.search(r'data-token-value[^>]*>\s*(kw_[0-9a-f]{64})', response.get_data(as_text=True)).group(1)
    from shared.models import ApiToken

    [token] = [t for t in make.rows(ApiToken) if t.name == "aws-keys-backup"]
    assert token.is_canary and token.type == "organization"

    row = _row(client.get("/settings/api-tokens").get_data(as_text=True), token.public_id)
    assert "badge-canary" in row and "Canary" in row and "never tripped" in row
    for _ in range(3):
        client.application.test_client().get("/api/v1/me", headers=bearer(secret))
    make.flush_usage()
    assert "tripped 3 times" in _row(client.get("/settings/api-tokens").get_data(as_text=True), token.public_id)


def test_an_editor_posting_the_canary_field_gets_the_error_on_the_form(client, make, org):
    response = _post_canary_form(client, make.member(org, "editor"), "sneaky")
    assert response.status_code == 422
    assert "Your role cannot create canary tokens" in response.get_data(as_text=True)
