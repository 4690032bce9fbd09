"""Who may see and act on which token, and the limits a new or changed token must stay within:
the organization's policy, the creator's role, the free-plan count and never beyond the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select, update

from shared.audit.record import Actor
from shared.core import clock
from shared.core.errors import (
    NotFound,
    PermissionDenied,
)
from shared.core.extensions import db
from shared.core.netaddr import parse_network
from shared.core.validation import FieldErrors
from shared.identity import roles
from shared.identity.roles import Capability
from shared.models import ApiToken, Membership, Organization, TokenType
from shared.tokens import rights as token_rights
from shared.tokens.format import PUBLIC_ID
from shared.tokens.payload import TokenInput

if TYPE_CHECKING:
    pass


def _owns(actor: Actor, token: ApiToken) -> bool:
    return token.created_by_membership_id == actor.membership.id


def visible_tokens_query(actor: Actor):
    """Tokens this actor may see: every token of the org for managers, else their own; and when a
    project token acts, only tokens bound to its project (its reach never exceeds its project).

    The one tenancy rule for tokens: listing, reading, every change, bulk revocation and the
    analytics all start from this query.
    """
    query = select(ApiToken).where(ApiToken.organization_id == actor.organization_id)
    if not roles.can(actor.role, Capability.SEE_ALL_TOKENS):
        query = query.where(ApiToken.created_by_membership_id == actor.membership.id)
    if actor.token is not None and actor.token.type == TokenType.PROJECT:
        query = query.where(ApiToken.project_id == actor.token.project_id)
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


def may(actor: Actor, token: ApiToken, capability: Capability) -> bool:
    """May `actor` act on `token` where others need `capability`? Its creator may (if the role
    manages own tokens), else the role needs `capability`. Pages ask here which buttons to show."""
    if _owns(actor, token) and roles.can(actor.role, Capability.MANAGE_OWN_TOKENS):
        return True
    return roles.can(actor.role, capability)


def require_capability(actor: Actor, token: ApiToken, capability: Capability, action: str) -> None:
    """`may`, for services: refuses with the action named."""
    if not may(actor, token, capability):
        raise PermissionDenied(f"Your role cannot {action} this token")


def check_policy(org: Organization, data: TokenInput, errors: FieldErrors, *, expiry_field: str) -> None:
    now = clock.now()
    if data.given("expires_at"):
        if data.expires_at is None and not org.policy_allow_no_expiry:
            errors.add(expiry_field, "Your organization requires tokens to expire")
        if data.expires_at is not None and org.policy_max_lifetime_days:
            latest = now + timedelta(days=org.policy_max_lifetime_days)
            if data.expires_at.date() > latest.date():
                errors.add(expiry_field,
                           f"Your organization allows at most {org.policy_max_lifetime_days} days")
    _refuse_pairs(data, errors, lambda pair: token_rights.policy_refusal(org.policy_allowed_scopes, pair))
    if data.given("ip_allowlist") and org.policy_require_allowlist and not data.ip_allowlist:
        errors.add("ip_allowlist", "Your organization requires an IP allowlist")


def _refuse_pairs(data: TokenInput, errors: FieldErrors,
                  refusal: Callable[[token_rights.Pair], token_rights.Refusal | None]) -> None:
    """The first refused pair of the rights asked for (when given), beside the field that sent it."""
    if not data.given("rights") or not data.rights:
        return
    for pair in ((scope, permission) for scope, held in data.rights.items() for permission in held):
        if refused := refusal(pair):
            errors.add(data.rights_field(pair, about_scope=refused.about_scope), refused.message)
            return


def check_role_grants(role: str, data: TokenInput, errors: FieldErrors) -> None:
    """Known pairs beyond the creator's role are refused at once: they could never work."""
    _refuse_pairs(data, errors, lambda pair: token_rights.role_refusal(role, pair))


def _within(allowlist: list[str], outer: list[str]) -> bool:
    networks = [parse_network(entry) for entry in outer]
    for entry in allowlist:
        inner = parse_network(entry)
        if not any(inner.version == net.version and inner.subnet_of(net) for net in networks):
            return False
    return True


def check_no_escalation(caller: ApiToken, data: TokenInput, errors: FieldErrors, *,
                         kind: str | None, project_id: int | None, expiry_field: str) -> None:
    """A token may only create or shape tokens inside its own effective rights."""
    # Pair by pair: holding documents write and projects read grants neither projects write nor
    # documents delete. Unknown labels grant nothing, so only known pairs can escalate.
    held = token_rights.effective_pairs(caller)
    _refuse_pairs(data, errors, lambda pair: token_rights.escalation_refusal(held, pair))
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


def _outlives(expires_at: datetime | None, caller_expires_at: datetime | None) -> bool:
    """Does a token expiring at `expires_at` outlive the caller? Compared by UTC day, as expiry is
    shown and as the policy caps it: tokens made the same day with the same lifetime (seconds
    apart) stay within each other."""
    if caller_expires_at is None:
        return False
    return expires_at is None or expires_at.date() > caller_expires_at.date()


def beyond_caller(caller: ApiToken, *, rights: dict[str, list[str]], project_id: int | None,
                  expires_at: datetime | None, ip_allowlist: list[str]) -> str | None:
    """What of a token with these fields lies beyond the calling token, or None when nothing does.

    The rule a token is held to whenever it acts on a token it does not merely reduce: the known
    rights (per scope, so both scopes and permissions), the project binding, the expiry and the
    IP allowlist must all stay within its own.
    """
    if beyond := token_rights.known_pairs(rights) - token_rights.effective_pairs(caller):
        scope, permission = min(beyond)
        return f"{scope} {permission}"
    if caller.type == TokenType.PROJECT and project_id != caller.project_id:
        return "another project"
    if _outlives(expires_at, caller.expires_at):
        return "a later expiry" if expires_at is not None else "no expiry"
    if caller.ip_allowlist and (not ip_allowlist or not _within(ip_allowlist, caller.ip_allowlist)):
        return "a wider IP allowlist" if ip_allowlist else "no IP allowlist"
    return None


def edit_widens(token: ApiToken, data: TokenInput) -> bool:
    """Would this edit give the token anything it lacks: a permission or scope, a later or no
    expiry, a wider or no allowlist, or life again after a deactivation?"""
    if data.given("rights") and token_rights.pairs(data.rights) - token_rights.pairs(token.rights):
        return True
    if data.given("expires_at") and token.expires_at is not None and (
            data.expires_at is None or data.expires_at > token.expires_at):
        return True
    if data.given("ip_allowlist") and token.ip_allowlist and (
            not data.ip_allowlist or not _within(data.ip_allowlist, token.ip_allowlist)):
        return True
    return data.given("is_active") and data.is_active and not token.is_active


def check_target_within_caller(actor: Actor, token: ApiToken, data: TokenInput | None = None) -> None:
    """A token acts only on tokens within its own reach (regenerate, reactivate, end the grace
    period, transfer, narrow, and any edit that widens): otherwise it could obtain, revive or widen
    a token with more than it holds, e.g. regenerate a sibling without its allowlist and use the
    new secret from anywhere, or add `write` to a token holding a scope it lacks.

    With `data` (an edit), the token as it would be after the edit is checked. Deactivating,
    revoking and edits that only rename or reduce give the caller nothing, so they are not held to
    this (a restricted token may stop a wider one).

    :raise PermissionDenied: naming what lies beyond the calling token.
    """
    caller = actor.token
    if caller is None or caller.id == token.id:
        return

    def after(name: str):
        return getattr(data, name) if data is not None and data.given(name) else getattr(token, name)

    beyond = beyond_caller(caller, rights=after("rights"),
                           project_id=token.project_id, expires_at=after("expires_at"),
                           ip_allowlist=after("ip_allowlist") or [])
    if beyond:
        raise PermissionDenied(f"The calling token cannot manage a token with {beyond} beyond its own")


def active_token_count(membership_id: int) -> int:
    """Tokens that count against the free plan: every token not revoked, canaries aside (they
    grant nothing, so they are no use of the plan) and tokens minted by a trusted publisher
    (they live minutes, and a busy CI must not use up, or be stopped by, its member's limit)."""
    return db.session.scalar(
        select(func.count()).select_from(ApiToken).where(
            ApiToken.created_by_membership_id == membership_id, ApiToken.revoked_at.is_(None),
            ApiToken.is_canary.is_(False), ApiToken.trusted_publisher_id.is_(None))
    )


def lock_membership(membership_id: int) -> None:
    """Serialize token creation per member: a write first (SQLite) and a row lock (PostgreSQL)."""
    db.session.execute(
        update(Membership).where(Membership.id == membership_id)
        .values(token_lock=Membership.token_lock + 1).execution_options(synchronize_session=False)
    )
