"""The token payload parser (shared/tokens/payload.py) on its own: the API's schema layer refuses most
bad JSON before it, but the parser is the rule for every caller (forms, the CLI, services), so
each of its refusals is held here with the field and message it gives."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.core.errors import InvalidRequest
from shared.core.validation import FieldErrors
from shared.tokens import payload as token_payload

BASE = {"name": "n", "scopes": ["documents"], "permissions": ["read"]}


@pytest.fixture
def ctx(app, clock):
    with app.app_context():
        yield


def refusal(body: dict, creating: bool = True) -> dict[str, str]:
    with pytest.raises(InvalidRequest) as refused:
        token_payload.parse_token_payload(body, creating=creating)
    return refused.value.fields


@pytest.mark.parametrize(("body", "field", "message"), [
    ({**BASE, "name": None}, "name", "Name is required"),
    ({**BASE, "name": "  "}, "name", "Name is required"),
    ({**BASE, "name": "x" * 101}, "name", "Name must be at most 100 characters"),
    ({**BASE, "name": "a\x07b"}, "name", "Name cannot contain control characters"),
    ({**BASE, "description": 5}, "description", "Description must be text"),
    ({**BASE, "description": "d" * 501}, "description", "Description must be at most 500 characters"),
    ({**BASE, "description": "a\x00b"}, "description", "Description cannot contain control characters"),
    ({**BASE, "type": "galaxy"}, "type", "Type must be personal, organization or project"),
    ({**BASE, "project_id": "7"}, "project_id", "project_id must be an integer"),
    ({**BASE, "project_id": True}, "project_id", "project_id must be an integer"),
    ({**BASE, "scopes": [1]}, "scopes", "Give a list of scope names"),
    ({**BASE, "permissions": {"read": True}}, "permissions", "Give a list of permission names"),
    ({**BASE, "scopes": [" ", ""]}, "scopes", "Choose at least one scope"),
    ({**BASE, "scopes": [f"s{i}" for i in range(token_payload.MAX_LABELS + 1)]}, "scopes",
     f"At most {token_payload.MAX_LABELS} scopes"),
    ({**BASE, "permissions": ["x" * 51]}, "permissions",
     f"'{'x' * 50}' is not a valid permission name (1–50 characters, no spaces)"),
    ({**BASE, "ip_allowlist": [1]}, "ip_allowlist", "Give a list of IP addresses or CIDR ranges"),
    ({**BASE, "ip_allowlist": ["10.0.0.0/33"]}, "ip_allowlist", "'10.0.0.0/33' is not an IP address or CIDR range"),
    ({**BASE, "ip_allowlist": [f"10.0.0.{i}" for i in range(51)]}, "ip_allowlist", "At most 50 entries"),
    ({**BASE, "expires_in_days": 0}, "expires_in_days", "Give a whole number of days from 1 to 3650"),
    ({**BASE, "expires_in_days": True}, "expires_in_days", "Give a whole number of days from 1 to 3650"),
    ({**BASE, "expires_in_days": 3651}, "expires_in_days", "Give a whole number of days from 1 to 3650"),
    ({**BASE, "expires_in_days": 5, "expires_at": "2030-01-01"}, "expires_at",
     "Give expires_in_days or expires_at, not both"),
    ({**BASE, "expires_at": 20300101}, "expires_at", "Give an ISO 8601 date or time, or null for never"),
    ({**BASE, "expires_at": "soon"}, "expires_at", "Give an ISO 8601 date or time, or null for never"),
    ({**BASE, "expires_at": "2026-11-23T11:59:59Z"}, "expires_at", "The expiry must be in the future"),
    ({**BASE, "is_active": "yes"}, "is_active", "is_active must be true or false"),
    ({**BASE, "canary": "yes"}, "canary", "canary must be true or false"),
    ({**BASE, "canary": True, "type": "personal"}, "type", "A canary is always an organization token, bound to no project"),
    ({**BASE, "colour": "blue"}, "colour", "Unknown field"),
])
def test_each_refusal_names_its_field(ctx, body, field, message):
    assert refusal(body)[field] == message


def test_an_update_cannot_change_type_or_project(ctx):
    assert refusal({"type": "organization"}, creating=False) == {
        "type": "A token's type and project cannot change; create a new token"}
    assert refusal({"project_id": 3}, creating=False) == {
        "project_id": "A token's type and project cannot change; create a new token"}
    assert refusal({"canary": True}, creating=False) == {"canary": "Unknown field"}


def test_a_body_that_is_not_an_object_is_refused(ctx):
    with pytest.raises(InvalidRequest) as refused:
        token_payload.parse_token_payload(["name"], creating=True)
    assert refused.value.fields == {"body": "Expected a JSON object"}


def test_good_input_is_cleaned(ctx, clock):
    data = token_payload.parse_token_payload({
        "name": "  Deploy  ", "description": None, "scopes": "documents, projects documents",
        "permissions": ["read", " read ", "write"], "ip_allowlist": "10.0.0.1/32, 192.0.2.0/24\n10.0.0.1",
        "expires_in_days": 30, "is_active": False}, creating=True)
    assert (data.name, data.description) == ("Deploy", "")
    assert data.scopes == ["documents", "projects"] and data.permissions == ["read", "write"]
    assert data.ip_allowlist == ["10.0.0.1", "192.0.2.0/24"]
    assert data.expires_at == datetime(2026, 12, 23, 12, 0, tzinfo=UTC) and not data.expiry_defaulted
    assert data.is_active is False and data.type == "personal"


def test_expiry_defaults_to_a_year_on_create_and_to_unchanged_on_update(ctx):
    created = token_payload.parse_token_payload(dict(BASE), creating=True)
    assert created.expires_at == datetime(2027, 11, 23, 12, 0, tzinfo=UTC) and created.expiry_defaulted
    updated = token_payload.parse_token_payload({"name": "renamed"}, creating=False)
    assert not updated.given("expires_at") and not updated.given("scopes")
    never = token_payload.parse_token_payload({**BASE, "expires_at": None}, creating=True)
    assert never.expires_at is None and not never.expiry_defaulted


def test_a_canary_becomes_an_organization_token_bound_to_no_project(ctx):
    data = token_payload.parse_token_payload({**BASE, "canary": True}, creating=True)
    assert (data.is_canary, data.type, data.project_id) == (True, "organization", None)
    plain = token_payload.parse_token_payload({**BASE, "canary": False}, creating=True)
    assert plain.is_canary is False and plain.type == "personal"


@pytest.mark.parametrize(("choice", "custom", "expected"), [
    ("30", "", datetime(2026, 12, 23, 12, 0, tzinfo=UTC)),
    (None, "", datetime(2027, 11, 23, 12, 0, tzinfo=UTC)),
    ("never", "", None),
    ("custom", "2027-01-31", datetime(2027, 1, 31, 23, 59, 59, tzinfo=UTC)),
])
def test_the_forms_expiration_choices(ctx, choice, custom, expected):
    errors = FieldErrors()
    assert token_payload.clean_expiry(choice, custom, errors) == expected
    errors.raise_if_any()


@pytest.mark.parametrize(("choice", "custom", "message"), [
    ("custom", "31/01/2027", "Enter a date as YYYY-MM-DD"),
    ("custom", "2026-11-23", "Choose a date after today"),
    ("forever", "", "Choose an expiration"),
    (7, "", "Choose an expiration"),
])
def test_the_forms_expiration_refusals(ctx, choice, custom, message):
    errors = FieldErrors()
    token_payload.clean_expiry(choice, custom, errors)
    with pytest.raises(InvalidRequest) as refused:
        errors.raise_if_any()
    assert refused.value.fields == {"expiration": message}
