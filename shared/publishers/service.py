"""Trusted publishers of an organization: register, list, delete, and the exchange itself.

A trusted publisher says: a CI job whose OIDC identity token comes from this issuer, for this
audience, with exactly these claim values, may trade it for a token that acts as the member who
registered the publisher, with the publisher's rights and project, for a few minutes. The
exchange (`exchange`) needs no Keyward credential: the signed identity token is the credential.
"""

from __future__ import annotations

import logging
import re
import secrets
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from shared.audit import record as audit
from shared.audit.record import Actor
from shared.core import clock
from shared.core.dates import iso
from shared.core.db import write_transaction
from shared.core.errors import InvalidRequest, NotFound, PlanRequired, ServiceError
from shared.core.extensions import db
from shared.core.oidc_issuers import GITHUB_ACTIONS_ISSUER, GITLAB_ISSUER, trusted_issuers
from shared.core.validation import FieldErrors, has_control_characters
from shared.events import outbox
from shared.identity import roles
from shared.identity.roles import Capability, require
from shared.models import (
    ApiToken,
    Membership,
    OidcUsedJti,
    Plan,
    Project,
    TokenType,
    TrustedPublisher,
)
from shared.publishers import oidc
from shared.tokens import lifecycle
from shared.tokens.access import check_no_escalation, check_policy, check_role_grants
from shared.tokens.payload import TokenInput, clean_name
from shared.tokens.summary import token_summary

log = logging.getLogger("keyward.publishers")

NOT_ALLOWED = "Your role cannot manage trusted publishers"
PUBLIC_ID = re.compile(r"tp_[0-9a-f]{16}")
MAX_PUBLISHERS = 50  # live publishers per organization
DEFAULT_AUDIENCE = "keyward"
DEFAULT_LIFETIME_MINUTES = 15
MIN_LIFETIME_MINUTES, MAX_LIFETIME_MINUTES = 5, 60  # the table's CHECK holds the same
MAX_CONDITIONS = 10
MAX_CONDITION_VALUE = 500
MAX_AUDIENCE = 200
CLAIM_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
# Checked by the verifier itself (or meaningless: a jti is used once), so never a condition.
RESERVED_CLAIMS = frozenset({"iss", "aud", "exp", "nbf", "iat", "jti"})
# On the shared CI platforms every customer's jobs come from the same issuer: a publisher must
# pin whose jobs it trusts, or `ref: refs/heads/main` alone would match every repository in the
# world. (`job_workflow_ref` does not pin: anyone may call a public reusable workflow.)
PINNING_CLAIMS = {
    GITHUB_ACTIONS_ISSUER: ("repository", "repository_id", "repository_owner", "repository_owner_id", "sub"),
    GITLAB_ISSUER: ("project_path", "project_id", "namespace_path", "namespace_id", "sub"),
}
# A short-lived token must not be a way to a long-lived one: with `tokens` it could regenerate
# (and so obtain the secret of) its member's other tokens.
GRANTABLE_SCOPES = tuple(scope for scope in roles.KNOWN_SCOPES if scope != roles.Scope.TOKENS)
REVOKED_WITH_PUBLISHER = "publisher_deleted"  # revoked_reason of its tokens when a publisher goes
# Used jtis are kept this long past the identity token's expiry, so a server whose clock runs a
# little behind cannot accept a token whose row another server's sweep already deleted.
USED_JTI_MARGIN = timedelta(minutes=10)


@dataclass(frozen=True)
class PublisherListing:
    publisher: TrustedPublisher
    live_tokens: int  # minted tokens neither revoked nor expired: what deleting it revokes


@dataclass(frozen=True)
class Exchanged:
    token: ApiToken
    secret: str
    publisher: TrustedPublisher



def allowed_issuers() -> frozenset[str]:
    configured = current_app.config.get("KEYWARD_OIDC_ISSUERS")
    if configured is None or isinstance(configured, str):  # set by hand (tests, a shell)
        return trusted_issuers(configured)
    return frozenset(configured)


def publisher_summary(publisher: TrustedPublisher, live_tokens: int | None = None) -> dict[str, Any]:
    """The API's trusted publisher object."""
    creator = publisher.creator.user
    summary = {
        "id": publisher.public_id,
        "name": publisher.name,
        "issuer": publisher.issuer,
        "audience": publisher.audience,
        "conditions": dict(publisher.conditions),
        "rights": {scope: list(permissions) for scope, permissions in publisher.rights.items()},
        "project_id": publisher.project_id,
        "lifetime_minutes": publisher.lifetime_minutes,
        "created_at": iso(publisher.created_at),
        "created_by": {"id": creator.id, "email": creator.email},
    }
    if live_tokens is not None:
        summary["live_tokens"] = live_tokens
    return summary


def _live(organization_id: int):
    return select(TrustedPublisher).where(TrustedPublisher.organization_id == organization_id,
                                          TrustedPublisher.deleted_at.is_(None))


def _live_tokens_of(publisher_ids: Collection[int]):
    return select(ApiToken).where(ApiToken.trusted_publisher_id.in_(list(publisher_ids)),
                                  ApiToken.revoked_at.is_(None), ApiToken.expires_at > clock.now())


def list_publishers(actor: Actor) -> list[PublisherListing]:
    """The organization's live publishers, newest first, with how many live tokens each has."""
    require(actor, Capability.MANAGE_TRUSTED_PUBLISHERS, NOT_ALLOWED)
    publishers = list(db.session.scalars(
        _live(actor.organization_id).options(joinedload(TrustedPublisher.creator).joinedload(Membership.user),
                                             joinedload(TrustedPublisher.project))
        .order_by(TrustedPublisher.id.desc())))
    counts: dict[int, int] = {}
    if publishers:
        live = _live_tokens_of([p.id for p in publishers]).subquery()
        counts = dict(db.session.execute(
            select(live.c.trusted_publisher_id, func.count()).group_by(live.c.trusted_publisher_id)).all())
    return [PublisherListing(p, counts.get(p.id, 0)) for p in publishers]


def get_publisher_for(actor: Actor, public_id: str) -> TrustedPublisher:
    """One of the actor's organization's live publishers.

    :raise PermissionDenied: unless the actor may manage trusted publishers
    :raise NotFound: for unknown, deleted and other organizations' ids alike
    """
    require(actor, Capability.MANAGE_TRUSTED_PUBLISHERS, NOT_ALLOWED)
    if not isinstance(public_id, str) or not PUBLIC_ID.fullmatch(public_id):
        raise NotFound("No such trusted publisher")
    publisher = db.session.scalars(
        _live(actor.organization_id).where(TrustedPublisher.public_id == public_id)).first()
    if publisher is None:
        raise NotFound("No such trusted publisher")
    return publisher



def _clean_issuer(value: Any, errors: FieldErrors) -> str | None:
    if isinstance(value, str) and value in allowed_issuers():
        return value
    errors.add("issuer", "Choose one of the issuers this Keyward trusts")
    return None


def _clean_audience(value: Any, errors: FieldErrors) -> str | None:
    if value is None or value == "":
        return DEFAULT_AUDIENCE
    if (not isinstance(value, str) or len(value) > MAX_AUDIENCE or not value.strip()
            or value != value.strip() or has_control_characters(value)):
        errors.add("audience", f"Give the audience the CI job asks for (1–{MAX_AUDIENCE} characters, "
                               "no surrounding spaces), e.g. keyward")
        return None
    return value


def _clean_conditions(value: Any, issuer: str | None, errors: FieldErrors) -> dict[str, str] | None:
    """Claim -> exact value, at least one; on GitHub and GitLab at least one claim that pins the
    repository, project or owner."""
    if not isinstance(value, dict) or not value:
        errors.add("conditions", "Add at least one claim condition (claim and exact value)")
        return None
    if len(value) > MAX_CONDITIONS:
        errors.add("conditions", f"At most {MAX_CONDITIONS} conditions")
        return None
    cleaned: dict[str, str] = {}
    for claim, expected in value.items():
        if not isinstance(claim, str) or not CLAIM_NAME.fullmatch(claim):
            errors.add("conditions", f"'{str(claim)[:100]}' is not a claim name (letters, digits, _ . : -)")
            return None
        if claim in RESERVED_CLAIMS:
            errors.add("conditions", f"'{claim}' is checked by Keyward itself and cannot be a condition")
            return None
        if not isinstance(expected, str) or not expected or len(expected) > MAX_CONDITION_VALUE \
                or has_control_characters(expected):
            errors.add("conditions", f"Give '{claim}' an exact value (1–{MAX_CONDITION_VALUE} characters)")
            return None
        cleaned[claim] = expected
    pinning = PINNING_CLAIMS.get(issuer or "")
    if pinning and not any(claim in cleaned for claim in pinning):
        errors.add("conditions", f"Include at least one of {', '.join(pinning)}: without one, jobs of "
                                 "any repository on the platform could match")
        return None
    return cleaned


def _clean_rights(value: Any, errors: FieldErrors) -> dict[str, list[str]] | None:
    """Scope -> permissions, known labels only, in a stable order."""
    if not isinstance(value, dict) or not value:
        errors.add("rights", "Choose at least one right (a scope and a permission)")
        return None
    cleaned: dict[str, list[str]] = {}
    for scope in value:
        if scope == roles.Scope.TOKENS:
            errors.add("rights", "A trusted publisher cannot grant the tokens scope: a short-lived "
                                 "token must not manage long-lived ones")
            return None
        if scope not in GRANTABLE_SCOPES:
            errors.add("rights", f"Unknown scope '{str(scope)[:50]}'; known: {', '.join(GRANTABLE_SCOPES)}")
            return None
        permissions = value[scope]
        if not isinstance(permissions, list) or not permissions or not all(
                isinstance(p, str) and p in roles.KNOWN_PERMISSIONS for p in permissions):
            errors.add("rights", f"Give '{scope}' a list of permissions from "
                                 f"{', '.join(roles.KNOWN_PERMISSIONS)}")
            return None
    for scope in GRANTABLE_SCOPES:
        if scope in value:
            cleaned[scope] = [p for p in roles.KNOWN_PERMISSIONS if p in value[scope]]
    return cleaned


def _clean_project(actor: Actor, value: Any, errors: FieldErrors) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        errors.add("project_id", "project_id must be a project's id or null")
        return None
    project = db.session.get(Project, value)
    if project is None or project.organization_id != actor.organization_id:
        errors.add("project_id", "No such project")
        return None
    return value


def _clean_lifetime(value: Any, errors: FieldErrors) -> int | None:
    if value is None:
        return DEFAULT_LIFETIME_MINUTES
    if isinstance(value, bool) or not isinstance(value, int) \
            or not MIN_LIFETIME_MINUTES <= value <= MAX_LIFETIME_MINUTES:
        errors.add("lifetime_minutes",
                   f"Give a lifetime from {MIN_LIFETIME_MINUTES} to {MAX_LIFETIME_MINUTES} minutes")
        return None
    return value


def _check_grants(actor: Actor, rights: dict[str, list[str]], project_id: int | None,
                  errors: FieldErrors) -> None:
    """The tokens it mints pass the same checks as a token the registering member creates: within
    the member's role, the organization's policy and (registered through the API) the calling token."""
    data = TokenInput(rights=rights)
    found = FieldErrors()
    check_role_grants(actor.role, data, found)
    check_policy(actor.membership.organization, data, found, expiry_field="lifetime_minutes")
    if actor.token is not None:
        check_no_escalation(actor.token, data, found, project_id=project_id, expiry_field="lifetime_minutes",
                            kind=TokenType.PROJECT if project_id is not None else TokenType.PERSONAL)
        if actor.token.ip_allowlist:
            found.add("body", "A token restricted to an IP allowlist cannot register a trusted publisher: "
                              "the tokens it mints are used from CI runners anywhere")
    renamed = {"permissions": "rights", "scopes": "rights", "type": "project_id"}  # the publisher's fields
    for field, message in found.errors.items():
        errors.add(renamed.get(field, field), message)


def register_publisher(actor: Actor, *, name: Any, issuer: Any, conditions: Any, rights: Any,
                       audience: Any = DEFAULT_AUDIENCE, project_id: Any = None,
                       lifetime_minutes: Any = DEFAULT_LIFETIME_MINUTES) -> TrustedPublisher:
    """A new trusted publisher acting as `actor`'s member (owners and admins).

    :raise InvalidRequest: with every field's problem
    """
    require(actor, Capability.MANAGE_TRUSTED_PUBLISHERS, NOT_ALLOWED)
    org = actor.membership.organization
    if org.plan == Plan.NONE:
        raise PlanRequired("Choose a plan to create API tokens")
    errors = FieldErrors()
    cleaned_name = clean_name(name, errors)
    cleaned_issuer = _clean_issuer(issuer, errors)
    cleaned_audience = _clean_audience(audience, errors)
    cleaned_conditions = _clean_conditions(conditions, cleaned_issuer, errors)
    cleaned_rights = _clean_rights(rights, errors)
    cleaned_project = _clean_project(actor, project_id, errors)
    cleaned_lifetime = _clean_lifetime(lifetime_minutes, errors)
    if cleaned_rights and "project_id" not in errors.errors:
        _check_grants(actor, cleaned_rights, cleaned_project, errors)
    if org.policy_require_allowlist:
        errors.add("body", "Your organization requires an IP allowlist on every token; tokens for CI jobs "
                           "cannot have one, so trusted publishers are unavailable")
    errors.raise_if_any()

    with write_transaction() as session:
        live = session.scalar(select(func.count()).select_from(_live(actor.organization_id).subquery()))
        if live >= MAX_PUBLISHERS:
            raise InvalidRequest(
                f"An organization has at most {MAX_PUBLISHERS} trusted publishers; delete one first")
        publisher = TrustedPublisher(
            public_id="tp_" + secrets.token_hex(8), organization_id=actor.organization_id,
            created_by_membership_id=actor.membership.id, name=cleaned_name, issuer=cleaned_issuer,
            audience=cleaned_audience, conditions=cleaned_conditions, rights=cleaned_rights,
            project_id=cleaned_project, lifetime_minutes=cleaned_lifetime, created_at=clock.now())
        session.add(publisher)
        session.flush()
        audit.record(actor, actor.organization_id, "trusted_publisher.created", "trusted_publisher",
                     publisher.public_id, _describe(publisher))
    return publisher


def _describe(publisher: TrustedPublisher) -> dict[str, Any]:
    return {"name": publisher.name, "issuer": publisher.issuer, "audience": publisher.audience,
            "conditions": dict(publisher.conditions), "rights": dict(publisher.rights),
            "project_id": publisher.project_id, "lifetime_minutes": publisher.lifetime_minutes}


def delete_publisher(actor: Actor, publisher: TrustedPublisher) -> tuple[TrustedPublisher, list[ApiToken]]:
    """Delete the publisher and, in the same transaction, revoke every live token it minted.
    Returns the publisher and the revoked tokens."""
    require(actor, Capability.MANAGE_TRUSTED_PUBLISHERS, NOT_ALLOWED)
    with write_transaction() as session:
        # Locked: an exchange in flight either committed its token before (revoked here) or
        # waits and then finds the publisher deleted.
        publisher = session.scalars(select(TrustedPublisher).where(TrustedPublisher.id == publisher.id)
                                    .with_for_update().execution_options(populate_existing=True)).one()
        if publisher.deleted_at is not None:
            raise NotFound("No such trusted publisher")
        publisher.deleted_at = clock.now()
        publisher.deleted_by_user_id = actor.user_id
        session.add(publisher)
        revoked = list(session.scalars(_live_tokens_of([publisher.id]).order_by(ApiToken.id).with_for_update()
                                       .execution_options(populate_existing=True)))
        for token in revoked:
            lifecycle.mark_revoked(token, actor, REVOKED_WITH_PUBLISHER,
                                   {"trusted_publisher": publisher.public_id})
        audit.record(actor, publisher.organization_id, "trusted_publisher.deleted", "trusted_publisher",
                     publisher.public_id, {"name": publisher.name, "revoked": [t.public_id for t in revoked]})
    return publisher, revoked



class _Replayed(Exception):
    pass


def _audiences_for(issuer: str) -> list[str]:
    return list(db.session.scalars(select(TrustedPublisher.audience).distinct().where(
        TrustedPublisher.issuer == issuer, TrustedPublisher.deleted_at.is_(None))))


def _candidates(identity: oidc.VerifiedIdentity, publisher_id: str | None) -> list[TrustedPublisher]:
    """Live publishers of the token's issuer expecting one of its audiences, whose conditions all
    match and whose registering member may still act."""
    query = (select(TrustedPublisher)
             .join(Membership, Membership.id == TrustedPublisher.created_by_membership_id)
             .where(TrustedPublisher.issuer == identity.issuer, TrustedPublisher.deleted_at.is_(None),
                    TrustedPublisher.audience.in_(identity.audiences), Membership.removed_at.is_(None))
             .options(joinedload(TrustedPublisher.creator).joinedload(Membership.user),
                      joinedload(TrustedPublisher.creator).joinedload(Membership.partner),
                      joinedload(TrustedPublisher.creator).joinedload(Membership.organization))
             .order_by(TrustedPublisher.id))
    if publisher_id is not None:
        query = query.where(TrustedPublisher.public_id == publisher_id)
    return [publisher for publisher in db.session.scalars(query).unique()
            if publisher.creator.is_live and oidc.conditions_match(publisher.conditions, identity.claims)]


def _printable(text: str, limit: int) -> str:
    return "".join(ch for ch in text if unicodedata.category(ch) not in {"Cc", "Cs"})[:limit]


def _claim_text(identity: oidc.VerifiedIdentity, name: str) -> str | None:
    value = identity.claims.get(name)
    return _printable(value, 300) if isinstance(value, str) else None


def _identity_details(identity: oidc.VerifiedIdentity) -> dict[str, Any]:
    """What the audit keeps of an identity token: never the token itself."""
    return {"issuer": identity.issuer, "sub": _claim_text(identity, "sub"),
            "jti": _printable(identity.jti, 255)}


def _token_input(publisher: TrustedPublisher, identity: oidc.VerifiedIdentity) -> TokenInput:
    subject = _claim_text(identity, "sub") or identity.issuer
    return TokenInput(
        name=publisher.name, description=_printable(f"Minted for {subject}", 500),
        type=TokenType.PROJECT if publisher.project_id is not None else TokenType.PERSONAL,
        project_id=publisher.project_id, rights={scope: list(held) for scope, held in publisher.rights.items()},
        expires_at=clock.now() + timedelta(minutes=publisher.lifetime_minutes), ip_allowlist=[],
        trusted_publisher_id=publisher.id)


def _record_refusal(publisher: TrustedPublisher, reason: str, message: str, identity: oidc.VerifiedIdentity,
                    address: str | None, user_agent: str | None) -> None:
    """A refusal whose organization is known (the token matched one of its publishers): audited."""
    organization_id, public_id = publisher.organization_id, publisher.public_id
    with write_transaction():
        audit.record(None, organization_id, "token.exchange_refused", "trusted_publisher", public_id,
                     {"reason": reason, "message": message, **_identity_details(identity)},
                     source_ip=address, user_agent=user_agent)


def exchange(raw_jwt: str, address: str | None, user_agent: str | None, *,
             publisher_id: str | None = None) -> Exchanged:
    """Trade a CI job's OIDC identity token for a short-lived Keyward token.

    `publisher_id` (optional) names the publisher meant, for when several would match.

    :raise oidc.OidcRefused: with the reason (signature, expired, audience, issuer,
        no_matching_publisher, replayed); `oidc.IssuerUnavailable` when the issuer's keys cannot be had
    :raise ServiceError: the token the publisher would mint breaks a rule of its organization now
        (plan, policy, the member's role)
    """
    try:
        identity = oidc.verify_oidc_token(raw_jwt, allowed_issuers=allowed_issuers(),
                                          audience_for=_audiences_for)
        if publisher_id is not None and not PUBLIC_ID.fullmatch(publisher_id):
            raise oidc.OidcRefused(oidc.RefusalReason.NO_MATCHING_PUBLISHER, "no such trusted publisher")
        candidates = _candidates(identity, publisher_id)
        if not candidates:
            raise oidc.OidcRefused(oidc.RefusalReason.NO_MATCHING_PUBLISHER,
                                   "no trusted publisher matches this token's issuer, audience and claims")
        if len(candidates) > 1:
            # Choosing one would hand the job another organization's token, or other rights, than
            # its owner meant: refused until the request names its publisher.
            raise oidc.OidcRefused(oidc.RefusalReason.NO_MATCHING_PUBLISHER,
                                   f"ambiguous: {len(candidates)} trusted publishers match this token; "
                                   "name yours with trusted_publisher_id")
    except oidc.OidcRefused as refused:
        # No organization is known yet: a log line (never the token) instead of an audit record.
        log.log(logging.WARNING if isinstance(refused, oidc.IssuerUnavailable) else logging.INFO,
                "OIDC exchange refused from %s: %s (%s)", address, refused.reason.value, refused.message)
        raise

    publisher = candidates[0]
    actor = Actor(membership=publisher.creator, ip=address, user_agent=user_agent)
    data = _token_input(publisher, identity)
    try:
        with write_transaction() as session:
            # Shared lock: exchanges run side by side, a deletion waits for them (and they for it).
            current = session.scalars(
                select(TrustedPublisher).where(TrustedPublisher.id == publisher.id)
                .with_for_update(read=True).execution_options(populate_existing=True)).one()
            if current.deleted_at is not None:
                raise oidc.OidcRefused(oidc.RefusalReason.NO_MATCHING_PUBLISHER,
                                       "the matching trusted publisher was just deleted")
            used = OidcUsedJti(issuer=identity.issuer, jti=identity.jti, expires_at=identity.expires_at,
                               exchanged_at=clock.now(), publisher_id=publisher.id)
            session.add(used)
            try:
                session.flush()  # the unique (issuer, jti) decides, however many race
            except IntegrityError:
                raise _Replayed from None
            token, secret = lifecycle.create_token(actor, data, expiry_field="lifetime_minutes")
            used.token_id = token.id
            reference = {"id": publisher.public_id, "name": publisher.name}
            audit.record(actor, publisher.organization_id, "token.exchanged", "token", token.public_id, {
                "trusted_publisher": reference,
                "claims": {claim: identity.claims[claim] for claim in publisher.conditions},
                **_identity_details(identity),
                "expires_at": iso(token.expires_at),
            })
            outbox.emit("token.exchanged", token.organization_id, token.id,
                        {"token": token_summary(token), "trusted_publisher": reference})
    except _Replayed:
        message = "this identity token was already exchanged"
        _record_refusal(publisher, oidc.RefusalReason.REPLAYED, message, identity, address, user_agent)
        raise oidc.OidcRefused(oidc.RefusalReason.REPLAYED, message) from None
    except ServiceError as error:
        error.message = f"The trusted publisher '{publisher.name}' cannot mint a token: {error.message}"
        _record_refusal(publisher, error.code, error.message, identity, address, user_agent)
        raise
    return Exchanged(token, secret, publisher)


def forget_used_jtis() -> int:
    """Delete the used-jti rows of identity tokens that expired (the worker's sweep); how many."""
    with write_transaction() as session:
        result = session.execute(
            delete(OidcUsedJti).where(OidcUsedJti.expires_at < clock.now() - USED_JTI_MARGIN))
    return result.rowcount or 0
