"""A token's life: status, create, edit, deactivate/reactivate, regenerate (with a grace period), revoke.

Every change checks the actor's capability, the organization's policy and the no-escalation rule,
and is audited and announced (events) in the same transaction.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from flask import current_app
from sqlalchemy import select

from shared.audit import record as audit
from shared.audit.record import Actor
from shared.core import clock
from shared.core.db import write_transaction
from shared.core.errors import (
    InvalidRequest,
    PermissionDenied,
    PlanRequired,
    TokenLimitReached,
    TokenRevoked,
    TrustedPublisherToken,
)
from shared.core.extensions import db
from shared.core.validation import FieldErrors
from shared.events import outbox
from shared.identity import roles
from shared.identity.roles import Capability
from shared.models import ApiToken, Plan, Project, TokenType
from shared.tokens.access import (
    active_token_count,
    check_no_escalation,
    check_policy,
    check_role_grants,
    check_target_within_caller,
    edit_widens,
    lock_membership,
    require_capability,
)
from shared.tokens.format import generate_secret, hash_secret, new_public_id
from shared.tokens.payload import TokenInput
from shared.tokens.status import grace_until
from shared.tokens.summary import token_summary

if TYPE_CHECKING:
    pass




REVOKED_EXPOSED = "exposed"  # revoked_reason of a token reported through POST /leaks


# Regenerate's "Keep the old value working for": API value -> (label, duration).
GRACE_PERIODS = {
    "none": ("No", None),
    "1h": ("1 hour", timedelta(hours=1)),
    "24h": ("24 hours", timedelta(hours=24)),
    "7d": ("7 days", timedelta(days=7)),
}










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
    data.resolve_rights()
    errors = FieldErrors()
    if not data.is_canary:
        _validate_type_and_project(actor, data, errors)
    elif not roles.can(actor.role, Capability.CREATE_CANARY_TOKENS):
        errors.add("canary", "Your role cannot create canary tokens")
    check_role_grants(actor.role, data, errors)
    check_policy(org, data, errors, expiry_field=expiry_field)
    if actor.token is not None:
        check_no_escalation(actor.token, data, errors, kind=data.type, project_id=data.project_id,
                             expiry_field=expiry_field)
    errors.raise_if_any()

    secret = generate_secret()
    with write_transaction() as session:
        membership_id = actor.membership.id
        lock_membership(membership_id)
        limit = current_app.config["KEYWARD_FREE_TOKEN_LIMIT"]
        counted = not data.is_canary and data.trusted_publisher_id is None  # as active_token_count
        if org.plan == Plan.FREE and counted and active_token_count(membership_id) >= limit:
            raise TokenLimitReached(
                f"The free plan allows {limit} active tokens per member; revoke one or upgrade the plan")
        now = clock.now()
        token = ApiToken(
            public_id=new_public_id(),
            organization_id=actor.organization_id,
            created_by_membership_id=membership_id,
            type=data.type,
            project_id=data.project_id if data.type == TokenType.PROJECT else None,
            name=data.name,
            description=data.description or "",
            rights=data.rights,
            ip_allowlist=data.ip_allowlist or [],
            token_hash=hash_secret(secret),
            display_suffix=secret[-4:],
            created_at=now,
            updated_at=now,
            expires_at=data.expires_at,
            is_active=True,
            is_canary=data.is_canary,
            trusted_publisher_id=data.trusted_publisher_id,
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
        "rights": {scope: list(held) for scope, held in token.rights.items()},
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        "ip_allowlist": list(token.ip_allowlist or []),
    }


def _emit(event_type: str, token: ApiToken) -> None:
    outbox.emit(event_type, token.organization_id, token.id, {"token": token_summary(token)})


def drop_previous_value(token: ApiToken) -> None:
    """End a grace period in the caller's transaction: the old value stops working."""
    token.previous_token_hash = None
    token.previous_expires_at = None




def locked_for_update(session, token: ApiToken) -> ApiToken:
    """Re-read the token inside the write transaction (row-locked on PostgreSQL), so racing
    changes build on each other instead of on what each request read earlier."""
    return session.scalars(select(ApiToken).where(ApiToken.id == token.id).with_for_update()
                           .execution_options(populate_existing=True)).one()


def refuse_if_revoked(token: ApiToken) -> None:
    if token.revoked_at is not None:
        raise TokenRevoked("This token is revoked; revocation is final")


def from_trusted_publisher(token: ApiToken) -> bool:
    """Minted by an OIDC exchange: it may be deactivated, narrowed or revoked (that takes rights
    away), never regenerated or edited (its job exchanges a new identity token instead)."""
    return token.trusted_publisher_id is not None


def refuse_if_from_trusted_publisher(token: ApiToken, action: str) -> None:
    if from_trusted_publisher(token):
        raise TrustedPublisherToken(
            f"This token was minted by a trusted publisher and cannot be {action}; "
            "its CI job exchanges a new identity token for a new one")


def update_token(actor: Actor, token: ApiToken, data: TokenInput, *, expiry_field: str = "expires_at") -> ApiToken:
    """Edit everything but the secret (name, description, rights, expiry, active, allowlist)."""
    require_capability(actor, token, Capability.EDIT_ANY_TOKEN, "edit")
    refuse_if_revoked(token)
    refuse_if_from_trusted_publisher(token, "edited")
    data.resolve_rights(token.rights)  # one list of the older shape: the other is the token's
    errors = FieldErrors()
    check_role_grants(token.creator.role, data, errors)
    check_policy(token.organization, data, errors, expiry_field=expiry_field)
    if actor.token is not None:
        check_no_escalation(actor.token, data, errors, kind=token.type, project_id=token.project_id,
                             expiry_field=expiry_field)
    errors.raise_if_any()
    if edit_widens(token, data):
        check_target_within_caller(actor, token, data)

    with write_transaction() as session:
        before = _describe(token) | {"is_active": token.is_active, "description": token.description}
        for name in ("name", "description", "rights", "expires_at", "ip_allowlist", "is_active"):
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
    if active:
        check_target_within_caller(actor, token)  # reviving a wider token would widen what acts
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
    refuse_if_from_trusted_publisher(token, "regenerated")
    check_target_within_caller(actor, token)
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
    check_target_within_caller(actor, token)
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
