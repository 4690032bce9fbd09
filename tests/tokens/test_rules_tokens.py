"""What a token may do (shared/tokens/rights.py) and what a token is (shared/tokens/format.py), held
on every branch: the decision for each scope and method, why it refuses, the error it raises, and
the format check, hash and mask that the hot path and secret scanners rely on."""

from __future__ import annotations

import hashlib
import hmac
import re
import zlib
from types import SimpleNamespace

import pytest

from shared.core.errors import InsufficientScope, PermissionDenied, PlanRequired
from shared.tokens import format as token_format
from shared.tokens import rights

ALL_SCOPES = ["documents", "projects", "templates", "analytics", "billing", "tokens"]
ALL_PERMISSIONS = ["read", "write", "delete"]


def token(role="owner", plan="business", scopes=ALL_SCOPES, permissions=ALL_PERMISSIONS):
    """What decide reads of a token: its labels, its creator's role and its organization's plan."""
    return SimpleNamespace(creator_role=role, plan=plan, is_canary=False,
                           rights={scope: list(permissions) for scope in scopes})


# --------------------------------------------------------------------------- decide


def test_an_owners_full_token_may_everything():
    for scope in ALL_SCOPES:
        for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
            assert rights.decide(token(), scope, method) == rights.Decision(True)


def test_no_plan_refuses_before_anything_else():
    decision = rights.decide(token(plan="none", scopes=[]), "documents", "GET")
    assert decision == rights.Decision(False, "plan_required", "The organization has no plan")


def test_a_scope_the_token_lacks_is_insufficient_scope():
    decision = rights.decide(token(scopes=["documents"]), "projects", "GET")
    assert decision == rights.Decision(False, "insufficient_scope", "The token does not have the projects scope")


def test_a_scope_the_creators_role_lacks_is_insufficient_scope():
    decision = rights.decide(token(role="editor"), "billing", "GET")
    assert decision == rights.Decision(False, "insufficient_scope",
                                       "The creator's role (editor) does not allow the billing scope")


def test_a_permission_the_token_lacks_is_insufficient_permission():
    decision = rights.decide(token(permissions=["read"]), "documents", "POST")
    assert decision == rights.Decision(False, "insufficient_permission",
                                       "The token does not have the write permission on documents")


def test_a_permission_the_creators_role_lacks_is_insufficient_permission():
    decision = rights.decide(token(role="editor"), "documents", "DELETE")
    assert decision == rights.Decision(False, "insufficient_permission",
                                       "The creator's role (editor) does not allow the delete permission")


def test_a_role_that_is_no_longer_known_grants_nothing():
    decision = rights.decide(token(role="retired"), "documents", "GET")
    assert (decision.allowed, decision.code) == (False, "insufficient_scope")


@pytest.mark.parametrize(("method", "permission"), [("get", "read"), ("head", "read"), ("patch", "write"),
                                                    ("delete", "delete"), ("OPTIONS", "write"), ("BREW", "write")])
def test_methods_map_to_permissions_case_blind_and_unknown_ones_need_write(method, permission):
    only = token(permissions=[permission])
    assert rights.decide(only, "documents", method).allowed
    others = [p for p in ALL_PERMISSIONS if p != permission]
    assert not rights.decide(token(permissions=others), "documents", method).allowed


# --------------------------------------------------------------------------- the rights table


def test_the_rights_table_is_decide_for_every_scope_and_method():
    narrow = token(role="editor", scopes=["documents", "billing"], permissions=["read", "delete"])
    table = rights.rights_table(narrow)
    assert [(row["scope"], row["method"]) for row in table] == [
        (scope, method) for scope in ALL_SCOPES for method in ("GET", "POST", "PATCH", "DELETE")]
    for row in table:
        decision = rights.decide(narrow, row["scope"], row["method"])
        assert row["allowed"] is decision.allowed
        assert row["reason"] == (None if decision.allowed else decision.reason)
    assert [(r["scope"], r["method"]) for r in table if r["allowed"]] == [("documents", "GET")]


def test_an_allowed_row_carries_no_reason_whatever_decide_notes(monkeypatch):
    monkeypatch.setattr(rights, "decide", lambda token, scope, method: rights.Decision(True, None, "noted"))
    assert {row["reason"] for row in rights.rights_table(token())} == {None}


# --------------------------------------------------------------------------- require


def test_require_is_silent_when_allowed():
    assert rights.require(rights.Decision(True), "documents", "DELETE") is None


@pytest.mark.parametrize(("code", "error"), [("plan_required", PlanRequired), ("insufficient_scope", InsufficientScope),
                                            ("insufficient_permission", PermissionDenied)])
def test_require_raises_the_error_of_the_refusal_naming_what_was_required(code, error):
    with pytest.raises(error) as raised:
        rights.require(rights.Decision(False, code, "the reason"), "projects", "PATCH")
    assert type(raised.value) is error
    assert raised.value.message == "the reason"
    assert raised.value.extra == {"required": {"scope": "projects", "permission": "write"}}


# --------------------------------------------------------------------------- effective rights, labels


def test_effective_rights_are_the_token_within_the_role():
    narrowed = token(role="editor", scopes=["documents", "billing", "reports"], permissions=["read", "delete", "x"])
    assert rights.effective_pairs(narrowed) == {("documents", "read")}
    assert rights.effective_pairs(token(role="gone")) == frozenset()


# --------------------------------------------------------------------------- the token format


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


def checksum(body: str) -> str:
    return f"{zlib.crc32(body.encode()) & 0xFFFFFFFF:08x}"


def test_the_format_constants():
    assert (token_format.SECRET_HEX, token_format.CHECKSUM_HEX) == (56, 8)


@pytest.mark.parametrize("value", [
    "kw_" + "0" * 56 + checksum("0" * 56),
    "kw_" + "f" * 56 + checksum("f" * 56),
    "kw_" + "0123456789abcdef" * 3 + "01234567" + checksum("0123456789abcdef" * 3 + "01234567"),
])
def test_canonical_values_with_their_checksum_are_well_formed(ctx, value):
    assert token_format.is_well_formed(value)


@pytest.mark.parametrize("value", [
    "", "kw_", "kw", "KW_" + "0" * 56 + checksum("0" * 56),
    "kw_" + "0" * 55 + checksum("0" * 55),  # one short
    "kw_" + "0" * 57 + checksum("0" * 57),  # one long
    "kw_" + "0" * 56 + checksum("0" * 56).upper(),
    "kw_" + "g" * 56 + checksum("g" * 56),
    "kw_" + "0" * 56 + "00000000",
    " kw_" + "0" * 56 + checksum("0" * 56),
    "kw_" + "0" * 56 + checksum("0" * 56) + "\n",
])
def test_anything_else_is_malformed(ctx, value):
    assert not token_format.is_well_formed(value)


def test_a_generated_secret_is_prefix_body_and_checksum(ctx):
    secret = token_format.generate_secret()
    assert re.fullmatch(r"kw_[0-9a-f]{64}", secret)
    assert secret[59:] == checksum(secret[3:59]) and token_format.is_well_formed(secret)


def test_the_hash_is_hmac_sha256_of_the_value_with_the_pepper(ctx):
    secret = token_format.generate_secret()
    pepper = ctx.config["KEYWARD_TOKEN_PEPPER"].encode()
    assert token_format.hash_secret(secret) == hmac.new(pepper, secret.encode(), hashlib.sha256).hexdigest()


def test_the_mask_is_the_prefix_dots_and_the_stored_suffix(app_with):
    app = app_with(KEYWARD_TOKEN_PREFIX="acme_")
    with app.app_context():
        assert token_format.mask(SimpleNamespace(display_suffix="9f3a")) == "acme_••••9f3a"


def test_public_ids_are_tok_and_16_hex(ctx):
    ids = {token_format.new_public_id() for _ in range(50)}
    assert len(ids) == 50 and all(token_format.PUBLIC_ID.fullmatch(i) for i in ids)
    assert not token_format.PUBLIC_ID.fullmatch("tok_" + "0" * 15)
