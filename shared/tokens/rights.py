"""What a token may do: the decision for one scope and method, and the rights table that explains it.
"""

from __future__ import annotations

from collections.abc import Iterable
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


def labels_known(labels: Iterable[str], known: Iterable[str]) -> list[str]:
    known = set(known)
    return [label for label in labels if label in known]
