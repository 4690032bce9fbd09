"""The command line : scripts rely on its output."""

from __future__ import annotations

import re

import pytest

from tests.conftest import bearer


def invoke(runner, *args, env=None):
    result = runner.invoke(args=list(args), env=env or {"KEYWARD_PASSWORD": "a good long password"})
    assert result.exit_code == 0, result.output
    return result.output.strip()


def test_full_provisioning_flow_ends_with_a_working_token(runner, client):
    slug = invoke(runner, "orgs", "create", "Initech Ltd", "--plan", "business")
    assert slug == "initech-ltd"
    assert invoke(runner, "orgs", "create", "Initech Ltd") == "initech-ltd-2"
    invoke(runner, "partners", "create", "Globex", "--org", slug)
    assert invoke(runner, "projects", "create", "Website", "--org", slug).isdigit()
    invoke(runner, "users", "create", "Peter@Initech.test", "--org", slug, "--role", "owner")
    invoke(runner, "users", "create", "pat@globex.test", "--org", slug, "--role", "partner_member",
           "--partner", "Globex")
    secret = invoke(runner, "tokens", "create", "--org", slug, "--user", "peter@initech.test", "--name", "ci",
                    "--scopes", "documents,projects", "--permissions", "read,write", "--type", "project",
                    "--project", "Website", "--expires-in-days", "30")
    assert re.fullmatch(r"kw_[0-9a-f]{64}", secret)  # only the secret on stdout
    me = client.get("/api/v1/me", headers=bearer(secret)).get_json()
    assert me["token"]["type"] == "project" and me["user"]["role"] == "owner"
    assert me["user"]["email"] == "peter@initech.test"


def test_existing_user_gets_membership_in_another_org(runner, make):
    first, second = make.org(), make.org()
    invoke(runner, "users", "create", "multi@example.test", "--org", first.slug, "--role", "editor")
    invoke(runner, "users", "create", "multi@example.test", "--org", second.slug, "--role", "viewer", env={})

    def roles():
        from sqlalchemy import select

        from shared.core.extensions import db
        from shared.models import Membership, User

        user = db.session.scalars(select(User).where(User.email == "multi@example.test")).one()
        return sorted(m.role for m in db.session.scalars(select(Membership).where(Membership.user_id == user.id)))

    assert make.run(roles) == ["editor", "viewer"]


def test_set_role_and_remove(runner, make, client):
    org = make.org()
    member = make.member(org, "editor")
    issued = make.token(member)
    invoke(runner, "users", "set-role", member.email, "--org", org.slug, "--role", "maintainer")
    assert client.get("/api/v1/me", headers=issued.headers).get_json()["user"]["role"] == "maintainer"
    invoke(runner, "users", "remove", member.email, "--org", org.slug)
    assert client.get("/api/v1/me", headers=issued.headers).status_code == 401
    assert [e.details["to"] for e in make.audit("member.role_changed")] == ["maintainer"]
    assert len(make.audit("member.removed")) == 1


def test_errors_are_clear_and_exit_nonzero(runner, make):
    org = make.org()
    cases = [
        ["orgs", "create", "X", "--plan", "platinum"],
        ["users", "create", "a@b.test", "--org", "missing", "--role", "editor"],
        ["users", "create", "a@b.test", "--org", org.slug, "--role", "wizard"],
        ["users", "create", "not-an-email", "--org", org.slug, "--role", "editor"],
        ["users", "create", "p@b.test", "--org", org.slug, "--role", "partner_admin"],
        ["users", "set-role", "ghost@b.test", "--org", org.slug, "--role", "editor"],
        ["tokens", "create", "--org", org.slug, "--user", "ghost@b.test", "--name", "x", "--scopes", "documents",
         "--permissions", "read"],
    ]
    for args in cases:
        result = runner.invoke(args=args, env={"KEYWARD_PASSWORD": "a good long password"})
        assert result.exit_code != 0, args
        assert "Traceback" not in result.output


def test_tokens_create_reports_field_errors(runner, make):
    org = make.org()
    member = make.member(org, "editor")
    result = runner.invoke(args=["tokens", "create", "--org", org.slug, "--user", member.email, "--name", "",
                                 "--scopes", "documents", "--permissions", "read"])
    assert result.exit_code != 0 and "Name is required" in result.output
    both = runner.invoke(args=["tokens", "create", "--org", org.slug, "--user", member.email, "--name", "x",
                               "--scopes", "documents", "--permissions", "read", "--no-expiry",
                               "--expires-in-days", "3"])
    assert both.exit_code != 0


def test_no_expiry_flag(runner, make, client):
    org = make.org()
    member = make.member(org, "editor")
    secret = invoke(runner, "tokens", "create", "--org", org.slug, "--user", member.email, "--name", "forever",
                    "--scopes", "documents", "--permissions", "read", "--no-expiry")
    assert client.get("/api/v1/me", headers=bearer(secret)).get_json()["token"]["expires_at"] is None


def test_demo_loads_once_and_prints_logins(runner, client):
    first = invoke(runner, "demo")
    assert "owner@acme.test" in first and "keyward-demo" in first
    second = invoke(runner, "demo")
    assert "already loaded" in second and "owner@acme.test" in second
    from tests.conftest import login

    assert login(client, "owner@acme.test", "keyward-demo").status_code == 302


def test_tokens_create_with_rights_per_scope(runner, make, client):
    org = make.org()
    member = make.member(org, "editor")
    secret = invoke(runner, "tokens", "create", "--org", org.slug, "--user", member.email, "--name", "sync",
                    "--rights", "documents:read,write; projects:read")
    token = client.get("/api/v1/me", headers=bearer(secret)).get_json()["token"]
    assert token["rights"] == {"documents": ["read", "write"], "projects": ["read"]}
    assert client.post("/api/v1/documents", json={"title": "x"}, headers=bearer(secret)).status_code == 201


@pytest.mark.parametrize("rights_args", [
    ["--rights", "documents:read", "--scopes", "documents", "--permissions", "read"],  # both shapes
    ["--rights", "documents:read", "--permissions", "read"],
    ["--scopes", "documents"],  # half of the older shape
    [],  # neither
])
def test_tokens_create_wants_one_shape_of_rights(runner, make, rights_args):
    org = make.org()
    member = make.member(org, "editor")
    result = runner.invoke(args=["tokens", "create", "--org", org.slug, "--user", member.email, "--name", "x",
                                 *rights_args])
    assert result.exit_code == 2 and "Traceback" not in result.output  # a usage error
    assert "--rights" in result.output and not make.audit("token.created")


@pytest.mark.parametrize("rights, message", [
    ("documents", "scope:permission"),
    ("documents:", "Choose at least one permission on documents"),
    ("documents:read,delete", "does not include the delete permission"),
])
def test_tokens_create_reports_bad_rights(runner, make, rights, message):
    org = make.org()
    member = make.member(org, "editor")
    result = runner.invoke(args=["tokens", "create", "--org", org.slug, "--user", member.email, "--name", "x",
                                 "--rights", rights])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    assert not make.audit("token.created")
