"""Who may see and act on which token, and the limits a new or changed token must stay within:
the organization's policy, the creator's role, the free-plan count and never beyond the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
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


def check_target_within_caller(actor: Actor, token: ApiToken) -> None:
    """A token may not obtain the secret of a token with wider rights than its own (escalation).

    Deactivating, revoking or editing a wider token gives the caller nothing; edits that would
    widen are refused field by field in check_no_escalation.
    """
    caller = actor.token
    if caller is None or caller.id == token.id:
        return
    wider = (token_rights.wider_than(token_rights.effective_pairs(caller), token.rights)
             or (caller.type == TokenType.PROJECT and token.project_id != caller.project_id))
    if wider:
        raise PermissionDenied("The calling token cannot manage a token with wider rights than its own")


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
