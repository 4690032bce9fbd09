"""The operator's bootstrap of people on the command line (`users create`, `users set-role`): what it
refuses, in one line, leaving nothing half-made."""

from __future__ import annotations

PASSWORD = {"KEYWARD_PASSWORD": "a good long password"}


def users(runner, *args, env=None):
    return runner.invoke(args=["users", *args], env=env if env is not None else PASSWORD)


def roles_of(make, email: str) -> list[tuple[int, str]]:
    from shared.models import Membership, User

    return [(m.organization_id, m.role) for user in make.rows(User, email=email)
            for m in make.rows(Membership, user_id=user.id) if m.removed_at is None]


def test_a_new_users_password_needs_8_characters(runner, make):
    from shared.models import User

    org = make.org()
    refused = users(runner, "create", "short@example.test", "--org", org.slug, "--role", "editor",
                    env={"KEYWARD_PASSWORD": "1234567"})
    assert refused.exit_code == 1
    assert "Password must be at least 8 characters" in refused.output
    assert not make.rows(User, email="short@example.test")
    assert not make.audit("member.added")
    made = users(runner, "create", "short@example.test", "--org", org.slug, "--role", "editor",
                 env={"KEYWARD_PASSWORD": "12345678"})
    assert made.exit_code == 0, made.output


def test_a_member_is_not_added_to_the_same_organization_twice(runner, make):
    org = make.org(name="Acme")
    member = make.member(org, "editor")
    refused = users(runner, "create", member.email, "--org", org.slug, "--role", "admin")
    assert refused.exit_code == 1
    assert f"{member.email} is already a member of Acme" in refused.output
    assert roles_of(make, member.email) == [(org.id, "editor")]
    assert len(make.audit("member.added")) == 1  # the factory's own


def test_set_role_refuses_an_unknown_role(runner, make):
    org = make.org()
    member = make.member(org, "editor")
    refused = users(runner, "set-role", member.email, "--org", org.slug, "--role", "wizard")
    assert refused.exit_code == 1 and "Unknown role 'wizard'" in refused.output
    assert roles_of(make, member.email) == [(org.id, "editor")]
    assert not make.audit("member.role_changed")


def test_set_role_never_turns_staff_into_a_partner_user_or_back(runner, make):
    org = make.org()
    staff = make.member(org, "editor")
    partner_user = make.member(org, "partner_member", partner_id=make.partner(org, "Globex"))
    for member, role in ((staff, "partner_admin"), (partner_user, "admin")):
        refused = users(runner, "set-role", member.email, "--org", org.slug, "--role", role)
        assert refused.exit_code == 1
        assert "Staff and partner roles cannot be swapped" in refused.output
    assert roles_of(make, staff.email) == [(org.id, "editor")]
    assert roles_of(make, partner_user.email) == [(org.id, "partner_member")]
    assert not make.audit("member.role_changed")
    moved = users(runner, "set-role", partner_user.email, "--org", org.slug, "--role", "partner_admin")
    assert moved.exit_code == 0, moved.output
