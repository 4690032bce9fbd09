"""A token's fields as a form or JSON body sends them, cleaned into a TokenInput or field errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.core import clock
from shared.core.dates import end_of_day, parse_moment
from shared.core.errors import (
    InvalidRequest,
)
from shared.core.netaddr import parse_network
from shared.core.validation import FieldErrors, has_control_characters
from shared.models import TOKEN_TYPES, TokenType
from shared.tokens import rights as token_rights

if TYPE_CHECKING:
    pass


MAX_ALLOWLIST_ENTRIES = 50


MAX_LABELS = 20


EXPIRATION_CHOICES = {"30": 30, "90": 90, "365": 365}  # "1 month", "3 months", "1 year"


DEFAULT_EXPIRATION_DAYS = 365


_UNSET: Any = object()


@dataclass
class TokenInput:
    """Validated, normalized fields of a create or edit. `_UNSET` marks a field left alone."""

    name: str = _UNSET
    description: str = _UNSET
    type: str = _UNSET
    project_id: int | None = _UNSET
    rights: dict[str, list[str]] = _UNSET  # per scope, normalized (shared.tokens.rights)
    # The older shape as sent (cleaned): `scopes` + `permissions` mean their cross product. An edit
    # may send one of them; resolve_rights then takes the other from the token as it is.
    permissions: list[str] = _UNSET
    scopes: list[str] = _UNSET
    legacy: bool = False  # rights came as scopes + permissions: errors name those fields
    expires_at: datetime | None = _UNSET
    ip_allowlist: list[str] = _UNSET
    is_active: bool = _UNSET
    expiry_defaulted: bool = False  # no expiry was asked for; the 1-year default applied
    is_canary: bool = False  # creation only: alerts when used, grants nothing
    trusted_publisher_id: int | None = None  # creation only, by an OIDC exchange; never from input

    def given(self, name: str) -> bool:
        return getattr(self, name) is not _UNSET

    def resolve_rights(self, current: dict[str, list[str]] | None = None) -> None:
        """Turn the older shape into rights: the cross product of the lists given, a list not
        given being the token's current one (`current`: the token's rights, None when creating)."""
        if self.given("rights") or not (self.given("scopes") or self.given("permissions")):
            return
        scopes = self.scopes if self.given("scopes") else token_rights.scopes_of(current or {})
        permissions = (self.permissions if self.given("permissions")
                       else token_rights.permissions_of(current or {}))
        if scopes is not None and permissions is not None:
            self.rights = token_rights.cross_product(scopes, permissions)

    def rights_field(self, pair: tuple[str, str], *, about_scope: bool) -> str:
        """The field an error about `pair` belongs to: `rights`, or for the older shape the list
        that holds the offending label."""
        if not self.legacy:
            return "rights"
        return "scopes" if about_scope else "permissions"


def clean_name(value: Any, errors: FieldErrors) -> str | None:
    if not isinstance(value, str):
        errors.add("name", "Name is required")
        return None
    name = value.strip()
    if not name:
        errors.add("name", "Name is required")
    elif len(name) > 100:
        errors.add("name", "Name must be at most 100 characters")
    elif has_control_characters(name):
        errors.add("name", "Name cannot contain control characters")
    else:
        return name
    return None


def clean_description(value: Any, errors: FieldErrors) -> str | None:
    if value is None:
        return ""
    if not isinstance(value, str):
        errors.add("description", "Description must be text")
        return None
    text = value.strip()
    if len(text) > 500:
        errors.add("description", "Description must be at most 500 characters")
    elif has_control_characters(text, allow_newlines=True):
        errors.add("description", "Description cannot contain control characters")
    else:
        return text
    return None


_LABEL = re.compile(r"[^\s\x00-\x1f\x7f]{1,50}")


def clean_labels(value: Any, name: str, errors: FieldErrors) -> list[str] | None:
    """Free-form labels: at least one, printable, no spaces, de-duplicated in order."""
    noun = "permission" if name == "permissions" else "scope"
    if isinstance(value, str):
        value = [part for part in re.split(r"[,\s]+", value) if part]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        errors.add(name, f"Give a list of {noun} names")
        return None
    labels = list(dict.fromkeys(item.strip() for item in value if item.strip()))
    if not labels:
        errors.add(name, f"Choose at least one {noun}")
    elif len(labels) > MAX_LABELS:
        errors.add(name, f"At most {MAX_LABELS} {name}")
    elif bad := next((label for label in labels if not _LABEL.fullmatch(label)), None):
        errors.add(name, f"'{bad[:50]}' is not a valid {noun} name (1–50 characters, no spaces)")
    else:
        return labels
    return None


MAX_RIGHTS_SCOPES = MAX_LABELS
BOTH_SHAPES = "Give rights, or scopes and permissions, not both"
RIGHTS_EXAMPLE = 'an object such as {"documents": ["read", "write"], "projects": ["read"]}'


def clean_rights(value: Any, errors: FieldErrors, name: str = "rights") -> dict[str, list[str]] | None:
    """Rights per scope: an object of scope → permissions (a list, or for forms and the CLI a
    comma-separated string), every label printable without spaces, at least one permission on
    each scope listed and at least one scope. Returned normalized (fixed order, no repeats)."""
    if not isinstance(value, dict) or not value:
        errors.add(name, f"Choose at least one permission on one scope: {RIGHTS_EXAMPLE}"
                   if isinstance(value, dict) else f"Give {RIGHTS_EXAMPLE}")
        return None
    if len(value) > MAX_RIGHTS_SCOPES:
        errors.add(name, f"At most {MAX_RIGHTS_SCOPES} scopes")
        return None
    cleaned: dict[str, list[str]] = {}
    for scope, held in value.items():
        scope_name = scope.strip() if isinstance(scope, str) else scope
        if not isinstance(scope_name, str) or not _LABEL.fullmatch(scope_name):
            errors.add(name, f"'{str(scope)[:50]}' is not a valid scope name (1–50 characters, no spaces)")
            return None
        if isinstance(held, str):
            held = [part for part in re.split(r"[,\s]+", held) if part]
        if not isinstance(held, list) or not all(isinstance(item, str) for item in held):
            errors.add(name, f"Give the permissions on {scope_name} as a list of names")
            return None
        labels = list(dict.fromkeys(item.strip() for item in held if item.strip()))
        if not labels:
            errors.add(name, f"Choose at least one permission on {scope_name}")
            return None
        if len(labels) > MAX_LABELS:
            errors.add(name, f"At most {MAX_LABELS} permissions on {scope_name}")
            return None
        if bad := next((label for label in labels if not _LABEL.fullmatch(label)), None):
            errors.add(name, f"'{bad[:50]}' is not a valid permission name (1–50 characters, no spaces)")
            return None
        cleaned[scope_name] = cleaned.get(scope_name, []) + labels
    return token_rights.normalized(cleaned)


def parse_rights_text(text: str, errors: FieldErrors, name: str = "rights") -> dict[str, list[str]] | None:
    """Rights written as text (the command line): `documents:read,write;projects:read`."""
    value: dict[str, list[str]] = {}
    for part in (chunk.strip() for chunk in text.split(";")):
        if not part:
            continue
        scope, colon, held = part.partition(":")
        if not colon or not scope.strip():
            errors.add(name, f"Write each scope as scope:permission,permission (got '{part[:50]}')")
            return None
        value.setdefault(scope.strip(), []).extend(p for p in re.split(r"[,\s]+", held) if p)
    if any(not held for held in value.values()):
        scope = next(scope for scope, held in value.items() if not held)
        errors.add(name, f"Choose at least one permission on {scope}")
        return None
    return clean_rights(value, errors, name)


def clean_allowlist(value: Any, errors: FieldErrors) -> list[str] | None:
    """IPv4/IPv6 addresses or CIDRs, one per line (or a list), at most 50, normalized."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.replace(",", "\n").splitlines()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        errors.add("ip_allowlist", "Give a list of IP addresses or CIDR ranges")
        return None
    entries = [item.strip() for item in value if item.strip()]
    if len(entries) > MAX_ALLOWLIST_ENTRIES:
        errors.add("ip_allowlist", f"At most {MAX_ALLOWLIST_ENTRIES} entries")
        return None
    normalized = []
    for entry in entries:
        try:
            network = parse_network(entry)
        except ValueError as exc:
            errors.add("ip_allowlist", str(exc))
            return None
        single = network.num_addresses == 1
        normalized.append(str(network.network_address) if single else str(network))
    return list(dict.fromkeys(normalized))


def clean_expiry(choice: Any, custom: Any, errors: FieldErrors, name: str = "expiration") -> datetime | None:
    """The form's Expiration: "30" / "90" / "365" days, "never", or "custom" with a date."""
    now = clock.now()
    choice = (choice or "365") if isinstance(choice, str | type(None)) else choice
    if choice in EXPIRATION_CHOICES:
        return now + timedelta(days=EXPIRATION_CHOICES[choice])
    if choice == "never":
        return None
    if choice == "custom":
        try:
            day = date.fromisoformat(str(custom or "").strip())
        except ValueError:
            errors.add(name, "Enter a date as YYYY-MM-DD")
            return _UNSET
        if day <= now.date():
            errors.add(name, "Choose a date after today")
            return _UNSET
        return end_of_day(day)
    errors.add(name, "Choose an expiration")
    return _UNSET


def parse_api_expiry(payload: dict, errors: FieldErrors, default_days: int | None) -> datetime | None:
    """API expiry: `expires_in_days` (1–3650), `expires_at` (ISO date or datetime) or null for never."""
    now = clock.now()
    if "expires_in_days" in payload and payload["expires_in_days"] is not None:
        days = payload["expires_in_days"]
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3650:
            errors.add("expires_in_days", "Give a whole number of days from 1 to 3650")
            return _UNSET
        if "expires_at" in payload:
            errors.add("expires_at", "Give expires_in_days or expires_at, not both")
            return _UNSET
        return now + timedelta(days=days)
    if "expires_at" in payload:
        value = payload["expires_at"]
        if value is None:
            return None
        if not isinstance(value, str):
            errors.add("expires_at", "Give an ISO 8601 date or time, or null for never")
            return _UNSET
        moment = parse_moment(value)
        if moment is None:
            errors.add("expires_at", "Give an ISO 8601 date or time, or null for never")
            return _UNSET
        if moment <= now:
            errors.add("expires_at", "The expiry must be in the future")
            return _UNSET
        return moment
    if default_days is None:
        return _UNSET
    return now + timedelta(days=default_days)


def clean_canary(data: TokenInput, value: Any, *, explicit_type: Any, errors: FieldErrors) -> None:
    """A canary is always an organization token: it belongs to the organization's security
    watch, not to a person, and grants nothing whatever its type (docs/decisions.md)."""
    if not isinstance(value, bool):
        errors.add("canary", "canary must be true or false")
        return
    if not value:
        return
    if explicit_type not in (None, TokenType.ORGANIZATION) or data.project_id is not None:
        errors.add("type", "A canary is always an organization token, bound to no project")
    data.is_canary, data.type, data.project_id = True, TokenType.ORGANIZATION, None


def clean_rights_or_lists(data: TokenInput, values: dict, errors: FieldErrors, *, creating: bool) -> None:
    """`rights`, or the older `scopes` + `permissions` (their cross product), never both. A create
    needs one or the other; an edit may leave them out, or send one list (see resolve_rights)."""
    lists = [name for name in ("permissions", "scopes") if name in values]
    if "rights" in values and lists:
        errors.add("rights", BOTH_SHAPES)
    elif "rights" in values:
        data.rights = clean_rights(values["rights"], errors)
    elif lists or creating:
        if creating and not lists:
            errors.add("rights", f"Give rights, {RIGHTS_EXAMPLE}; or scopes and permissions")
            return
        data.legacy = True
        for name in ("permissions", "scopes"):
            if creating or name in values:
                setattr(data, name, clean_labels(values.get(name), name, errors))
        if creating:
            data.resolve_rights()


def parse_token_payload(payload: Any, *, creating: bool) -> TokenInput:
    """The API's JSON body (create or PATCH) as TokenInput; InvalidRequest with every field error."""
    if not isinstance(payload, dict):
        raise InvalidRequest("The body must be a JSON object", fields={"body": "Expected a JSON object"})
    errors = FieldErrors()
    data = TokenInput()
    known = {"name", "description", "type", "project_id", "rights", "permissions", "scopes",
             "expires_in_days", "expires_at", "ip_allowlist", "is_active"}
    known |= {"canary"} if creating else set()
    for unknown in sorted(set(payload) - known):
        errors.add(unknown, "Unknown field")
    if creating or "name" in payload:
        data.name = clean_name(payload.get("name"), errors)
    if creating or "description" in payload:
        data.description = clean_description(payload.get("description"), errors)
    if creating:
        kind = payload.get("type", TokenType.PERSONAL)
        if kind not in TOKEN_TYPES:
            errors.add("type", "Type must be personal, organization or project")
        data.type = kind
        project_id = payload.get("project_id")
        if project_id is not None and (isinstance(project_id, bool) or not isinstance(project_id, int)):
            errors.add("project_id", "project_id must be an integer")
        data.project_id = project_id
        if "canary" in payload:
            clean_canary(data, payload["canary"], explicit_type=payload.get("type"), errors=errors)
    elif "type" in payload or "project_id" in payload:
        errors.add("type" if "type" in payload else "project_id",
                   "A token's type and project cannot change; create a new token")
    clean_rights_or_lists(data, payload, errors, creating=creating)
    if creating or "ip_allowlist" in payload:
        data.ip_allowlist = clean_allowlist(payload.get("ip_allowlist"), errors)
    expiry = parse_api_expiry(payload, errors, DEFAULT_EXPIRATION_DAYS if creating else None)
    if expiry is not _UNSET:
        data.expires_at = expiry
        data.expiry_defaulted = creating and "expires_in_days" not in payload and "expires_at" not in payload
    if "is_active" in payload:
        if not isinstance(payload["is_active"], bool):
            errors.add("is_active", "is_active must be true or false")
        data.is_active = payload["is_active"]
    errors.raise_if_any()
    return data
