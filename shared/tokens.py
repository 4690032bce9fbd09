"""API tokens: format, hashing, masking, lifecycle, policy, limits and effective rights.

The one place that knows what a token looks like and what it may do. Views and the API parse
input, call these functions and render; they never hash, compare or interpret tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import unicodedata
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.orm import joinedload

from shared import audit, clock, events, roles
from shared.audit import Actor
from shared.db import contains_pattern, write_transaction
from shared.errors import (
    AuthError,
    InsufficientScope,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    PlanRequired,
    TokenLimitReached,
    TokenRevoked,
)
from shared.extensions import db
from shared.models import ApiToken, Membership, Organization, Plan, Project, TokenType
from shared.netaddr import parse_network
from shared.roles import Capability

if TYPE_CHECKING:
    from shared.token_auth import AuthenticatedToken

# --------------------------------------------------------------------------- format

SECRET_HEX = 56  # 224 bits from the CSPRNG
CHECKSUM_HEX = 8  # CRC32 of those 56 characters
EXPIRING_SOON = timedelta(days=7)
MAX_ALLOWLIST_ENTRIES = 50
MAX_LABELS = 20
EXPIRATION_CHOICES = {"30": 30, "90": 90, "365": 365}  # "1 month", "3 months", "1 year"
DEFAULT_EXPIRATION_DAYS = 365
REVOKED_EXPOSED = "exposed"  # revoked_reason of a token reported through POST /leaks
# Regenerate's "Keep the old value working for" (SPEC 11): API value -> (label, duration).
GRACE_PERIODS = {
    "none": ("No", None),
    "1h": ("1 hour", timedelta(hours=1)),
    "24h": ("24 hours", timedelta(hours=24)),
    "7d": ("7 days", timedelta(days=7)),
}


def _prefix() -> str:
    return current_app.config["KEYWARD_TOKEN_PREFIX"]


def _checksum(body: str) -> str:
    return f"{zlib.crc32(body.encode('ascii')) & 0xFFFFFFFF:08x}"


def generate_secret() -> str:
    body = secrets.token_hex(SECRET_HEX // 2)
    return f"{_prefix()}{body}{_checksum(body)}"


_BODY = re.compile(r"[0-9a-f]{64}")


def is_well_formed(value: str) -> bool:
    """Canonical form and a matching checksum; decided without touching the database."""
    prefix = _prefix()
    if not value.startswith(prefix):
        return False
    rest = value[len(prefix):]
    if len(rest) != SECRET_HEX + CHECKSUM_HEX or not _BODY.fullmatch(rest):
        return False
    body, check = rest[:SECRET_HEX], rest[SECRET_HEX:]
    return hmac.compare_digest(_checksum(body), check)


def hash_secret(value: str) -> str:
    """HMAC-SHA256 with the server pepper: a stolen database alone cannot verify guesses."""
    pepper = current_app.config["KEYWARD_TOKEN_PEPPER"].encode()
    return hmac.new(pepper, value.encode(), hashlib.sha256).hexdigest()


def mask(token: ApiToken) -> str:
    return f"{_prefix()}••••{token.display_suffix}"


PUBLIC_ID = re.compile(r"tok_[0-9a-f]{16}")


def _new_public_id() -> str:
    return "tok_" + secrets.token_hex(8)


# --------------------------------------------------------------------------- status


class TokenStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    EXPIRED = "expired"
    REVOKED = "revoked"


def status_of(token: ApiToken, now: datetime | None = None) -> TokenStatus:
    now = now or clock.now()
    if token.revoked_at is not None:
        return TokenStatus.REVOKED
    if token.expires_at is not None and token.expires_at <= now:
        return TokenStatus.EXPIRED
    if not token.is_active:
        return TokenStatus.INACTIVE
    return TokenStatus.ACTIVE


def expires_soon(token: ApiToken, now: datetime | None = None) -> bool:
    now = now or clock.now()
    return (
        status_of(token, now) == TokenStatus.ACTIVE
        and token.expires_at is not None
        and token.expires_at - now <= EXPIRING_SOON
    )


def is_partner_token(token: ApiToken) -> bool:
    return token.creator.partner_id is not None


# --------------------------------------------------------------------------- input

_UNSET: Any = object()


@dataclass
class TokenInput:
    """Validated, normalized fields of a create or edit. `_UNSET` marks a field left alone."""

    name: str = _UNSET
    description: str = _UNSET
    type: str = _UNSET
    project_id: int | None = _UNSET
    permissions: list[str] = _UNSET
    scopes: list[str] = _UNSET
    expires_at: datetime | None = _UNSET
    ip_allowlist: list[str] = _UNSET
    is_active: bool = _UNSET
    expiry_defaulted: bool = False  # no expiry was asked for; the 1-year default applied
    is_canary: bool = False  # creation only: alerts when used, grants nothing (SPEC 11)

    def given(self, name: str) -> bool:
        return getattr(self, name) is not _UNSET


@dataclass
class FieldErrors:
    errors: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, message: str) -> None:
        self.errors.setdefault(name, message)

    def raise_if_any(self) -> None:
        if self.errors:
            first = next(iter(self.errors.values()))
            raise InvalidRequest(first, fields=dict(self.errors))


def _has_control_characters(text: str, allow_newlines: bool = False) -> bool:
    allowed = {"\n", "\r", "\t"} if allow_newlines else set()
    return any(unicodedata.category(ch) in {"Cc", "Cs"} and ch not in allowed for ch in text)


def clean_name(value: Any, errors: FieldErrors) -> str | None:
    if not isinstance(value, str):
        errors.add("name", "Name is required")
        return None
    name = value.strip()
    if not name:
        errors.add("name", "Name is required")
    elif len(name) > 100:
        errors.add("name", "Name must be at most 100 characters")
    elif _has_control_characters(name):
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
    elif _has_control_characters(text, allow_newlines=True):
        errors.add("description", "Description cannot contain control characters")
    else:
        return text
    return None


_LABEL = re.compile(r"[^\s\x00-\x1f\x7f]{1,50}")


def clean_labels(value: Any, name: str, errors: FieldErrors) -> list[str] | None:
    """Free-form labels (SPEC 4): at least one, printable, no spaces, de-duplicated in order."""
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


def end_of_day(day: date) -> datetime:
    from datetime import UTC

    return datetime.combine(day, time(23, 59, 59), tzinfo=UTC)


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


def parse_moment(value: str) -> datetime | None:
    """An ISO 8601 date (end of that day, UTC) or date-time (UTC if no offset)."""
    from datetime import UTC

    value = value.strip()
    if len(value) > 40:
        return None
    try:
        if len(value) == 10:
            return end_of_day(date.fromisoformat(value))
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


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


def parse_token_payload(payload: Any, *, creating: bool) -> TokenInput:
    """The API's JSON body (create or PATCH) as TokenInput; InvalidRequest with every field error."""
    if not isinstance(payload, dict):
        raise InvalidRequest("The body must be a JSON object", fields={"body": "Expected a JSON object"})
    errors = FieldErrors()
    data = TokenInput()
    known = {"name", "description", "type", "project_id", "permissions", "scopes", "expires_in_days",
             "expires_at", "ip_allowlist", "is_active"} | ({"canary"} if creating else set())
    for unknown in sorted(set(payload) - known):
        errors.add(unknown, "Unknown field")
    if creating or "name" in payload:
        data.name = clean_name(payload.get("name"), errors)
    if creating or "description" in payload:
        data.description = clean_description(payload.get("description"), errors)
    if creating:
        kind = payload.get("type", TokenType.PERSONAL)
        if kind not in TokenType.ALL:
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
    for name in ("permissions", "scopes"):
        if creating or name in payload:
            setattr(data, name, clean_labels(payload.get(name), name, errors))
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


# --------------------------------------------------------------------------- rights


@dataclass(frozen=True)
class Decision:
    allowed: bool
    code: str | None = None  # insufficient_scope / insufficient_permission / plan_required
    reason: str | None = None


def _method_permission(method: str) -> str:
    return roles.METHOD_PERMISSION.get(method.upper(), roles.Permission.WRITE).value


def decide(token: ApiToken | AuthenticatedToken, scope: str, method: str) -> Decision:
    """May this token call an endpoint of `scope` with `method`? And if not, why not.

    Effective rights = creator's current role ∩ token permissions ∩ token scopes (∩ project and
    visibility, applied to the data by the queries). The API and the rights table both ask here.
    """
    role = token.creator_role
    permission = _method_permission(method)
    if token.plan == Plan.NONE:
        return Decision(False, "plan_required", "The organization has no plan")
    if scope not in token.scopes:
        return Decision(False, "insufficient_scope", f"The token does not have the {scope} scope")
    if scope not in roles.role_scopes(role):
        return Decision(False, "insufficient_scope", f"The creator's role ({role}) does not allow the {scope} scope")
    if permission not in token.permissions:
        return Decision(False, "insufficient_permission", f"The token does not have the {permission} permission")
    if permission not in roles.role_permissions(role):
        return Decision(False, "insufficient_permission",
                        f"The creator's role ({role}) does not allow the {permission} permission")
    return Decision(True)


RIGHTS_METHODS = ("GET", "POST", "PATCH", "DELETE")


def rights_table(token: ApiToken | AuthenticatedToken) -> list[dict[str, Any]]:
    """Every known scope × method, allowed or why not: `decide`, the very check the API runs, so the
    table cannot disagree with a real request. (A project token's data is further limited to its
    project; that narrows what a call sees, not whether it is allowed.)"""
    rows = []
    for scope in roles.KNOWN_SCOPES:
        for method in RIGHTS_METHODS:
            decision = decide(token, scope, method)
            rows.append({"scope": scope, "method": method, "allowed": decision.allowed,
                         "reason": None if decision.allowed else decision.reason})
    return rows


def require(decision: Decision, scope: str, method: str) -> None:
    """Raise the SPEC 5 error if `decision` (decide's answer for this scope and method) refused,
    naming what was required."""
    if decision.allowed:
        return
    required = {"scope": scope, "permission": _method_permission(method)}
    error = {"plan_required": PlanRequired, "insufficient_scope": InsufficientScope}.get(
        decision.code, PermissionDenied)
    raise error(decision.reason, required=required)


def effective_permissions(token: ApiToken) -> set[str]:
    return set(token.permissions) & {p.value for p in roles.role_permissions(token.creator_role)}


def effective_scopes(token: ApiToken) -> set[str]:
    return set(token.scopes) & {s.value for s in roles.role_scopes(token.creator_role)}


# --------------------------------------------------------------------------- authentication


@dataclass(frozen=True)
class Credentials:
    """What a request presented: the raw value (never logged) or the reason it is unusable."""

    value: str | None
    problem: str | None = None


def extract_credentials(authorization: str | None, api_key: str | None) -> Credentials:
    """`Authorization: Bearer <token>` or `X-API-Key: <token>`; both must agree when both are sent."""
    bearer = None
    if authorization is not None:
        scheme, _, rest = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not rest.strip():
            return Credentials(None, "The Authorization header must be 'Bearer <token>'")
        bearer = rest.strip()
    key = api_key.strip() if api_key is not None else None
    if bearer is not None and key is not None and not hmac.compare_digest(bearer.encode(), key.encode()):
        return Credentials(None, "Authorization and X-API-Key carry different tokens")
    value = bearer if bearer is not None else key
    if not value:
        return Credentials(None, "Send a token in 'Authorization: Bearer <token>' or 'X-API-Key'")
    return Credentials(value)


def invalid_api_key(message: str = "The API key is missing, malformed, unknown or revoked") -> AuthError:
    return AuthError(401, "invalid_api_key", message)


# --------------------------------------------------------------------------- access


def _owns(actor: Actor, token: ApiToken) -> bool:
    return token.created_by_membership_id == actor.membership.id


def visible_tokens_query(actor: Actor):
    """Tokens this actor may see: every token of the org for managers, else their own."""
    query = select(ApiToken).where(ApiToken.organization_id == actor.organization_id)
    if not roles.can(actor.role, Capability.SEE_ALL_TOKENS):
        query = query.where(ApiToken.created_by_membership_id == actor.membership.id)
    return query


def get_token_for(actor: Actor, public_id: str) -> ApiToken:
    """The token with this id if the actor may see it.

    :raise NotFound: for unknown ids, another org's ids and tokens the actor may not see alike.
    """
    if not roles.can(actor.role, Capability.MANAGE_OWN_TOKENS):
        raise PermissionDenied("Your role cannot manage API tokens")
    # Anything else cannot be a token id (and PostgreSQL refuses some strings, e.g. with NUL).
    if not isinstance(public_id, str) or not PUBLIC_ID.fullmatch(public_id):
        raise NotFound("No such token")
    token = db.session.scalars(visible_tokens_query(actor).where(ApiToken.public_id == public_id)).first()
    if token is None:
        raise NotFound("No such token")
    return token


def require_capability(actor: Actor, token: ApiToken, capability: Capability, action: str) -> None:
    """May `actor` do `action` to `token`? Its creator may (if the role manages own tokens), else
    the role needs `capability`. Services and pages (which buttons to show) ask here."""
    if _owns(actor, token) and roles.can(actor.role, Capability.MANAGE_OWN_TOKENS):
        return
    if roles.can(actor.role, capability):
        return
    raise PermissionDenied(f"Your role cannot {action} this token")


# --------------------------------------------------------------------------- policy and escalation


def _check_policy(org: Organization, data: TokenInput, errors: FieldErrors, *, expiry_field: str) -> None:
    now = clock.now()
    if data.given("expires_at"):
        if data.expires_at is None and not org.policy_allow_no_expiry:
            errors.add(expiry_field, "Your organization requires tokens to expire")
        if data.expires_at is not None and org.policy_max_lifetime_days:
            latest = now + timedelta(days=org.policy_max_lifetime_days)
            if data.expires_at.date() > latest.date():
                errors.add(expiry_field,
                           f"Your organization allows at most {org.policy_max_lifetime_days} days")
    if data.given("scopes") and data.scopes and org.policy_allowed_scopes is not None:
        refused = [s for s in data.scopes if s not in org.policy_allowed_scopes]
        if refused:
            errors.add("scopes", f"Your organization does not allow the scope {refused[0]}")
    if data.given("ip_allowlist") and org.policy_require_allowlist and not data.ip_allowlist:
        errors.add("ip_allowlist", "Your organization requires an IP allowlist")


def _check_role_grants(role: str, data: TokenInput, errors: FieldErrors) -> None:
    """Known labels beyond the creator's role are refused at once: they could never work."""
    if data.given("permissions") and data.permissions:
        granted = {p.value for p in roles.role_permissions(role)}
        refused = [p for p in data.permissions if p in roles.KNOWN_PERMISSIONS and p not in granted]
        if refused:
            errors.add("permissions", f"Your role ({role}) does not include the {refused[0]} permission")
    if data.given("scopes") and data.scopes:
        granted = {s.value for s in roles.role_scopes(role)}
        refused = [s for s in data.scopes if s in roles.KNOWN_SCOPES and s not in granted]
        if refused:
            errors.add("scopes", f"Your role ({role}) does not include the {refused[0]} scope")


def _within(allowlist: list[str], outer: list[str]) -> bool:
    networks = [parse_network(entry) for entry in outer]
    for entry in allowlist:
        inner = parse_network(entry)
        if not any(inner.version == net.version and inner.subnet_of(net) for net in networks):
            return False
    return True


def _check_no_escalation(caller: ApiToken, data: TokenInput, errors: FieldErrors, *,
                         kind: str | None, project_id: int | None, expiry_field: str) -> None:
    """A token may only create or shape tokens inside its own effective rights."""
    if data.given("permissions") and data.permissions:
        # Unknown labels grant nothing (SPEC 4), so only known ones can escalate.
        beyond = [p for p in labels_known(data.permissions, roles.KNOWN_PERMISSIONS)
                  if p not in effective_permissions(caller)]
        if beyond:
            errors.add("permissions", f"The calling token does not hold the {beyond[0]} permission")
    if data.given("scopes") and data.scopes:
        beyond = [s for s in labels_known(data.scopes, roles.KNOWN_SCOPES) if s not in effective_scopes(caller)]
        if beyond:
            errors.add("scopes", f"The calling token does not hold the {beyond[0]} scope")
    if caller.type == TokenType.PROJECT and (kind != TokenType.PROJECT or project_id != caller.project_id):
        errors.add("type", "A project token can only manage tokens of its own project")
    if data.given("expires_at") and caller.expires_at is not None:
        if data.expiry_defaulted and data.expires_at is not None and data.expires_at > caller.expires_at:
            data.expires_at = caller.expires_at  # the default quietly follows the creating token
        if data.expires_at is None or data.expires_at > caller.expires_at:
            errors.add(expiry_field, "A token cannot outlive the token that creates it")
    if data.given("ip_allowlist") and caller.ip_allowlist:
        if not data.ip_allowlist or not _within(data.ip_allowlist, caller.ip_allowlist):
            errors.add("ip_allowlist", "The allowlist must stay within the calling token's allowlist")


def _check_target_within_caller(actor: Actor, token: ApiToken) -> None:
    """A token may not obtain the secret of a token with wider rights than its own (escalation).

    Deactivating, revoking or editing a wider token gives the caller nothing; edits that would
    widen are refused field by field in _check_no_escalation.
    """
    caller = actor.token
    if caller is None or caller.id == token.id:
        return
    wider = (set(labels_known(token.permissions, roles.KNOWN_PERMISSIONS)) - effective_permissions(caller)
             or set(labels_known(token.scopes, roles.KNOWN_SCOPES)) - effective_scopes(caller)
             or (caller.type == TokenType.PROJECT and token.project_id != caller.project_id))
    if wider:
        raise PermissionDenied("The calling token cannot manage a token with wider rights than its own")


# --------------------------------------------------------------------------- lifecycle


def active_token_count(membership_id: int) -> int:
    """Tokens that count against the free plan: every token not revoked, canaries aside (they
    grant nothing, so they are no use of the plan)."""
    return db.session.scalar(
        select(func.count()).select_from(ApiToken).where(
            ApiToken.created_by_membership_id == membership_id, ApiToken.revoked_at.is_(None),
            ApiToken.is_canary.is_(False))
    )


def lock_membership(membership_id: int) -> None:
    """Serialize token creation per member: a write first (SQLite) and a row lock (PostgreSQL)."""
    db.session.execute(
        update(Membership).where(Membership.id == membership_id)
        .values(token_lock=Membership.token_lock + 1).execution_options(synchronize_session=False)
    )


def _validate_type_and_project(actor: Actor, data: TokenInput, errors: FieldErrors) -> None:
    if data.type not in roles.allowed_token_types(actor.role):
        errors.add("type", "Your role can only create personal tokens")
        return
    if data.type == TokenType.PROJECT:
        if data.project_id is None:
            errors.add("project_id", "Choose a project for a project token")
            return
        project = db.session.get(Project, data.project_id)
        if project is None or project.organization_id != actor.organization_id:
            errors.add("project_id", "No such project")
    elif data.project_id is not None:
        errors.add("project_id", "Only project tokens are bound to a project")


def create_token(actor: Actor, data: TokenInput, *, expiry_field: str = "expires_at") -> tuple[ApiToken, str]:
    """Create a token acting as `actor`'s member; returns (token, secret). The secret is never stored."""
    if not roles.can(actor.role, Capability.MANAGE_OWN_TOKENS):
        raise PermissionDenied("Your role cannot create API tokens")
    org = actor.membership.organization
    if org.plan == Plan.NONE:
        raise PlanRequired("Choose a plan to create API tokens")
    errors = FieldErrors()
    if not data.is_canary:
        _validate_type_and_project(actor, data, errors)
    elif not roles.can(actor.role, Capability.CREATE_CANARY_TOKENS):
        errors.add("canary", "Your role cannot create canary tokens")
    _check_role_grants(actor.role, data, errors)
    _check_policy(org, data, errors, expiry_field=expiry_field)
    if actor.token is not None:
        _check_no_escalation(actor.token, data, errors, kind=data.type, project_id=data.project_id,
                             expiry_field=expiry_field)
    errors.raise_if_any()

    secret = generate_secret()
    with write_transaction() as session:
        membership_id = actor.membership.id
        lock_membership(membership_id)
        limit = current_app.config["KEYWARD_FREE_TOKEN_LIMIT"]
        if org.plan == Plan.FREE and not data.is_canary and active_token_count(membership_id) >= limit:
            raise TokenLimitReached(
                f"The free plan allows {limit} active tokens per member; revoke one or upgrade the plan")
        now = clock.now()
        token = ApiToken(
            public_id=_new_public_id(),
            organization_id=actor.organization_id,
            created_by_membership_id=membership_id,
            type=data.type,
            project_id=data.project_id if data.type == TokenType.PROJECT else None,
            name=data.name,
            description=data.description or "",
            permissions=data.permissions,
            scopes=data.scopes,
            ip_allowlist=data.ip_allowlist or [],
            token_hash=hash_secret(secret),
            display_suffix=secret[-4:],
            created_at=now,
            updated_at=now,
            expires_at=data.expires_at,
            is_active=True,
            is_canary=data.is_canary,
        )
        session.add(token)
        session.flush()
        audit.record(actor, actor.organization_id, "token.created", "token", token.public_id,
                     _describe(token) | ({"canary": True} if token.is_canary else {}))
        _emit("token.created", token)
    return token, secret


def _describe(token: ApiToken) -> dict[str, Any]:
    """What the audit log keeps about a token: never its secret or hash."""
    return {
        "name": token.name,
        "type": token.type,
        "project_id": token.project_id,
        "permissions": list(token.permissions),
        "scopes": list(token.scopes),
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        "ip_allowlist": list(token.ip_allowlist or []),
    }


def _emit(event_type: str, token: ApiToken) -> None:
    events.emit(event_type, token.organization_id, token.id, {"token": token_summary(token)})


def drop_previous_value(token: ApiToken) -> None:
    """End a grace period in the caller's transaction: the old value stops working."""
    token.previous_token_hash = None
    token.previous_expires_at = None


def grace_until(token: ApiToken, now: datetime | None = None) -> datetime | None:
    """Until when the previous value still works, or None when there is none (or it has ended)."""
    if token.previous_expires_at is None or token.previous_expires_at <= (now or clock.now()):
        return None
    return token.previous_expires_at


def locked_for_update(session, token: ApiToken) -> ApiToken:
    """Re-read the token inside the write transaction (row-locked on PostgreSQL), so racing
    changes build on each other instead of on what each request read earlier."""
    return session.scalars(select(ApiToken).where(ApiToken.id == token.id).with_for_update()
                           .execution_options(populate_existing=True)).one()


def refuse_if_revoked(token: ApiToken) -> None:
    if token.revoked_at is not None:
        raise TokenRevoked("This token is revoked; revocation is final")


def update_token(actor: Actor, token: ApiToken, data: TokenInput, *, expiry_field: str = "expires_at") -> ApiToken:
    """Edit everything but the secret (name, description, permissions, scopes, expiry, active, allowlist)."""
    require_capability(actor, token, Capability.EDIT_ANY_TOKEN, "edit")
    refuse_if_revoked(token)
    errors = FieldErrors()
    _check_role_grants(token.creator.role, data, errors)
    _check_policy(token.organization, data, errors, expiry_field=expiry_field)
    if actor.token is not None:
        _check_no_escalation(actor.token, data, errors, kind=token.type, project_id=token.project_id,
                             expiry_field=expiry_field)
    errors.raise_if_any()

    with write_transaction() as session:
        before = _describe(token) | {"is_active": token.is_active, "description": token.description}
        for name in ("name", "description", "permissions", "scopes", "expires_at", "ip_allowlist", "is_active"):
            if data.given(name):
                setattr(token, name, getattr(data, name))
        token.updated_at = clock.now()
        if not token.is_active:
            drop_previous_value(token)  # deactivating ends the old value's grace, as the button does
        after = _describe(token) | {"is_active": token.is_active, "description": token.description}
        changes = {key: {"from": before[key], "to": after[key]} for key in after if before[key] != after[key]}
        session.add(token)
        audit.record(actor, token.organization_id, "token.updated", "token", token.public_id,
                     {"name": token.name, "changes": changes})
        _emit("token.updated", token)
    return token


def set_active(actor: Actor, token: ApiToken, active: bool) -> ApiToken:
    """Deactivate (refused at once) or reactivate; revoked tokens stay revoked."""
    require_capability(actor, token, Capability.DEACTIVATE_ANY_TOKEN,
                        "reactivate" if active else "deactivate")
    refuse_if_revoked(token)
    with write_transaction() as session:
        token.is_active = active
        token.updated_at = clock.now()
        if not active:
            drop_previous_value(token)
        session.add(token)
        action = "token.reactivated" if active else "token.deactivated"
        audit.record(actor, token.organization_id, action, "token", token.public_id, {"name": token.name})
        _emit(action, token)
    return token


def regenerate_token(actor: Actor, token: ApiToken, grace_period: str = "none") -> tuple[ApiToken, str]:
    """A new secret, shown once. With a grace period the old value keeps working until
    previous_expires_at; without one it stops in the same commit. Any earlier previous value ends."""
    if grace_period not in GRACE_PERIODS:
        raise InvalidRequest("Invalid request", fields={"grace_period": f"Must be one of {', '.join(GRACE_PERIODS)}"})
    require_capability(actor, token, Capability.REGENERATE_ANY_TOKEN, "regenerate")
    refuse_if_revoked(token)
    _check_target_within_caller(actor, token)
    secret = generate_secret()
    with write_transaction() as session:
        token = locked_for_update(session, token)
        refuse_if_revoked(token)
        now = clock.now()
        grace = GRACE_PERIODS[grace_period][1]
        if grace is None:
            drop_previous_value(token)
        else:
            token.previous_token_hash, token.previous_expires_at = token.token_hash, now + grace
        token.token_hash = hash_secret(secret)
        token.display_suffix = secret[-4:]
        token.updated_at = now
        session.add(token)
        audit.record(actor, token.organization_id, "token.regenerated", "token", token.public_id,
                     {"name": token.name, "grace_period": grace_period,
                      "previous_expires_at": token.previous_expires_at.isoformat() if grace else None})
        _emit("token.regenerated", token)
    return token, secret


def end_grace(actor: Actor, token: ApiToken) -> ApiToken:
    """The old value stops working now (POST /tokens/{id}/end-grace)."""
    require_capability(actor, token, Capability.REGENERATE_ANY_TOKEN, "end the grace period of")
    refuse_if_revoked(token)
    with write_transaction() as session:
        token = locked_for_update(session, token)
        had_grace = grace_until(token) is not None
        drop_previous_value(token)
        token.updated_at = clock.now()
        session.add(token)
        if had_grace:
            audit.record(actor, token.organization_id, "token.grace_ended", "token", token.public_id,
                         {"name": token.name})
    return token


def revoke_token(actor: Actor, token: ApiToken, reason: str = "revoked") -> ApiToken:
    """Permanent. The row stays (Deleted tab) for audit."""
    require_capability(actor, token, Capability.REVOKE_ANY_TOKEN, "revoke")
    refuse_if_revoked(token)
    with write_transaction():
        mark_revoked(token, actor, reason)
    return token


def mark_revoked(token: ApiToken, actor: Actor | None, reason: str, details: dict[str, Any] | None = None,
                 *, source_ip: str | None = None, audited: bool = True) -> None:
    """Revoke inside the caller's write transaction: the change, its audit record and its event.
    `audited=False`: the caller writes one record for a whole batch (bulk revocation)."""
    now = clock.now()
    token.revoked_at = now
    token.revoked_by_user_id = actor.user_id if actor else None
    token.revoked_reason = reason
    token.updated_at = now
    drop_previous_value(token)
    db.session.add(token)
    if audited:
        audit.record(actor, token.organization_id, "token.revoked", "token", token.public_id,
                     {"name": token.name, "reason": reason, **(details or {})}, source_ip=source_ip)
    _emit("token.exposed" if reason == REVOKED_EXPOSED else "token.revoked", token)


# --------------------------------------------------------------------------- listing

LIST_STATUSES = ("active", "inactive", "expired", "expiring", "revoked")


@dataclass
class TokenFilters:
    tab: str = "active"  # active (not revoked) / deleted (revoked)
    name: str = ""
    type: str = ""
    status: str = ""
    project_id: int | None = None
    page: int = 1
    per_page: int = 25


def filtered_tokens_query(actor: Actor, filters: TokenFilters):
    """The list both UIs and the API show: visibility, tab, filters, newest first."""
    now = clock.now()
    query = visible_tokens_query(actor)
    if filters.tab == "deleted":
        query = query.where(ApiToken.revoked_at.is_not(None))
    else:
        query = query.where(ApiToken.revoked_at.is_(None))
    if filters.name:
        query = query.where(func.lower(ApiToken.name).like(contains_pattern(filters.name), escape="\\"))
    if filters.type:
        query = query.where(ApiToken.type == filters.type)
    if filters.project_id is not None:
        query = query.where(ApiToken.project_id == filters.project_id)
    not_expired = (ApiToken.expires_at.is_(None)) | (ApiToken.expires_at > now)
    if filters.status == "active":
        query = query.where(ApiToken.is_active.is_(True), not_expired, ApiToken.revoked_at.is_(None))
    elif filters.status == "inactive":
        query = query.where(ApiToken.is_active.is_(False), not_expired, ApiToken.revoked_at.is_(None))
    elif filters.status == "expired":
        query = query.where(ApiToken.expires_at <= now, ApiToken.revoked_at.is_(None))
    elif filters.status == "expiring":
        query = query.where(ApiToken.is_active.is_(True), ApiToken.expires_at > now,
                            ApiToken.expires_at <= now + EXPIRING_SOON, ApiToken.revoked_at.is_(None))
    elif filters.status == "revoked":
        query = query.where(ApiToken.revoked_at.is_not(None))
    return query.order_by(ApiToken.created_at.desc(), ApiToken.id.desc())


def list_tokens(actor: Actor, filters: TokenFilters) -> tuple[list[ApiToken], int]:
    if not roles.can(actor.role, Capability.MANAGE_OWN_TOKENS):
        raise PermissionDenied("Your role cannot manage API tokens")
    query = filtered_tokens_query(actor, filters)
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    items = db.session.scalars(
        query.options(joinedload(ApiToken.creator).joinedload(Membership.user),
                      joinedload(ApiToken.creator).joinedload(Membership.partner),
                      joinedload(ApiToken.project))
        .limit(filters.per_page).offset((filters.page - 1) * filters.per_page)
    ).unique().all()
    return list(items), total


def token_summary(token: ApiToken | AuthenticatedToken) -> dict[str, Any]:
    """The API's token object (SPEC 6). Never the secret."""
    from shared.timefmt import iso

    creator_user = token.creator_user
    return {
        "id": token.public_id,
        "name": token.name,
        "description": token.description,
        "type": token.type,
        "project_id": token.project_id,
        "permissions": list(token.permissions),
        "scopes": list(token.scopes),
        "ip_allowlist": list(token.ip_allowlist or []),
        "masked": mask(token),
        "status": status_of(token).value,
        "is_active": token.is_active,
        "created_at": iso(token.created_at),
        "expires_at": iso(token.expires_at),
        "last_used_at": iso(token.last_used_at),
        "last_used_ip": token.last_used_ip,
        "usage_count": token.usage_count,
        "documents_processed": token.documents_processed,
        "revoked_at": iso(token.revoked_at),
        "revoked_reason": token.revoked_reason,
        "previous_expires_at": iso(grace_until(token)),
        "canary": token.is_canary,
        "canary_trips": token.canary_trips,
        "created_by": {"id": creator_user.id, "email": creator_user.email},
    }


def labels_known(labels: Iterable[str], known: Iterable[str]) -> list[str]:
    known = set(known)
    return [label for label in labels if label in known]
