"""Security team tools: bulk revocation, transfer before departure, narrowing to observed use.

Service functions for the API (api/security_tools.py), the token pages (shared/security_pages.py)
and the Members page. Each takes the acting member (an Actor), checks its capability in
shared.roles, and changes, audits, emits and notifies in one write transaction:

- `bulk_revoke`: the live tokens chosen by id or by rule (member, partner, created before, all),
  with a dry run that changes nothing. One audit event lists every token; each token still gets
  its `token.revoked` event (webhooks); each creator is notified once. A failure anywhere rolls
  the whole batch back.
- `transfer_token` / `transfer_and_remove`: an organization or project token moves to another
  member; its rights follow the new creator from the next request (they are computed from the
  creator's current role on every request).
- `narrow_token`: keep exactly the scope × permission pairs the token used in the last 30 days
  (the scope × method cells shared.usage records on the hot path); every other known pair goes.

They lean on shared.tokens' own rules (who may act on a token, its row lock, revocation), so a
token is governed by one set of rules whichever tool touches it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from shared.audit import record as audit
from shared.audit.record import Actor
from shared.core import clock
from shared.core.dates import iso
from shared.core.db import write_transaction
from shared.core.errors import InvalidRequest, NotFound, PermissionDenied, TokenLimitReached
from shared.core.extensions import db
from shared.events import outbox
from shared.identity import members, roles
from shared.identity.roles import Capability
from shared.models import ApiToken, Membership, Partner, Plan, TokenType, User
from shared.notifications import notices
from shared.tokens import access, lifecycle, rights, summary, usage
from shared.tokens import format as token_format

MAX_BULK_IDS = 1000
BULK_REASON = "bulk_revoked"  # revoked_reason of every token a bulk revocation revoked
OBSERVED_DAYS = 30  # narrowing keeps what the token used in this many days


# --------------------------------------------------------------------------- bulk revocation


@dataclass(frozen=True)
class BulkRule:
    """Which tokens: `token_ids` (selected rows), or any of the rules, all of which must match."""

    token_ids: tuple[str, ...] = ()
    created_by: int | None = None  # a user id
    partner_id: int | None = None
    created_before: datetime | None = None
    all: bool = False
    # The page's confirmation revokes only what its dry run listed: a token created between the
    # preview and the click is never revoked unseen.
    previewed: tuple[str, ...] | None = None

    @property
    def by_rule(self) -> bool:
        return self.created_by is not None or self.partner_id is not None or self.created_before is not None \
            or self.all

    def describe(self) -> dict[str, Any]:
        """The rule as the audit record keeps it (only what was given)."""
        if self.token_ids:
            return {"token_ids": list(self.token_ids)}
        rule = {"created_by": self.created_by, "partner_id": self.partner_id,
                "created_before": iso(self.created_before), "all": self.all or None}
        return {key: value for key, value in rule.items() if value is not None}


@dataclass(frozen=True)
class BulkItem:
    """One token of a bulk revocation, as the preview lists it (read before the commit)."""

    public_id: str
    name: str
    type: str
    masked: str
    creator: str
    created_at: datetime
    is_canary: bool


@dataclass(frozen=True)
class BulkResult:
    items: list[BulkItem]
    dry_run: bool

    @property
    def ids(self) -> list[str]:
        return [item.public_id for item in self.items]

    @property
    def count(self) -> int:
        return len(self.items)

    def as_json(self) -> dict[str, Any]:
        """The API's answer: {"revoked": N, "ids"} or, for a dry run, {"would_revoke": N, "ids"}."""
        return {"would_revoke" if self.dry_run else "revoked": self.count, "ids": self.ids}


def may_bulk_revoke(actor: Actor) -> bool:
    """Owners, admins and security managers: they see and revoke every token of the org."""
    return roles.can(actor.role, Capability.REVOKE_ANY_TOKEN) and roles.can(actor.role, Capability.SEE_ALL_TOKENS)


def check_rule(rule: BulkRule) -> None:
    """Token ids or rules, not both, and not nothing; InvalidRequest with `fields` otherwise."""
    if rule.token_ids and rule.by_rule:
        raise InvalidRequest("Give token_ids or rules, not both",
                             fields={"token_ids": "Give token_ids or rules (created_by, partner_id, "
                                                  "created_before, all), not both"})
    if not rule.token_ids and not rule.by_rule:
        raise InvalidRequest("Choose the tokens to revoke",
                             fields={"token_ids": "Give token_ids, or at least one of created_by, partner_id, "
                                                  "created_before or all: true"})
    if len(rule.token_ids) > MAX_BULK_IDS:
        raise InvalidRequest("Too many tokens", fields={"token_ids": f"At most {MAX_BULK_IDS} ids"})


def _matching_query(actor: Actor, rule: BulkRule):
    """The actor's organization's live tokens the rule selects, newest first.

    :raise NotFound: for a token id, user or partner that is not the organization's.
    """
    org_id = actor.organization_id
    query = access.visible_tokens_query(actor).where(ApiToken.revoked_at.is_(None))
    if rule.token_ids:
        ids = set(rule.token_ids)
        if not all(token_format.PUBLIC_ID.fullmatch(public_id) for public_id in ids):
            raise NotFound("No such token")
        known = set(db.session.scalars(access.visible_tokens_query(actor).with_only_columns(ApiToken.public_id)
                                       .where(ApiToken.public_id.in_(ids))))
        if known != ids:
            raise NotFound("No such token")  # the whole batch, never a part of it
        query = query.where(ApiToken.public_id.in_(ids))
    if rule.created_by is not None:
        memberships = select(Membership.id).where(Membership.organization_id == org_id,
                                                  Membership.user_id == rule.created_by)
        if db.session.scalar(select(func.count()).select_from(memberships.subquery())) == 0:
            raise NotFound("No such member")
        query = query.where(ApiToken.created_by_membership_id.in_(memberships))
    if rule.partner_id is not None:
        partner = db.session.get(Partner, rule.partner_id)
        if partner is None or partner.organization_id != org_id:
            raise NotFound("No such partner")
        query = query.where(ApiToken.created_by_membership_id.in_(
            select(Membership.id).where(Membership.organization_id == org_id,
                                        Membership.partner_id == rule.partner_id)))
    if rule.created_before is not None:
        query = query.where(ApiToken.created_at < rule.created_before)
    if rule.previewed is not None:
        query = query.where(ApiToken.public_id.in_(rule.previewed))
    if actor.token is not None:
        # A revocation made with a token never revokes that token: it is answering this very
        # request (revoke it on its own with DELETE /tokens/{id}).
        query = query.where(ApiToken.id != actor.token.id)
    return query.order_by(ApiToken.created_at.desc(), ApiToken.id.desc()).options(
        selectinload(ApiToken.creator).selectinload(Membership.user))


def _item(token: ApiToken) -> BulkItem:
    user = token.creator.user
    return BulkItem(token.public_id, token.name, token.type, token_format.mask(token), user.display_name or user.email,
                    token.created_at, token.is_canary)


def bulk_revoke(actor: Actor, rule: BulkRule, *, dry_run: bool) -> BulkResult:
    """Revoke every live token the rule selects, in one transaction; a dry run only lists them.

    One audit event (`token.bulk_revoked`) lists every token; every token emits `token.revoked`;
    every creator gets one notification. If anything fails, no token is revoked.
    """
    if not may_bulk_revoke(actor):
        raise PermissionDenied("Your role cannot revoke tokens in bulk")
    check_rule(rule)
    query = _matching_query(actor, rule)
    if dry_run:
        result = BulkResult([_item(token) for token in db.session.scalars(query)], dry_run=True)
        db.session.commit()  # end the read
        return result
    with write_transaction() as session:
        # Re-read under the write lock (rows locked on PostgreSQL): a token revoked meanwhile is skipped.
        matched = list(session.scalars(query.with_for_update(of=ApiToken)
                                       .execution_options(populate_existing=True)))
        items = [_item(token) for token in matched]
        for token in matched:
            lifecycle.mark_revoked(token, actor, BULK_REASON, audited=False)
        if matched:
            audit.record(actor, actor.organization_id, "token.bulk_revoked", "organization",
                         str(actor.organization_id),
                         {"count": len(items), "rule": rule.describe(),
                          "tokens": [{"id": item.public_id, "name": item.name, "created_by": item.creator}
                                     for item in items]})
            _notify_creators(actor.organization_id, matched)
    return BulkResult(items, dry_run=False)


def _notify_creators(organization_id: int, revoked: list[ApiToken]) -> None:
    """One notification per creator, naming their tokens."""
    by_creator: dict[int, list[ApiToken]] = defaultdict(list)
    for token in revoked:
        by_creator[token.creator.user_id].append(token)
    for user_id, theirs in by_creator.items():
        if len(theirs) == 1:
            message, token_id = notices.token_message("bulk_revoked", theirs[0]), theirs[0].id
        else:
            names = ", ".join(f"“{token.name}”" for token in theirs)
            message, token_id = f"{len(theirs)} of your tokens were revoked in a bulk revocation: {names}", None
        notices.notify([user_id], organization_id, "bulk_revoked", message, token_id)


@dataclass(frozen=True)
class RuleChoice:
    value: int
    label: str
    live_tokens: int


@dataclass(frozen=True)
class RuleChoices:
    """What the "Bulk revoke by rule" form offers: members and partners that have live tokens."""

    members: list[RuleChoice] = field(default_factory=list)
    partners: list[RuleChoice] = field(default_factory=list)


def rule_choices(actor: Actor) -> RuleChoices:
    if not may_bulk_revoke(actor):
        raise PermissionDenied("Your role cannot revoke tokens in bulk")
    live = (ApiToken.organization_id == actor.organization_id, ApiToken.revoked_at.is_(None))
    members = db.session.execute(
        select(User.id, User.display_name, User.email, func.count(ApiToken.id))
        .join(Membership, Membership.user_id == User.id).join(ApiToken, ApiToken.created_by_membership_id == Membership.id)
        .where(*live).group_by(User.id, User.display_name, User.email).order_by(func.lower(User.email))).all()
    partners = db.session.execute(
        select(Partner.id, Partner.name, func.count(ApiToken.id))
        .join(Membership, Membership.partner_id == Partner.id).join(ApiToken, ApiToken.created_by_membership_id == Membership.id)
        .where(*live).group_by(Partner.id, Partner.name).order_by(func.lower(Partner.name))).all()
    return RuleChoices(
        members=[RuleChoice(user_id, f"{name} ({email})" if name and name != email else email, count)
                 for user_id, name, email, count in members],
        partners=[RuleChoice(partner_id, name, count) for partner_id, name, count in partners])


# --------------------------------------------------------------------------- transfer


def transfer_candidates(actor: Actor, leaving: Membership | None = None) -> list[Membership]:
    """Members who may receive organization and project tokens: live staff members whose role
    may hold tokens (the token then acts with their rights), other than `leaving`."""
    memberships = db.session.scalars(
        select(Membership).join(User, User.id == Membership.user_id)
        .where(Membership.organization_id == actor.organization_id, Membership.removed_at.is_(None),
               Membership.partner_id.is_(None), User.is_active.is_(True))
        .options(selectinload(Membership.user)).order_by(func.lower(User.email))).all()
    return [m for m in memberships if roles.can(m.role, Capability.MANAGE_OWN_TOKENS)
            and (leaving is None or m.id != leaving.id)]


def _transfer_target(actor: Actor, to_user_id: int) -> Membership:
    """The live membership of `to_user_id` in the actor's organization that may receive tokens.

    :raise NotFound: for a user who is not a member of the organization (another org's too).
    """
    target = db.session.scalar(select(Membership).where(
        Membership.organization_id == actor.organization_id, Membership.user_id == to_user_id,
        Membership.removed_at.is_(None)))
    if target is None or not target.user.is_active:
        raise NotFound("No such member")
    if target.partner_id is not None or not roles.can(target.role, Capability.MANAGE_OWN_TOKENS):
        reason = ("Partner users cannot receive organization tokens" if target.partner_id is not None
                  else f"A {target.role.replace('_', ' ')} cannot hold API tokens")
        raise InvalidRequest(reason, fields={"to_user_id": reason})
    return target


def _check_transferable(actor: Actor, token: ApiToken) -> None:
    if not roles.can(actor.role, Capability.TRANSFER_TOKENS):
        raise PermissionDenied("Your role cannot transfer tokens")
    if token.type == TokenType.PERSONAL:
        raise InvalidRequest("Personal tokens cannot be transferred",
                             fields={"token": "Personal tokens act as their creator alone and cannot be transferred"})


def _move(actor: Actor, token: ApiToken, target: Membership) -> None:
    """Inside the caller's write transaction: the new creator, its audit record, event and notices."""
    previous = token.creator.user
    token.created_by_membership_id = target.id
    token.creator = target
    token.updated_at = clock.now()
    db.session.add(token)
    moved = {"from": {"id": previous.id, "email": previous.email},
             "to": {"id": target.user.id, "email": target.user.email}}
    audit.record(actor, token.organization_id, "token.transferred", "token", token.public_id,
                 {"name": token.name, **moved})
    outbox.emit("token.transferred", token.organization_id, token.id,
                {"token": summary.token_summary(token), "from": moved["from"]})
    told = notices.token_recipients(token) | {previous.id}
    notices.notify(told, token.organization_id, "transferred",
                         notices.token_message("transferred", token,
                                                     f"from {previous.email} to {target.user.email}"), token.id)


def _make_room(organization_plan: str, target: Membership, incoming: int) -> None:
    """On the free plan the new creator's live tokens stay within the per-member limit."""
    if organization_plan != Plan.FREE or incoming == 0:
        return
    access.lock_membership(target.id)
    limit = current_app.config["KEYWARD_FREE_TOKEN_LIMIT"]
    if access.active_token_count(target.id) + incoming > limit:
        raise TokenLimitReached(f"The free plan allows {limit} active tokens per member; "
                                f"{target.user.email} has no room for {incoming} more")


def transfer_token(actor: Actor, token: ApiToken, to_user_id: int) -> ApiToken:
    """Make another member the creator of an organization or project token (owners and admins)."""
    _check_transferable(actor, token)
    lifecycle.refuse_if_revoked(token)
    access.check_target_within_caller(actor, token)
    target = _transfer_target(actor, to_user_id)
    if target.id == token.created_by_membership_id:
        raise InvalidRequest("The token already belongs to this member",
                             fields={"to_user_id": "The token already belongs to this member"})
    with write_transaction() as session:
        token = lifecycle.locked_for_update(session, token)
        lifecycle.refuse_if_revoked(token)
        _make_room(token.organization.plan, target, 0 if token.is_canary else 1)
        _move(actor, token, target)
    return token


@dataclass(frozen=True)
class Departure:
    """A member's live tokens as the removal dialog lists them."""

    transferable: list[ApiToken]  # organization and project tokens: may go to another member
    personal: list[ApiToken]  # stop working with the membership

    @property
    def count(self) -> int:
        return len(self.transferable) + len(self.personal)


def departures(actor: Actor) -> dict[int, Departure]:
    """Every member's live tokens, by membership id, in one query (the Members page)."""
    roles.require(actor, Capability.MANAGE_MEMBERS, "Your role cannot manage members")
    found: dict[int, Departure] = {}
    for token in db.session.scalars(
            select(ApiToken).where(ApiToken.organization_id == actor.organization_id, ApiToken.revoked_at.is_(None))
            .options(selectinload(ApiToken.project)).order_by(ApiToken.created_at.desc(), ApiToken.id.desc())):
        departure = found.setdefault(token.created_by_membership_id, Departure([], []))
        (departure.personal if token.type == TokenType.PERSONAL else departure.transferable).append(token)
    return found


def transfer_and_remove(actor: Actor, membership: Membership, to_user_id: int | None) -> list[ApiToken]:
    """Remove a member, first moving their organization and project tokens to `to_user_id` (if
    given): the transfers and the removal commit together, or nothing changes. Returns the moved tokens."""
    if to_user_id is None:
        members.remove_member(actor, membership)
        return []
    if not roles.can(actor.role, Capability.TRANSFER_TOKENS):
        raise PermissionDenied("Your role cannot transfer tokens")
    target = _transfer_target(actor, to_user_id)
    if target.id == membership.id:
        raise InvalidRequest("Choose another member", fields={"to_user_id": "Choose another member"})
    with write_transaction() as session:
        moving = list(session.scalars(
            select(ApiToken).where(ApiToken.organization_id == actor.organization_id,
                                   ApiToken.created_by_membership_id == membership.id,
                                   ApiToken.type != TokenType.PERSONAL, ApiToken.revoked_at.is_(None))
            .order_by(ApiToken.id).with_for_update().execution_options(populate_existing=True)))
        _make_room(membership.organization.plan, target, sum(1 for token in moving if not token.is_canary))
        for token in moving:
            _move(actor, token, target)
        # Checks who may remove whom before changing anything, then commits the whole lot.
        members.remove_member(actor, membership)
    return moving


# --------------------------------------------------------------------------- narrowing


@dataclass(frozen=True)
class NarrowPlan:
    """What `Narrow to what it used` would keep and remove, pair by pair (unknown-labelled pairs
    grant nothing, so they are never used and never in the way: they are kept)."""

    used: frozenset[tuple[str, str]]  # (scope, method) used in the window and allowed now
    keep: dict[str, list[str]]  # the rights after narrowing
    remove: dict[str, list[str]]  # the pairs narrowing takes away, per scope

    @property
    def possible(self) -> bool:
        """Narrowing needs at least one used right (a token keeps at least one pair)."""
        return bool(self.used)

    @property
    def changes(self) -> bool:
        return bool(self.remove)


def narrowing_plan(token: ApiToken, days: int = OBSERVED_DAYS) -> NarrowPlan:
    """Exactly the scope × permission pairs the token used (and may still use) in the last `days`
    days, from the scope × method cells counted on the hot path."""
    used = frozenset((scope, method) for scope, method in usage.observed_rights(token.id, days=days)
                     if rights.decide(token, scope, method).allowed)
    if not used:
        return NarrowPlan(used, dict(token.rights), {})
    keep = rights.narrowed(token.rights, {(scope, rights.method_permission(method))
                                          for scope, method in used})
    remove = rights.from_pairs(rights.pairs(token.rights) - rights.pairs(keep))  # only known pairs go
    return NarrowPlan(used, keep, remove)


def may_narrow(actor: Actor, token: ApiToken) -> bool:
    """Whoever may edit the token (its creator, owners and admins), for a live token that is no canary."""
    if token.revoked_at is not None or token.is_canary:
        return False
    try:
        access.require_capability(actor, token, Capability.EDIT_ANY_TOKEN, "narrow")
    except PermissionDenied:
        return False
    return True


def narrow_token(actor: Actor, token: ApiToken) -> ApiToken:
    """Keep only the scope × permission pairs the token used in the last 30 days (audited
    `token.narrowed`, event `token.updated`). Nothing to remove: the token is answered unchanged."""
    access.require_capability(actor, token, Capability.EDIT_ANY_TOKEN, "narrow")
    lifecycle.refuse_if_revoked(token)
    access.check_target_within_caller(actor, token)
    if token.is_canary:
        raise InvalidRequest("A canary grants nothing: there is nothing to narrow",
                             fields={"token": "A canary grants nothing: there is nothing to narrow"})
    with write_transaction() as session:
        token = lifecycle.locked_for_update(session, token)
        lifecycle.refuse_if_revoked(token)
        plan = narrowing_plan(token)
        if not plan.possible:
            message = (f"The token used none of its rights in the last {OBSERVED_DAYS} days; "
                       "deactivate or revoke it instead")
            raise InvalidRequest(message, fields={"token": message})
        if plan.changes:
            token.rights = plan.keep
            token.updated_at = clock.now()
            session.add(token)
            audit.record(actor, token.organization_id, "token.narrowed", "token", token.public_id,
                         {"name": token.name, "days": OBSERVED_DAYS, "removed": plan.remove,
                          "kept": plan.keep})
            outbox.emit("token.updated", token.organization_id, token.id, {"token": summary.token_summary(token)})
    return token
