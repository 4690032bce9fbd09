"""What a token may do, as pairs of (scope, permission): the one place these rules live.

A token holds `rights`, for each scope the permissions it has there:
`{"documents": ["read", "write"], "projects": ["read"]}`. Every rule works on the pairs that
mapping stands for:

- effective pairs = the token's known pairs ∩ its creator's current role (∩ the project binding
  and visibility, which the data queries apply), nothing while the organization has no plan;
- the organization's policy allows a pair when it allows its scope;
- a token may only grant (create or edit another token with) pairs it effectively holds;
- narrowing keeps the pairs the token used (and the unknown-labelled ones, which grant nothing);
- the rights table explains every known scope × method with `decide`, the very check the API runs.

The older shape, `scopes` + `permissions`, means their cross product, and a token object still
shows `scopes` (the keys) and `permissions` (the union), so integrations written for it keep working.
Unknown scope and permission labels are kept and shown but never grant anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.core.errors import (
    InsufficientScope,
    PermissionDenied,
    PlanRequired,
)
from shared.identity import roles
from shared.models import ApiToken, Plan

if TYPE_CHECKING:
    from shared.tokens.authn import AuthenticatedToken

Rights = dict[str, list[str]]
Pair = tuple[str, str]  # (scope, permission)


# --------------------------------------------------------------------------- the algebra


def _ordered(labels: Iterable[str], known: tuple[str, ...]) -> list[str]:
    """Known labels in their fixed order, then unknown ones in the order first given; no repeats."""
    given = dict.fromkeys(labels)  # ordered, and a label is found in it without a scan
    return [label for label in known if label in given] + [label for label in given if label not in known]


def normalized(rights: Mapping[str, Iterable[str]]) -> Rights:
    """The canonical form stored and shown: scopes and permissions in a fixed order, no repeats."""
    return {scope: _ordered(rights[scope], roles.KNOWN_PERMISSIONS)
            for scope in _ordered(rights, roles.KNOWN_SCOPES)}


def cross_product(scopes: Iterable[str], permissions: Iterable[str]) -> Rights:
    """The older shape: every listed permission on every listed scope."""
    permissions = list(permissions)
    return normalized({scope: permissions for scope in scopes})


def scopes_of(rights: Mapping[str, Iterable[str]]) -> list[str]:
    """A token object's `scopes`: the scopes it holds anything on (normalized's keys)."""
    return _ordered(rights, roles.KNOWN_SCOPES)


def permissions_of(rights: Mapping[str, Iterable[str]]) -> list[str]:
    """A token object's `permissions`: every permission it holds on some scope."""
    return _ordered((permission for held in rights.values() for permission in held), roles.KNOWN_PERMISSIONS)


def pairs(rights: Mapping[str, Iterable[str]]) -> frozenset[Pair]:
    return frozenset((scope, permission) for scope, held in rights.items() for permission in held)


def from_pairs(chosen: Iterable[Pair]) -> Rights:
    """The rights holding exactly these pairs (a scope without any pair is not listed)."""
    grouped: dict[str, list[str]] = {}
    for scope, permission in chosen:
        grouped.setdefault(scope, []).append(permission)
    return normalized(grouped)


def is_known(pair: Pair) -> bool:
    """A pair can grant something only when both its labels are known."""
    return pair[0] in roles.KNOWN_SCOPES and pair[1] in roles.KNOWN_PERMISSIONS


def known_pairs(rights: Mapping[str, Iterable[str]]) -> frozenset[Pair]:
    return frozenset(pair for pair in pairs(rights) if is_known(pair))


def role_pairs(role: str | None) -> frozenset[Pair]:
    """Everything a role may hold: its scopes × its permissions."""
    return frozenset((scope.value, permission.value) for scope in roles.role_scopes(role)
                     for permission in roles.role_permissions(role))


def effective_pairs(token: ApiToken | AuthenticatedToken) -> frozenset[Pair]:
    """What the token may do right now: its known pairs within its creator's current role.
    A canary grants nothing, and nothing is granted while the organization has no plan."""
    if token.is_canary or token.plan == Plan.NONE:
        return frozenset()
    return known_pairs(token.rights) & role_pairs(token.creator_role)


def method_permission(method: str) -> str:
    """The permission an HTTP method needs (anything unlisted needs write)."""
    return roles.METHOD_PERMISSION.get(method.upper(), roles.Permission.WRITE).value


# --------------------------------------------------------------------------- refusals, one pair at a time


@dataclass(frozen=True)
class Refusal:
    """Why a pair may not be granted; `about_scope`: the scope is refused whatever the permission."""

    message: str
    about_scope: bool


def role_refusal(role: str | None, pair: Pair, whose: str = "Your role") -> Refusal | None:
    """Why `role` can never hold `pair`, or None. A pair with an unknown label is never refused:
    it is kept and shown, and grants nothing anyway."""
    if not is_known(pair):
        return None
    scope, permission = pair
    if scope not in roles.role_scopes(role):
        return Refusal(f"{whose} ({role}) does not include the {scope} scope", True)
    if permission not in roles.role_permissions(role):
        return Refusal(f"{whose} ({role}) does not include the {permission} permission", False)
    return None


def policy_refusal(allowed_scopes: list[str] | None, pair: Pair) -> Refusal | None:
    """The organization's policy lists the scopes its tokens may use (None: every scope)."""
    if allowed_scopes is not None and pair[0] not in allowed_scopes:
        return Refusal(f"Your organization does not allow the scope {pair[0]}", True)
    return None


def escalation_refusal(held: frozenset[Pair], pair: Pair) -> Refusal | None:
    """A token may grant only pairs it effectively holds (`held`): nothing beyond its own rights."""
    if not is_known(pair) or pair in held:
        return None
    scope, permission = pair
    if not any(scope == held_scope for held_scope, _ in held):
        return Refusal(f"The calling token does not hold the {scope} scope", True)
    return Refusal(f"The calling token does not hold the {permission} permission on {scope}", False)


# --------------------------------------------------------------------------- the decision


@dataclass(frozen=True)
class Decision:
    allowed: bool
    code: str | None = None  # insufficient_scope / insufficient_permission / plan_required
    reason: str | None = None


def decide(token: ApiToken | AuthenticatedToken, scope: str, method: str) -> Decision:
    """May this token call an endpoint of `scope` with `method`? And if not, why not.

    Allowed exactly when (scope, the method's permission) is one of `effective_pairs(token)`;
    checked step by step so that a refusal names its first reason. (The project binding and
    visibility then limit the data the queries return.) The API and the rights table both ask here.
    """
    role = token.creator_role
    permission = method_permission(method)
    if token.plan == Plan.NONE:
        return Decision(False, "plan_required", "The organization has no plan")
    held = token.rights.get(scope)
    if held is None:
        return Decision(False, "insufficient_scope", f"The token does not have the {scope} scope")
    if scope not in roles.role_scopes(role):
        return Decision(False, "insufficient_scope", f"The creator's role ({role}) does not allow the {scope} scope")
    if permission not in held:
        return Decision(False, "insufficient_permission",
                        f"The token does not have the {permission} permission on {scope}")
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
    """Raise the API error if `decision` (decide's answer for this scope and method) refused,
    naming what was required."""
    if decision.allowed:
        return
    required = {"scope": scope, "permission": method_permission(method)}
    error = {"plan_required": PlanRequired, "insufficient_scope": InsufficientScope}.get(
        decision.code, PermissionDenied)
    raise error(decision.reason, required=required)


# --------------------------------------------------------------------------- narrowing


def narrowed(rights: Mapping[str, Iterable[str]], used: Iterable[Pair]) -> Rights:
    """The rights that keep exactly the known pairs used, and every unknown-labelled pair (kept
    and shown, granting nothing). Never wider than `rights`: pairs it does not hold are ignored."""
    used = set(used)
    return from_pairs((scope, permission) for scope, held in rights.items() for permission in held
                      if (scope, permission) in used or not is_known((scope, permission)))
