"""The rights algebra (shared.tokens.rights), for any role and any rights, with hypothesis:

- effective rights never exceed the creator's role, and a request is allowed exactly for them;
- narrowing never widens, and keeps exactly the pairs used (unknown labels aside);
- the older shape (scopes + permissions) means exactly their cross product;
- no-escalation: a token can never create, shape or take over a token holding a pair it does not hold.

These run without a database: the rules are plain functions of a token's rights and its
creator's role, which is why the API, the pages and the rights table cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from itertools import product

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core.errors import PermissionDenied
from shared.core.validation import FieldErrors
from shared.identity import roles
from shared.tokens import access, rights
from shared.tokens.payload import TokenInput, parse_token_payload

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
SCOPES = st.sampled_from(roles.KNOWN_SCOPES + ("x-team", "reports:export"))
PERMISSIONS = st.sampled_from(roles.KNOWN_PERMISSIONS + ("admin", "custom:label"))
ROLES = st.sampled_from([role.value for role in roles.ALL_ROLES])
PLANS = st.sampled_from(["none", "free", "business", "enterprise"])
RIGHTS = st.dictionaries(SCOPES, st.lists(PERMISSIONS, min_size=1, max_size=5, unique=True),
                         min_size=1, max_size=8).map(rights.normalized)
PAIRS = st.frozensets(st.tuples(SCOPES, PERMISSIONS), max_size=20)
EXAMPLES = settings(max_examples=300, deadline=None)


@dataclass
class Token:
    """What the rules read of a token: the same attribute names as ApiToken and the hot path's row."""

    rights: dict[str, list[str]]
    creator_role: str
    plan: str = "business"
    is_canary: bool = False
    type: str = "personal"
    project_id: int | None = None
    expires_at: datetime | None = None
    ip_allowlist: list[str] = field(default_factory=list)
    id: int = 1


@dataclass
class Caller:
    """An actor acting through a token (access.check_target_within_caller reads `token`)."""

    token: Token


def allowed_pairs(token: Token) -> set[tuple[str, str]]:
    """Every (scope, permission) some request with this token is allowed, asked of `decide`."""
    return {(scope, rights.method_permission(method)) for scope in roles.KNOWN_SCOPES for method in METHODS
            if rights.decide(token, scope, method).allowed}


# --------------------------------------------------------------------------- the role caps everything


@EXAMPLES
@given(held=RIGHTS, role=ROLES, plan=PLANS)
def test_effective_rights_never_exceed_the_role(held, role, plan):
    token = Token(held, role, plan)
    assert allowed_pairs(token) <= rights.role_pairs(role)
    assert rights.effective_pairs(token) <= rights.role_pairs(role)


@EXAMPLES
@given(held=RIGHTS, role=ROLES, plan=PLANS)
def test_a_request_is_allowed_exactly_for_the_effective_pairs(held, role, plan):
    """decide (the API's check, step by step) and effective_pairs (what the other rules compare)
    are one rule: role ∩ the token's rights on that scope, nothing without a plan."""
    token = Token(held, role, plan)
    assert allowed_pairs(token) == set(rights.effective_pairs(token))
    expected = set() if plan == "none" else {
        (scope, permission) for scope, permissions in held.items() for permission in permissions
        if scope in roles.role_scopes(role) and permission in roles.role_permissions(role)}
    assert allowed_pairs(token) == expected


@EXAMPLES
@given(held=RIGHTS, role=ROLES, scope=SCOPES, method=st.sampled_from(METHODS))
def test_a_refusal_names_its_reason_and_the_required_pair(held, role, scope, method):
    decision = rights.decide(Token(held, role), scope, method)
    if decision.allowed:
        assert decision.code is None and decision.reason is None
    else:
        assert decision.code in ("insufficient_scope", "insufficient_permission") and decision.reason
        # The scope is refused only when the token or the role lacks it altogether.
        assert (decision.code == "insufficient_scope") == (
            scope not in held or scope not in roles.role_scopes(role))


@EXAMPLES
@given(held=RIGHTS, role=ROLES)
def test_a_canary_grants_nothing(held, role):
    assert rights.effective_pairs(Token(held, role, is_canary=True)) == frozenset()


# --------------------------------------------------------------------------- narrowing


@EXAMPLES
@given(held=RIGHTS, used=PAIRS)
def test_narrowing_never_widens(held, used):
    kept = rights.narrowed(held, used)
    assert rights.pairs(kept) <= rights.pairs(held)
    assert all(permissions for permissions in kept.values())  # no scope left without a permission
    assert kept == rights.normalized(kept)


@EXAMPLES
@given(held=RIGHTS, used=PAIRS)
def test_narrowing_keeps_exactly_the_known_pairs_used_and_every_unknown_label(held, used):
    kept = rights.narrowed(held, used)
    assert rights.known_pairs(kept) == rights.known_pairs(held) & used
    assert rights.pairs(kept) - rights.known_pairs(kept) == rights.pairs(held) - rights.known_pairs(held)
    assert rights.narrowed(kept, used) == kept  # once is enough


@EXAMPLES
@given(held=RIGHTS, role=ROLES, used=PAIRS)
def test_a_narrowed_token_may_do_no_more_than_before(held, role, used):
    assert allowed_pairs(Token(rights.narrowed(held, used), role)) <= allowed_pairs(Token(held, role))


# --------------------------------------------------------------------------- the older shape


LABEL_LISTS = {"min_size": 1, "max_size": 6, "unique": True}


@EXAMPLES
@given(scopes=st.lists(SCOPES, **LABEL_LISTS), permissions=st.lists(PERMISSIONS, **LABEL_LISTS))
def test_the_older_shape_is_the_cross_product(scopes, permissions):
    data = parse_token_payload({"name": "x", "scopes": scopes, "permissions": permissions}, creating=True)
    assert rights.pairs(data.rights) == set(product(scopes, permissions))
    # ... and the token object says it back in the older shape too.
    assert set(rights.scopes_of(data.rights)) == set(scopes)
    assert set(rights.permissions_of(data.rights)) == set(permissions)


@EXAMPLES
@given(scopes=st.lists(SCOPES, **LABEL_LISTS), permissions=st.lists(PERMISSIONS, **LABEL_LISTS), role=ROLES)
def test_the_older_shape_allows_what_it_always_allowed(scopes, permissions, role):
    """A token of the older shape is allowed what it was before rights per scope: a scope it lists
    with a permission it lists, both within the role."""
    token = Token(rights.cross_product(scopes, permissions), role)
    before = {(scope, permission) for scope in scopes for permission in permissions
              if scope in roles.role_scopes(role) and permission in roles.role_permissions(role)}
    assert allowed_pairs(token) == before


@EXAMPLES
@given(held=RIGHTS, scopes=st.none() | st.lists(SCOPES, **LABEL_LISTS),
       permissions=st.none() | st.lists(PERMISSIONS, **LABEL_LISTS))
def test_an_edit_with_one_list_combines_it_with_the_token_s_other_list(held, scopes, permissions):
    body = {key: value for key, value in (("scopes", scopes), ("permissions", permissions))
            if value is not None}
    data = parse_token_payload(body, creating=False)
    data.resolve_rights(held)
    if not body:
        assert not data.given("rights")  # nothing said about rights: they stay
        return
    expected_scopes = scopes if scopes is not None else rights.scopes_of(held)
    expected_permissions = permissions if permissions is not None else rights.permissions_of(held)
    assert rights.pairs(data.rights) == set(product(expected_scopes, expected_permissions))


def test_both_shapes_at_once_are_refused():
    from shared.core.errors import InvalidRequest

    with pytest.raises(InvalidRequest) as refused:
        parse_token_payload({"name": "x", "rights": {"documents": ["read"]}, "scopes": ["documents"],
                             "permissions": ["read"]}, creating=True)
    assert refused.value.fields == {"rights": "Give rights, or scopes and permissions, not both"}


# --------------------------------------------------------------------------- no escalation


@EXAMPLES
@given(caller_rights=RIGHTS, caller_role=ROLES, asked=RIGHTS)
def test_a_token_grants_only_pairs_it_effectively_holds(caller_rights, caller_role, asked):
    """Creating or editing through a token: refused exactly when a known pair asked for is beyond
    the caller's effective pairs; whatever passes can do nothing the caller cannot."""
    caller = Token(caller_rights, caller_role)
    errors = FieldErrors()
    access.check_no_escalation(caller, TokenInput(rights=asked), errors, kind="personal", project_id=None,
                               expiry_field="expires_at")
    beyond = rights.known_pairs(asked) - rights.effective_pairs(caller)
    assert bool(errors.errors) == bool(beyond)
    if not errors.errors:
        # The new token acts as the same creator: it may do nothing its creating token may not.
        assert allowed_pairs(Token(asked, caller_role)) <= allowed_pairs(caller)
    else:
        assert set(errors.errors) == {"rights"}


@EXAMPLES
@given(caller_rights=RIGHTS, caller_role=ROLES, target_rights=RIGHTS, target_role=ROLES)
def test_a_token_never_takes_over_a_wider_token(caller_rights, caller_role, target_rights, target_role):
    """Regenerating hands over the target's secret: allowed only when the target holds no pair
    the caller does not hold, whoever created either."""
    caller, target = Token(caller_rights, caller_role), Token(target_rights, target_role, id=2)
    try:
        access.check_target_within_caller(Caller(caller), target)
        taken_over = True
    except PermissionDenied:
        taken_over = False
    assert taken_over == (rights.known_pairs(target_rights) <= rights.effective_pairs(caller))
    if taken_over:
        assert allowed_pairs(target) <= allowed_pairs(caller)


@EXAMPLES
@given(role=ROLES, asked=RIGHTS)
def test_a_role_can_grant_a_pair_exactly_when_it_holds_it(role, asked):
    errors = FieldErrors()
    access.check_role_grants(role, TokenInput(rights=asked), errors)
    assert bool(errors.errors) == bool(rights.known_pairs(asked) - rights.role_pairs(role))


@EXAMPLES
@given(allowed=st.none() | st.lists(SCOPES, max_size=4, unique=True), asked=RIGHTS)
def test_the_policy_allows_a_pair_by_its_scope(allowed, asked):
    from shared.models import Organization

    org = Organization(policy_allowed_scopes=allowed, policy_allow_no_expiry=True,
                       policy_require_allowlist=False)
    errors = FieldErrors()
    access.check_policy(org, TokenInput(rights=asked), errors, expiry_field="expires_at")
    assert bool(errors.errors) == (allowed is not None and not set(asked) <= set(allowed))
