"""Security team tools: bulk revoke (by id and by rule, dry run, one transaction),
transfer before departure, narrowing to observed use; through the API, the services and the pages."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from tests.conftest import Issued, Member, Org, csrf_from, login

BULK = "/api/v1/tokens/bulk-revoke"
TOKENS = "/settings/api-tokens"


# --------------------------------------------------------------------------- helpers


def live_ids(make, org: Org) -> set[str]:
    from shared.models import ApiToken

    return {t.public_id for t in make.rows(ApiToken, organization_id=org.id) if t.revoked_at is None}


def snapshot(make) -> tuple:
    """Every token's mutable state and the number of audit events, events and notifications."""
    from shared.models import ApiToken, AuditEvent, Event, Notification

    tokens = tuple((t.public_id, t.revoked_at, t.revoked_reason, t.created_by_membership_id,
                    str(t.rights), t.updated_at) for t in make.rows(ApiToken))
    return tokens, len(make.rows(AuditEvent)), len(make.rows(Event)), len(make.rows(Notification))


def signed_in(client, member: Member):
    assert login(client, member).status_code == 302
    return client


def html(response) -> str:
    return response.get_data(as_text=True)


@dataclass
class World:
    org: Org
    other: Org
    owner: Member
    admin: Member
    security: Member
    editor: Member
    partner_user: Member
    partner_id: int
    other_partner_id: int
    t: dict[str, Issued]  # by name
    key: Issued  # the security manager's API key (scope tokens, read + write)
    outsider: Issued  # another organization's token

    def ids(self, *names: str) -> set[str]:
        return {self.t[name].id for name in names}


@pytest.fixture
def world(make, clock) -> World:
    """Tokens a day apart (day 0 … 8 from 2026-11-23), one already revoked, one in another org."""
    from shared.audit.record import Actor
    from shared.core.extensions import db
    from shared.models import Membership
    from shared.tokens import incident

    org = make.org("business", name="Acme")
    other = make.org("business", name="Other")
    owner = make.api_member(org, "owner")
    admin = make.api_member(org, "admin")
    security = make.api_member(org, "security_manager")
    editor = make.api_member(org, "editor")
    partner_id = make.partner(org, "Globex")
    other_partner_id = make.partner(org, "Initech")
    partner_user = make.api_member(org, "partner_admin", partner_id=partner_id)
    partner_member = make.api_member(org, "partner_member", partner_id=other_partner_id)
    project_id = make.project(org)
    made: dict[str, Issued] = {}
    plan = [("org", owner, {"type": "organization"}), ("admin", admin, {}), ("editor1", editor, {}),
            ("editor2", editor, {}), ("partner", partner_user, {}), ("initech", partner_member, {}),
            ("revoked", editor, {}), ("project", admin, {"type": "project", "project_id": project_id}),
            ("canary", security, {"canary": True})]
    for name, member, extra in plan:
        made[name] = make.token(member, name=name, **extra)
        clock.advance(days=1)

    def revoke_one():
        from shared.tokens import access, lifecycle

        actor = Actor(membership=db.session.get(Membership, editor.id))
        lifecycle.revoke_token(actor, access.get_token_for(actor, made["revoked"].id))

    make.run(revoke_one)
    key = make.token(security, name="security key", scopes=["tokens"], permissions=["read", "write"])
    outsider = make.token(make.api_member(other, "owner"), name="outsider")
    assert incident.MAX_BULK_IDS >= 100
    return World(org, other, owner, admin, security, editor, partner_user, partner_id, other_partner_id, made,
                 key, outsider)


# --------------------------------------------------------------------------- bulk revoke: rules


def _rule(world: World, name: str) -> tuple[dict, set[str]]:
    """(request body, the live tokens it must select) for each way of choosing tokens."""
    day3 = "2026-11-26"  # tokens "org", "admin" and "editor1" were created on the three days before
    return {
        "token_ids": ({"token_ids": [world.t["editor1"].id, world.t["partner"].id, world.t["revoked"].id]},
                      world.ids("editor1", "partner")),
        "created_by": ({"created_by": world.editor.user_id}, world.ids("editor1", "editor2")),
        "partner_id": ({"partner_id": world.partner_id}, world.ids("partner")),
        "created_before": ({"created_before": day3}, world.ids("org", "admin", "editor1")),
        "created_before_and_member": ({"created_before": "2026-11-26", "created_by": world.editor.user_id},
                                      world.ids("editor1")),
        # Everything live, canaries included, but the calling token itself.
        "all": ({"all": True}, world.ids("org", "admin", "editor1", "editor2", "partner", "initech", "project",
                                         "canary")),
    }[name]


RULES = ("token_ids", "created_by", "partner_id", "created_before", "created_before_and_member", "all")


@pytest.mark.parametrize("name", RULES)
def test_a_dry_run_lists_exactly_the_matching_live_tokens_and_changes_nothing(client, make, world, name):
    body, expected = _rule(world, name)
    before = snapshot(make)
    response = client.post(BULK, json={**body, "dry_run": True}, headers=world.key.headers)
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert set(answer) == {"would_revoke", "ids"}
    assert answer["would_revoke"] == len(expected) and set(answer["ids"]) == expected
    # Nothing changed (the caller's request is counted as a use of its token: compare the rest).
    assert snapshot(make) == before


@pytest.mark.parametrize("name", RULES)
def test_bulk_revoke_by_each_rule_revokes_exactly_the_matching_live_tokens(client, make, world, name):
    from shared.models import AuditEvent, Event, Notification

    body, expected = _rule(world, name)
    live_before = live_ids(make, world.org)
    audits_before = len(make.rows(AuditEvent))
    response = client.post(BULK, json=body, headers=world.key.headers)
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert set(answer) == {"revoked", "ids"} and answer["revoked"] == len(expected) and set(answer["ids"]) == expected

    assert live_ids(make, world.org) == live_before - expected
    assert world.key.id in live_ids(make, world.org) and world.outsider.id in live_ids(make, world.other)
    for public_id in expected:
        token = make.get_token(public_id)
        assert token.revoked_reason == "bulk_revoked" and token.revoked_by_user_id == world.security.user_id

    # One audit event lists every token; no per-token revocation record.
    added = make.rows(AuditEvent)[audits_before:]
    assert [a.action for a in added] == ["token.bulk_revoked"]
    assert {entry["id"] for entry in added[0].details["tokens"]} == expected
    assert added[0].details["count"] == len(expected) and added[0].actor_user_id == world.security.user_id
    # Each token still emits its own event (webhooks), and every creator hears of it once.
    revoked_events = {e.data["token"]["id"] for e in make.rows(Event, type="token.revoked")}
    assert expected <= revoked_events and world.t["revoked"].id in revoked_events
    creators = {make.run(lambda pid=public_id: _creator_user_id(pid)) for public_id in expected}
    notices = make.rows(Notification, kind="bulk_revoked")
    assert sorted(n.user_id for n in notices) == sorted(creators)


def _creator_user_id(public_id: str) -> int:
    from shared.core.extensions import db
    from shared.models import ApiToken

    return db.session.scalars(select(ApiToken).where(ApiToken.public_id == public_id)).one().creator.user_id


def test_a_creator_of_several_tokens_gets_one_notification_naming_them(client, make, world):
    from shared.models import Notification

    client.post(BULK, json={"created_by": world.editor.user_id}, headers=world.key.headers)
    [notice] = make.rows(Notification, kind="bulk_revoked", user_id=world.editor.user_id)
    assert notice.message.startswith("2 of your tokens were revoked") and "editor1" in notice.message \
        and "editor2" in notice.message


def test_bulk_revoke_is_for_owners_admins_and_security_managers(client, make, world):
    for role in ("maintainer", "editor"):
        key = make.token(make.api_member(world.org, role), scopes=["tokens"], permissions=["read", "write"])
        denied = client.post(BULK, json={"all": True, "dry_run": True}, headers=key.headers)
        assert denied.status_code == 403 and denied.get_json()["error"]["code"] == "insufficient_permission"
    for member in (world.owner, world.admin):
        key = make.token(member, scopes=["tokens"], permissions=["read", "write"])
        assert client.post(BULK, json={"all": True, "dry_run": True}, headers=key.headers).status_code == 200
    reader = make.token(world.security, scopes=["tokens"], permissions=["read"])
    refused = client.post(BULK, json={"all": True}, headers=reader.headers)
    assert refused.get_json()["error"]["required"] == {"scope": "tokens", "permission": "write"}
    assert _rule(world, "all")[1] <= live_ids(make, world.org)


@pytest.mark.parametrize("body", [
    {"token_ids": ["tok_0000000000000000"]},  # unknown
    {"token_ids": ["not a token id"]},
    {"created_by": 999_999},
    {"partner_id": 999_999},
])
def test_unknown_ids_answer_404_and_revoke_nothing(client, make, world, body):
    before = live_ids(make, world.org)
    response = client.post(BULK, json=body, headers=world.key.headers)
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"
    assert live_ids(make, world.org) == before


def test_another_organizations_ids_answer_404_and_revoke_nothing(client, make, world):
    before = live_ids(make, world.org) | live_ids(make, world.other)
    other_owner = _rows_member_user(make, world.other)
    other_partner = make.partner(world.other, "Elsewhere")
    for body in ({"token_ids": [world.t["editor1"].id, world.outsider.id]}, {"created_by": other_owner},
                 {"partner_id": other_partner}):
        response = client.post(BULK, json=body, headers=world.key.headers)
        assert response.status_code == 404, body
    assert live_ids(make, world.org) | live_ids(make, world.other) == before


def _rows_member_user(make, org: Org) -> int:
    from shared.models import Membership

    return make.rows(Membership, organization_id=org.id)[0].user_id


@pytest.mark.parametrize("body, field", [
    ({}, "token_ids"),
    ({"dry_run": True}, "token_ids"),
    ({"all": False}, "token_ids"),
    ({"token_ids": ["tok_0000000000000000"], "all": True}, "token_ids"),
    ({"token_ids": []}, "token_ids"),
    ({"created_before": "yesterday"}, "created_before"),
    ({"created_by": "3"}, "created_by"),
    ({"all": "yes"}, "all"),
    ({"everything": True}, "everything"),
])
def test_bad_bulk_requests_are_400_with_the_field(client, make, world, body, field):
    before = live_ids(make, world.org)
    response = client.post(BULK, json=body, headers=world.key.headers)
    assert response.status_code == 400 and field in response.get_json()["error"]["fields"]
    assert live_ids(make, world.org) == before


def test_a_failure_midway_leaves_every_token_as_it_was(make, world, app):
    """A real database trigger refuses to revoke one token in the middle of the batch: the batch
    fails, and no token is revoked, audited, evented or notified."""
    from shared.audit.record import Actor
    from shared.core.extensions import db
    from shared.models import ApiToken, Membership
    from shared.tokens import incident

    poison = make.token(world.editor, name="poison")
    make.run(lambda: (db.session.execute(
        ApiToken.__table__.update().where(ApiToken.public_id == poison.id)
        .values(created_at=make.get_token(world.t["editor2"].id).created_at + timedelta(hours=1))),
        db.session.commit()))
    before = snapshot(make)
    with _poison_trigger(make):
        def attempt():
            actor = Actor(membership=db.session.get(Membership, world.security.id))
            preview = incident.bulk_revoke(actor, incident.BulkRule(all=True), dry_run=True)
            ids = preview.ids
            assert 2 <= ids.index(poison.id) <= len(ids) - 3  # in the middle of the batch
            with pytest.raises(DBAPIError, match="poison"):
                incident.bulk_revoke(actor, incident.BulkRule(all=True), dry_run=False)

        make.run(attempt)
    assert snapshot(make) == before
    assert all(make.get_token(public_id).revoked_at is None for public_id in live_ids(make, world.org))


class _poison_trigger:
    """A BEFORE UPDATE trigger that aborts the revocation of any token named "poison"."""

    def __init__(self, make):
        self.make = make

    def _run(self, *statements: str) -> None:
        from shared.core.extensions import db

        def run():
            for statement in statements:
                db.session.execute(text(statement))
            db.session.commit()

        self.make.run(run)

    def __enter__(self):
        if self.make.run(lambda: _dialect()) == "sqlite":
            self._run("CREATE TRIGGER poison_revocation BEFORE UPDATE ON api_tokens "
                      "WHEN NEW.revoked_at IS NOT NULL AND NEW.name = 'poison' "
                      "BEGIN SELECT RAISE(ABORT, 'poison token'); END")
        else:
            self._run("CREATE OR REPLACE FUNCTION poison_revocation() RETURNS trigger AS $$ BEGIN "
                      "IF NEW.revoked_at IS NOT NULL AND NEW.name = 'poison' THEN "
                      "RAISE EXCEPTION 'poison token'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
                      "CREATE TRIGGER poison_revocation BEFORE UPDATE ON api_tokens "
                      "FOR EACH ROW EXECUTE FUNCTION poison_revocation()")
        return self

    def __exit__(self, *exc):
        if self.make.run(lambda: _dialect()) == "sqlite":
            self._run("DROP TRIGGER poison_revocation")
        else:
            self._run("DROP TRIGGER poison_revocation ON api_tokens", "DROP FUNCTION poison_revocation()")
        return False


def _dialect() -> str:
    from shared.core.extensions import db

    return db.session.get_bind().dialect.name


def test_a_token_revoking_in_bulk_never_revokes_itself(client, make, world):
    response = client.post(BULK, json={"created_by": world.security.user_id}, headers=world.key.headers)
    assert response.get_json() == {"revoked": 1, "ids": [world.t["canary"].id]}
    assert client.get("/api/v1/me", headers=world.key.headers).status_code == 200


def test_bulk_revoke_is_in_the_openapi_document(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    assert "post" in paths["/api/v1/tokens/bulk-revoke"]
    assert "post" in paths["/api/v1/tokens/{token_id}/transfer"] and "post" in paths["/api/v1/tokens/{token_id}/narrow"]


# --------------------------------------------------------------------------- transfer


@pytest.fixture
def team(make):
    org = make.org("business", name="Acme")
    return {
        "org": org,
        "owner": make.api_member(org, "owner"),
        "admin": make.api_member(org, "admin"),
        "leaver": make.api_member(org, "admin"),
        "editor": make.api_member(org, "editor"),
        "security": make.api_member(org, "security_manager"),
    }


def _key(make, member: Member) -> Issued:
    from shared.identity import roles

    # A token acts only on tokens within its own reach: the key holds everything its creator's role
    # allows and never expires, so it may manage any of the member's or the org's tokens.
    allowed = [p for p in ("read", "write", "delete") if p in roles.role_permissions(member.role)]
    scopes = [s for s in roles.KNOWN_SCOPES if s in roles.role_scopes(member.role)]
    return make.token(member, name="key", scopes=scopes, permissions=allowed, expires_at=None)


def test_after_transfer_the_token_follows_the_new_creators_role_and_survives_the_old_creators_removal(
        client, make, team):
    from shared.core.extensions import db
    from shared.identity import accounts
    from shared.models import AuditEvent, Event, Membership, Notification

    org, leaver, editor = team["org"], team["leaver"], team["editor"]
    robot = make.token(leaver, name="deploy robot", type="organization", scopes=["documents"],
                       permissions=["read", "write", "delete"])
    doomed, spared = make.document(org), make.document(org)
    owner_key = _key(make, team["owner"])

    response = client.post(f"/api/v1/tokens/{robot.id}/transfer", json={"to_user_id": editor.user_id},
                           headers=owner_key.headers)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["created_by"] == {"id": editor.user_id, "email": editor.email}

    # The rights are the editor's now: read and write, no delete.
    assert client.get("/api/v1/documents", headers=robot.headers).status_code == 200
    refused = client.delete(f"/api/v1/documents/{doomed}", headers=robot.headers)
    assert refused.status_code == 403 and refused.get_json()["error"]["required"] == {
        "scope": "documents", "permission": "delete"}
    # …and follow the editor's role from the next request.
    make.run(lambda: accounts.set_role(db.session.get(Membership, editor.id), "maintainer"))
    assert client.delete(f"/api/v1/documents/{doomed}", headers=robot.headers).status_code in (200, 204)
    # The old creator leaves: the token keeps working.
    make.run(lambda: accounts.remove_member(db.session.get(Membership, leaver.id)))
    assert client.get(f"/api/v1/documents/{spared}", headers=robot.headers).status_code == 200

    [record] = make.rows(AuditEvent, action="token.transferred")
    assert record.details["from"]["email"] == leaver.email and record.details["to"]["email"] == editor.email
    assert record.actor_user_id == team["owner"].user_id and record.target_id == robot.id
    [event] = make.rows(Event, type="token.transferred")
    assert event.data["token"]["created_by"]["id"] == editor.user_id and event.data["from"]["id"] == leaver.user_id
    told = {n.user_id for n in make.rows(Notification, kind="transferred")}
    assert {leaver.user_id, editor.user_id} <= told


def test_a_token_stops_with_its_creator_unless_transferred(client, make, team):
    from shared.core.extensions import db
    from shared.identity import accounts
    from shared.models import Membership

    kept = make.token(team["leaver"], type="organization")
    lost = make.token(team["leaver"], type="organization")
    client.post(f"/api/v1/tokens/{kept.id}/transfer", json={"to_user_id": team["admin"].user_id},
                headers=_key(make, team["owner"]).headers)
    make.run(lambda: accounts.remove_member(db.session.get(Membership, team["leaver"].id)))
    assert client.get("/api/v1/me", headers=kept.headers).status_code == 200
    assert client.get("/api/v1/me", headers=lost.headers).status_code == 401


@pytest.mark.parametrize("case, status, code", [
    ("personal", 400, "invalid_request"),
    ("revoked", 409, "token_revoked"),
    ("same member", 400, "invalid_request"),
    ("another org's user", 404, "not_found"),
    ("unknown user", 404, "not_found"),
    ("partner user", 400, "invalid_request"),
    ("viewer", 400, "invalid_request"),
    ("by an editor", 403, "insufficient_permission"),
    ("by a security manager", 403, "insufficient_permission"),
])
def test_transfers_that_cannot_be(client, make, team, case, status, code):
    org = team["org"]
    token = make.token(team["leaver"], type="personal" if case == "personal" else "organization")
    target = team["admin"].user_id
    key = _key(make, team["owner"])
    if case == "revoked":
        client.delete(f"/api/v1/tokens/{token.id}", headers=key.headers)
    elif case == "same member":
        target = team["leaver"].user_id
    elif case == "another org's user":
        target = make.api_member(make.org(), "owner").user_id
    elif case == "unknown user":
        target = 999_999
    elif case == "partner user":
        target = make.api_member(org, "partner_admin", partner_id=make.partner(org)).user_id
    elif case == "viewer":
        target = make.api_member(org, "viewer").user_id
    elif case == "by an editor":
        key = _key(make, team["editor"])
        token = make.token(team["editor"], type="personal")
    elif case == "by a security manager":
        key = _key(make, team["security"])
    before = snapshot(make)
    response = client.post(f"/api/v1/tokens/{token.id}/transfer", json={"to_user_id": target}, headers=key.headers)
    assert response.status_code == status and response.get_json()["error"]["code"] == code, response.get_json()
    assert snapshot(make)[0] == before[0]


def test_a_transfer_respects_the_free_plans_token_limit(client, make, app):
    from shared.models import Plan

    app.config["KEYWARD_FREE_TOKEN_LIMIT"] = 2
    org = make.org(Plan.FREE)
    owner, admin = make.api_member(org, "owner"), make.api_member(org, "admin")
    key = make.token(owner, scopes=["tokens", "documents"], permissions=["read", "write"])
    robot = make.token(owner, type="organization")
    make.token(admin)
    make.token(admin)
    response = client.post(f"/api/v1/tokens/{robot.id}/transfer", json={"to_user_id": admin.user_id},
                           headers=key.headers)
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "token_limit_reached"


def test_removal_with_transfer_moves_shared_tokens_and_removes_the_member_in_one_commit(make, team, client):
    from shared.audit.record import Actor
    from shared.core.errors import PermissionDenied
    from shared.core.extensions import db
    from shared.models import Membership
    from shared.tokens import incident

    shared_token = make.token(team["owner"], type="organization")
    personal = make.token(team["owner"])

    def admin_removes_owner():
        actor = Actor(membership=db.session.get(Membership, team["admin"].id))
        with pytest.raises(PermissionDenied):  # an admin cannot remove an owner…
            incident.transfer_and_remove(actor, db.session.get(Membership, team["owner"].id),
                                               team["admin"].user_id)

    before = snapshot(make)
    make.run(admin_removes_owner)
    assert snapshot(make)[0] == before[0]  # …so nothing was transferred either

    def owner_removes_leaver():
        actor = Actor(membership=db.session.get(Membership, team["owner"].id))
        leaver = db.session.get(Membership, team["leaver"].id)
        return [t.public_id for t in incident.transfer_and_remove(actor, leaver, team["admin"].user_id)]

    moved_token = make.token(team["leaver"], type="organization")
    stopped = make.token(team["leaver"])
    assert make.run(owner_removes_leaver) == [moved_token.id]
    assert client.get("/api/v1/me", headers=moved_token.headers).get_json()["user"]["id"] == team["admin"].user_id
    assert client.get("/api/v1/me", headers=stopped.headers).status_code == 401
    assert client.get("/api/v1/me", headers=shared_token.headers).status_code == 200
    assert client.get("/api/v1/me", headers=personal.headers).status_code == 200


# --------------------------------------------------------------------------- narrowing


@pytest.fixture
def narrowing(make):
    org = make.org("business", name="Acme")
    owner = make.api_member(org, "owner")
    return org, owner, _key(make, owner)


def test_narrowing_removes_only_unused_rights_and_the_token_keeps_working_for_what_it_used(
        client, make, narrowing):
    from shared.models import AuditEvent, Event

    org, owner, key = narrowing
    token = make.token(owner, scopes=["documents", "projects", "templates", "billing", "x-team"],
                       permissions=["read", "write", "delete"])
    document = make.document(org)
    assert client.get("/api/v1/documents", headers=token.headers).status_code == 200
    assert client.get("/api/v1/projects", headers=token.headers).status_code == 200
    assert client.get(f"/api/v1/documents/{document}", headers=token.headers).status_code == 200
    make.flush_usage()  # observed use is what the usage flusher wrote

    response = client.post(f"/api/v1/tokens/{token.id}/narrow", headers=key.headers)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    # Exactly the pairs used stay; unknown labels grant nothing and are kept; the rest is gone.
    assert body["rights"] == {"documents": ["read"], "projects": ["read"],
                              "x-team": ["read", "write", "delete"]}

    assert client.get("/api/v1/documents", headers=token.headers).status_code == 200
    assert client.get("/api/v1/projects", headers=token.headers).status_code == 200
    scope_refused = client.get("/api/v1/templates", headers=token.headers)
    assert scope_refused.status_code == 403 and scope_refused.get_json()["error"] == {
        "code": "insufficient_scope", "message": scope_refused.get_json()["error"]["message"],
        "required": {"scope": "templates", "permission": "read"},
        "request_id": scope_refused.headers["X-Request-Id"]}
    write_refused = client.post("/api/v1/documents", json={"title": "x"}, headers=token.headers)
    assert write_refused.status_code == 403
    assert write_refused.get_json()["error"]["code"] == "insufficient_permission"
    assert write_refused.get_json()["error"]["required"] == {"scope": "documents", "permission": "write"}

    [record] = make.rows(AuditEvent, action="token.narrowed")
    assert record.details["removed"] == {"documents": ["write", "delete"], "projects": ["write", "delete"],
                                         "templates": ["read", "write", "delete"],
                                         "billing": ["read", "write", "delete"]}
    assert record.actor_user_id == owner.user_id
    assert [e.data["token"]["rights"] for e in make.rows(Event, type="token.updated")] == [body["rights"]]


def test_narrowing_looks_at_the_last_30_days_only(client, make, narrowing, clock):
    _, owner, key = narrowing
    token = make.token(owner, scopes=["documents", "projects"], permissions=["read", "write"])
    client.post("/api/v1/documents", json={"title": "long ago"}, headers=token.headers)
    make.flush_usage()
    clock.advance(days=31)
    client.get("/api/v1/projects", headers=token.headers)
    make.flush_usage()
    body = client.post(f"/api/v1/tokens/{token.id}/narrow", headers=key.headers).get_json()
    assert body["rights"] == {"projects": ["read"]}


def test_a_token_that_used_nothing_cannot_be_narrowed(client, make, narrowing):
    _, owner, key = narrowing
    token = make.token(owner, scopes=["documents"], permissions=["read", "write"])
    before = snapshot(make)
    response = client.post(f"/api/v1/tokens/{token.id}/narrow", headers=key.headers)
    assert response.status_code == 400 and "token" in response.get_json()["error"]["fields"]
    assert snapshot(make)[0] == before[0]


def test_narrowing_a_token_that_used_everything_changes_nothing(client, make, narrowing):
    from shared.models import AuditEvent

    _, owner, key = narrowing
    token = make.token(owner, scopes=["documents"], permissions=["read"])
    client.get("/api/v1/documents", headers=token.headers)
    make.flush_usage()
    response = client.post(f"/api/v1/tokens/{token.id}/narrow", headers=key.headers)
    assert response.status_code == 200 and response.get_json()["scopes"] == ["documents"]
    assert not make.rows(AuditEvent, action="token.narrowed")


def test_who_may_narrow(client, make, narrowing):
    org, _, _ = narrowing
    editor = make.api_member(org, "editor")
    theirs = make.token(editor, scopes=["documents", "projects"])
    client.get("/api/v1/documents", headers=theirs.headers)
    make.flush_usage()
    security_key = _key(make, make.api_member(org, "security_manager"))
    refused = client.post(f"/api/v1/tokens/{theirs.id}/narrow", headers=security_key.headers)
    assert refused.status_code == 403  # sees every token, edits none but their own
    other_editor_key = _key(make, make.api_member(org, "editor"))
    assert client.post(f"/api/v1/tokens/{theirs.id}/narrow", headers=other_editor_key.headers).status_code == 404
    own_key = _key(make, editor)
    assert client.post(f"/api/v1/tokens/{theirs.id}/narrow", headers=own_key.headers).get_json()["scopes"] == [
        "documents"]
    elsewhere = _key(make, make.api_member(make.org(), "owner"))
    assert client.post(f"/api/v1/tokens/{theirs.id}/narrow", headers=elsewhere.headers).status_code == 404


def test_canaries_and_revoked_tokens_are_not_narrowed(client, make, narrowing):
    _, owner, key = narrowing
    canary = make.token(owner, canary=True)
    assert client.post(f"/api/v1/tokens/{canary.id}/narrow", headers=key.headers).status_code == 400
    revoked = make.token(owner)
    client.get("/api/v1/documents", headers=revoked.headers)
    client.delete(f"/api/v1/tokens/{revoked.id}", headers=key.headers)
    assert client.post(f"/api/v1/tokens/{revoked.id}/narrow", headers=key.headers).status_code == 409


# --------------------------------------------------------------------------- the pages (no JavaScript)


def _login(app, member: Member):
    browser = app.test_client()
    signed_in(browser, member)
    return browser


def test_revoke_selected_shows_the_dry_run_then_revokes_exactly_those(app, make, world):
    browser = _login(app, world.admin)
    listing = html(browser.get(TOKENS))
    assert 'id="bulk-select"' in listing and "Revoke selected" in listing
    for name in ("editor1", "partner", "project"):
        assert f'name="token_ids" value="{world.t[name].id}" form="bulk-select"' in listing
    chosen = [world.t[name].id for name in ("editor1", "partner", "project")]
    before = snapshot(make)
    preview = browser.get(f"{TOKENS}/bulk-revoke", query_string={"selected": "1", "token_ids": chosen})
    page = html(preview)
    assert preview.status_code == 200 and "Revoke 3 tokens" in page
    assert set(re.findall(r'<tr data-token-id="(tok_\w+)"', page)) == set(chosen)
    assert snapshot(make) == before  # the preview is a dry run

    confirmed = browser.post(f"{TOKENS}/bulk-revoke", data={
        "csrf_token": csrf_from(page), "confirm": "1", "token_ids": chosen, "previewed": chosen})
    assert confirmed.status_code == 302 and confirmed.headers["Location"].endswith(TOKENS)
    assert "Revoked 3 tokens" in html(browser.get(TOKENS))
    assert live_ids(make, world.org) == world.ids("org", "admin", "editor2", "initech", "canary") | {world.key.id}
    deleted = html(browser.get(TOKENS, query_string={"tab": "deleted"}))
    assert deleted.count("Revoked in a bulk revocation") == 3


def test_revoke_selected_over_htmx_answers_a_dialog(app, make, world):
    browser = _login(app, world.security)
    fragment = browser.get(f"{TOKENS}/bulk-revoke", query_string={"selected": "1", "token_ids": world.t["org"].id},
                           headers={"HX-Request": "true"})
    body = html(fragment)
    assert body.lstrip().startswith("<div>") and "<dialog" in body and "data-reopen" in body
    assert "Revoke 1 selected token?" in body and "Revoke 1 token" in body
    nothing = html(browser.get(f"{TOKENS}/bulk-revoke", query_string={"selected": "1"},
                               headers={"HX-Request": "true"}))
    assert "Select the tokens to revoke first" in nothing


def test_bulk_revoke_by_rule_revokes_only_what_the_preview_listed(app, make, world, clock):
    browser = _login(app, world.owner)
    form = html(browser.get(f"{TOKENS}/bulk-revoke"))
    assert "Bulk revoke by rule" in form and str(world.editor.user_id) in form
    preview = html(browser.get(f"{TOKENS}/bulk-revoke", query_string={"created_by": world.editor.user_id}))
    assert "2 tokens would be revoked" in preview and "Revoke 2 tokens" in preview
    late = make.token(world.editor, name="created after the preview")
    confirm = re.search(r'<form method="post" action="[^"]*bulk-revoke"[^>]*>(.*?)</form>', preview,
                        re.DOTALL).group(1)
    fields = re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', confirm)
    data: dict[str, list[str]] = {}
    for name, value in fields:
        data.setdefault(name, []).append(value)
    assert browser.post(f"{TOKENS}/bulk-revoke", data=data).status_code == 302
    assert live_ids(make, world.org) & (world.ids("editor1", "editor2") | {late.id}) == {late.id}
    from shared.models import AuditEvent

    record = make.rows(AuditEvent, action="token.bulk_revoked")[-1]
    assert record.details["rule"] == {"created_by": world.editor.user_id} and record.details["count"] == 2


def test_the_rule_form_says_what_is_wrong(app, make, world):
    browser = _login(app, world.owner)
    nothing = browser.get(f"{TOKENS}/bulk-revoke", query_string={"created_before": "not a date"})
    assert nothing.status_code == 422 and "Enter a date as YYYY-MM-DD" in html(nothing)


def test_bulk_revoke_pages_are_for_those_who_may(app, make, world):
    browser = _login(app, world.editor)
    listing = html(browser.get(TOKENS))
    assert "Revoke selected" not in listing and 'form="bulk-select"' not in listing
    assert browser.get(f"{TOKENS}/bulk-revoke").status_code == 403
    assert browser.post(f"{TOKENS}/bulk-revoke", data={"csrf_token": csrf_from(listing),
                                                       "all": "1"}).status_code == 403
    assert world.t["editor1"].id in live_ids(make, world.org)


def test_the_removal_dialog_lists_the_members_tokens_and_transfers_the_shared_ones(app, make, team, client):
    leaver, admin = team["leaver"], team["admin"]
    shared_token = make.token(leaver, name="nightly export", type="organization")
    personal = make.token(leaver, name="leaver laptop")
    browser = _login(app, team["owner"])
    page = html(browser.get("/settings/members"))
    dialog = page[page.index(f'<dialog class="dialog dialog-wide" id="remove-{leaver.id}"'):]
    dialog = dialog[:dialog.index("</dialog>")]
    assert "nightly export" in dialog and "leaver laptop" in dialog
    assert "Transfer organization and project tokens to" in dialog and f'value="{admin.user_id}"' in dialog
    assert f'value="{leaver.user_id}"' not in dialog  # not to themselves
    no_js = html(browser.get(f"/settings/members/{leaver.id}/remove"))
    assert "nightly export" in no_js and 'name="transfer_to"' in no_js

    removed = browser.post(f"/settings/members/{leaver.id}/remove",
                           data={"csrf_token": csrf_from(page), "transfer_to": str(admin.user_id)})
    assert removed.status_code == 302
    assert "now belongs to" in html(browser.get("/settings/members"))
    assert client.get("/api/v1/me", headers=shared_token.headers).get_json()["user"]["email"] == admin.email
    assert client.get("/api/v1/me", headers=personal.headers).status_code == 401


def test_narrow_to_what_it_used_on_the_detail_page(app, make, narrowing, client):
    _, owner, _ = narrowing
    token = make.token(owner, name="reporting", scopes=["documents", "templates"], permissions=["read", "write"])
    browser = _login(app, owner)
    assert "Narrow to what it used" not in html(browser.get(f"{TOKENS}/{token.id}"))  # nothing used yet
    client.get("/api/v1/documents", headers=token.headers)
    make.flush_usage()
    page = html(browser.get(f"{TOKENS}/{token.id}"))
    assert "Narrow to what it used" in page and f'id="narrow-{token.id}"' in page
    dialog = page[page.index(f'id="narrow-{token.id}"'):page.index("</dialog>", page.index(f'id="narrow-{token.id}"'))]
    assert "Removed" in dialog and "templates" in dialog and "write" in dialog
    confirmation = html(browser.get(f"{TOKENS}/{token.id}/narrow"))  # without JavaScript
    assert "Narrow “reporting” to what it used?" in confirmation and "Narrow token" in confirmation

    done = browser.post(f"{TOKENS}/{token.id}/narrow", data={"csrf_token": csrf_from(page)})
    assert done.status_code == 302 and done.headers["Location"].endswith(f"{TOKENS}/{token.id}")
    after = html(browser.get(f"{TOKENS}/{token.id}"))
    assert "Narrowed “reporting”: removed documents write, templates read, templates write." in after
    assert "Narrow to what it used" not in after
    assert make.get_token(token.id).rights == {"documents": ["read"]}
    assert client.get("/api/v1/documents", headers=token.headers).status_code == 200


def test_a_partner_user_narrows_their_own_token_in_the_hub(app, make, client):
    org = make.org("business")
    partner_user = make.member(org, "partner_admin", partner_id=make.partner(org))
    token = make.token(partner_user, scopes=["documents", "projects"], permissions=["read", "write"])
    client.get("/api/v1/documents", headers=token.headers)
    make.flush_usage()
    browser = _login(app, partner_user)
    page = html(browser.get(f"/hub/api-tokens/{token.id}"))
    assert "Narrow to what it used" in page and "Revoke selected" not in html(browser.get("/hub/api-tokens"))
    assert browser.post(f"/hub/api-tokens/{token.id}/narrow", data={"csrf_token": csrf_from(page)}).status_code == 302
    assert make.get_token(token.id).rights == {"documents": ["read"]}
