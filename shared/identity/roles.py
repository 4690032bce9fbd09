"""The role matrix as data, and the checks. The ONLY place roles are read.

Everything else asks `can(role, Capability.X)`, `role_permissions(role)` or
`role_scopes(role)`; no other module compares role names.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from shared.core.errors import PermissionDenied

if TYPE_CHECKING:
    from shared.audit.record import Actor


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    SECURITY_MANAGER = "security_manager"
    MAINTAINER = "maintainer"
    EDITOR = "editor"
    VIEWER = "viewer"
    PARTNER_ADMIN = "partner_admin"
    PARTNER_MEMBER = "partner_member"


STAFF_ROLES = (Role.OWNER, Role.ADMIN, Role.SECURITY_MANAGER, Role.MAINTAINER, Role.EDITOR, Role.VIEWER)
PARTNER_ROLES = (Role.PARTNER_ADMIN, Role.PARTNER_MEMBER)
ALL_ROLES = STAFF_ROLES + PARTNER_ROLES


class Capability(StrEnum):
    MANAGE_OWN_TOKENS = "manage_own_tokens"  # open the API Tokens panel
    CREATE_SHARED_TOKENS = "create_shared_tokens"  # organization and project tokens
    SEE_ALL_TOKENS = "see_all_tokens"
    DEACTIVATE_ANY_TOKEN = "deactivate_any_token"
    REVOKE_ANY_TOKEN = "revoke_any_token"
    EDIT_ANY_TOKEN = "edit_any_token"
    REGENERATE_ANY_TOKEN = "regenerate_any_token"
    CREATE_CANARY_TOKENS = "create_canary_tokens"  # tokens that alert when used and grant nothing
    TRANSFER_TOKENS = "transfer_tokens"  # move organization and project tokens to another member
    MANAGE_MEMBERS = "manage_members"
    MANAGE_PARTNERS = "manage_partners"
    MANAGE_WEBHOOKS = "manage_webhooks"  # endpoints, their secrets and delivery logs
    MANAGE_TRUSTED_PUBLISHERS = "manage_trusted_publishers"  # CI identities exchanged for tokens
    MANAGE_PLAN_AND_POLICY = "manage_plan_and_policy"
    READ_AUDIT_LOG = "read_audit_log"


class Permission(StrEnum):
    READ = "read"
    WRITE = "write"
    DELETE = "delete"


class Scope(StrEnum):
    DOCUMENTS = "documents"
    PROJECTS = "projects"
    TEMPLATES = "templates"
    ANALYTICS = "analytics"
    BILLING = "billing"
    TOKENS = "tokens"


KNOWN_PERMISSIONS = tuple(p.value for p in Permission)
KNOWN_SCOPES = tuple(s.value for s in Scope)

# Which HTTP method needs which permission.
METHOD_PERMISSION = {
    "GET": Permission.READ,
    "HEAD": Permission.READ,
    "POST": Permission.WRITE,
    "PUT": Permission.WRITE,
    "PATCH": Permission.WRITE,
    "DELETE": Permission.DELETE,
}

_C = Capability
_STAFF_MANAGERS = {_C.MANAGE_OWN_TOKENS, _C.SEE_ALL_TOKENS, _C.DEACTIVATE_ANY_TOKEN, _C.REVOKE_ANY_TOKEN,
                   _C.READ_AUDIT_LOG, _C.CREATE_CANARY_TOKENS}

CAPABILITIES: dict[Role, frozenset[Capability]] = {
    Role.OWNER: frozenset(Capability),
    Role.ADMIN: frozenset(set(Capability) - {_C.MANAGE_PLAN_AND_POLICY}),
    Role.SECURITY_MANAGER: frozenset(_STAFF_MANAGERS),
    Role.MAINTAINER: frozenset({_C.MANAGE_OWN_TOKENS}),
    Role.EDITOR: frozenset({_C.MANAGE_OWN_TOKENS}),
    Role.VIEWER: frozenset(),
    Role.PARTNER_ADMIN: frozenset({_C.MANAGE_OWN_TOKENS}),
    Role.PARTNER_MEMBER: frozenset({_C.MANAGE_OWN_TOKENS}),
}

_P = Permission
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OWNER: frozenset(Permission),
    Role.ADMIN: frozenset(Permission),
    Role.SECURITY_MANAGER: frozenset({_P.READ, _P.WRITE, _P.DELETE}),
    Role.MAINTAINER: frozenset({_P.READ, _P.WRITE, _P.DELETE}),
    Role.EDITOR: frozenset({_P.READ, _P.WRITE}),
    Role.VIEWER: frozenset({_P.READ}),
    Role.PARTNER_ADMIN: frozenset({_P.READ, _P.WRITE}),
    Role.PARTNER_MEMBER: frozenset({_P.READ}),
}


def _scopes_for(role: Role) -> frozenset[Scope]:
    scopes = {Scope.DOCUMENTS, Scope.PROJECTS, Scope.TEMPLATES, Scope.ANALYTICS}
    if role in (Role.OWNER, Role.ADMIN):
        scopes.add(Scope.BILLING)
    if Capability.MANAGE_OWN_TOKENS in CAPABILITIES[role]:
        scopes.add(Scope.TOKENS)
    return frozenset(scopes)


ROLE_SCOPES: dict[Role, frozenset[Scope]] = {role: _scopes_for(role) for role in Role}


def as_role(value: str | Role | None) -> Role | None:
    try:
        return Role(value)
    except ValueError:  # None or a name that is no role
        return None


def can(role: str | Role | None, capability: Capability) -> bool:
    role = as_role(role)
    return role is not None and capability in CAPABILITIES[role]


def role_permissions(role: str | Role | None) -> frozenset[Permission]:
    role = as_role(role)
    return ROLE_PERMISSIONS[role] if role else frozenset()


def role_scopes(role: str | Role | None) -> frozenset[Scope]:
    role = as_role(role)
    return ROLE_SCOPES[role] if role else frozenset()


def is_partner_role(role: str | Role | None) -> bool:
    return as_role(role) in PARTNER_ROLES


def is_valid_role(value: str) -> bool:
    return as_role(value) is not None


def allowed_token_types(role: str | Role | None) -> tuple[str, ...]:
    """Token types this role may create: personal for every panel user, shared ones for managers."""
    if not can(role, Capability.MANAGE_OWN_TOKENS):
        return ()
    if can(role, Capability.CREATE_SHARED_TOKENS):
        return ("personal", "organization", "project")
    return ("personal",)


def require(actor: Actor, capability: Capability, message: str) -> None:
    if not can(actor.role, capability):
        raise PermissionDenied(message)
