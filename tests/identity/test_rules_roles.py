"""The role matrix (shared/identity/roles.py) pinned cell by cell, and every check built on it.

These are the rules every access decision starts from, so each function is held on every branch
(100 % branch coverage, and no surviving mutant under `make mutate`).
"""

from __future__ import annotations

import pytest

from shared.audit.record import Actor
from shared.core.errors import PermissionDenied
from shared.identity import roles
from shared.identity.roles import Capability as C
from shared.identity.roles import Role

ALL_CAPABILITIES = set(C)
MANAGERS = {C.MANAGE_OWN_TOKENS, C.SEE_ALL_TOKENS, C.DEACTIVATE_ANY_TOKEN, C.REVOKE_ANY_TOKEN,
            C.READ_AUDIT_LOG, C.CREATE_CANARY_TOKENS}

# role: (capabilities, permissions, scopes, token types)
MATRIX = {
    "owner": (ALL_CAPABILITIES, {"read", "write", "delete"},
              {"documents", "projects", "templates", "analytics", "billing", "tokens"},
              ("personal", "organization", "project")),
    "admin": (ALL_CAPABILITIES - {C.MANAGE_PLAN_AND_POLICY}, {"read", "write", "delete"},
              {"documents", "projects", "templates", "analytics", "billing", "tokens"},
              ("personal", "organization", "project")),
    "security_manager": (MANAGERS, {"read", "write", "delete"},
                         {"documents", "projects", "templates", "analytics", "tokens"}, ("personal",)),
    "maintainer": ({C.MANAGE_OWN_TOKENS}, {"read", "write", "delete"},
                   {"documents", "projects", "templates", "analytics", "tokens"}, ("personal",)),
    "editor": ({C.MANAGE_OWN_TOKENS}, {"read", "write"},
               {"documents", "projects", "templates", "analytics", "tokens"}, ("personal",)),
    "viewer": (set(), {"read"}, {"documents", "projects", "templates", "analytics"}, ()),
    "partner_admin": ({C.MANAGE_OWN_TOKENS}, {"read", "write"},
                      {"documents", "projects", "templates", "analytics", "tokens"}, ("personal",)),
    "partner_member": ({C.MANAGE_OWN_TOKENS}, {"read"},
                       {"documents", "projects", "templates", "analytics", "tokens"}, ("personal",)),
}
NOT_ROLES = [None, "", "root", "Owner", "owner ", "partner"]


@pytest.mark.parametrize("role", MATRIX)
def test_each_role_has_exactly_its_row_of_the_matrix(role):
    capabilities, permissions, scopes, token_types = MATRIX[role]
    assert {c for c in C if roles.can(role, c)} == capabilities
    assert {c for c in C if roles.can(Role(role), c)} == capabilities  # the enum reads the same
    assert {p.value for p in roles.role_permissions(role)} == permissions
    assert {s.value for s in roles.role_scopes(role)} == scopes
    assert {s.value for s in roles._scopes_for(Role(role))} == scopes  # the rule itself, not only its table
    assert roles.allowed_token_types(role) == token_types
    assert roles.is_valid_role(role) and roles.as_role(role) == Role(role)
    assert roles.is_partner_role(role) is role.startswith("partner_")


@pytest.mark.parametrize("value", NOT_ROLES)
def test_anything_else_is_no_role_and_may_nothing(value):
    assert roles.as_role(value) is None
    assert not any(roles.can(value, c) for c in C)
    assert roles.role_permissions(value) == frozenset() and roles.role_scopes(value) == frozenset()
    assert roles.allowed_token_types(value) == ()
    assert roles.is_partner_role(value) is False
    if value is not None:
        assert roles.is_valid_role(value) is False


def test_the_role_lists_split_staff_and_partners():
    assert [r.value for r in roles.STAFF_ROLES] == ["owner", "admin", "security_manager", "maintainer", "editor",
                                                    "viewer"]
    assert [r.value for r in roles.PARTNER_ROLES] == ["partner_admin", "partner_member"]
    assert roles.ALL_ROLES == roles.STAFF_ROLES + roles.PARTNER_ROLES
    assert set(roles.KNOWN_PERMISSIONS) == {"read", "write", "delete"}
    assert set(roles.KNOWN_SCOPES) == {"documents", "projects", "templates", "analytics", "billing", "tokens"}


def test_methods_need_their_permission():
    assert {m: p.value for m, p in roles.METHOD_PERMISSION.items()} == {
        "GET": "read", "HEAD": "read", "POST": "write", "PUT": "write", "PATCH": "write", "DELETE": "delete"}


class _Membership:
    def __init__(self, role):
        self.role = role
        self.organization_id = 1


def test_require_passes_a_capable_actor_and_refuses_others_with_the_message():
    roles.require(Actor(membership=_Membership("admin")), C.MANAGE_MEMBERS, "no")  # no exception
    with pytest.raises(PermissionDenied) as refused:
        roles.require(Actor(membership=_Membership("editor")), C.MANAGE_MEMBERS, "Your role cannot manage members")
    assert refused.value.message == "Your role cannot manage members"
    assert refused.value.code == "insufficient_permission" and refused.value.status == 403
