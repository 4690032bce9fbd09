"""Trusted publishers over the API: register, list, delete (scope `tokens`, owners and admins), and
the exchange of a CI job's OIDC identity token for a short-lived token (no Keyward token). Thin views.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import jsonify, request

from api.auth import current_actor
from api.errors import error_response
from api.openapi import RESPONSES
from api.schema import Body, Field, FieldError, Integer, String, endpoint, identifier, pagination
from shared.core import ratelimits
from shared.core.netaddr import client_address
from shared.identity import roles
from shared.publishers import oidc, service
from shared.tokens.summary import token_summary

NO_STORE = {"Cache-Control": "no-store"}
ERRORS = {401: "Error", 403: "Error", 429: "Error"}
FAILURES = "oidc"  # KEYWARD_OIDC_FAILURE_LIMIT: refused exchanges per client address


@dataclass
class Conditions(Field):
    """Claim name -> the exact string value the identity token must carry."""

    def _schema(self) -> dict:
        value = {"type": "string", "minLength": 1, "maxLength": service.MAX_CONDITION_VALUE}
        return {"type": "object", "minProperties": 1, "maxProperties": service.MAX_CONDITIONS,
                "additionalProperties": value}

    def _from_json(self, value: Any) -> dict:
        if not isinstance(value, dict):
            raise FieldError("Must be an object of claim names and exact values")
        for claim, expected in value.items():
            String(max_length=service.MAX_CONDITION_VALUE).from_json(expected)  # text PostgreSQL can store
            String(max_length=100).from_json(claim)
        return value


@dataclass
class Rights(Field):
    """Scope -> the permissions granted on it."""

    def _schema(self) -> dict:
        permissions = {"type": "array", "minItems": 1, "maxItems": len(roles.KNOWN_PERMISSIONS),
                       "items": {"type": "string", "enum": list(roles.KNOWN_PERMISSIONS)}}
        return {"type": "object", "minProperties": 1, "additionalProperties": permissions}

    def _from_json(self, value: Any) -> dict:
        if not isinstance(value, dict):
            raise FieldError("Must be an object of scopes and permission lists")
        for scope in value:
            String(max_length=50).from_json(scope)
        return value


CREATE_PUBLISHER = Body({
    "name": String("1–100 characters, no control characters", min_length=1, max_length=100),
    "issuer": String("The CI platform's OIDC issuer: https://token.actions.githubusercontent.com, "
                     "https://gitlab.com, or one listed in KEYWARD_OIDC_ISSUERS",
                     min_length=1, max_length=500),
    "audience": String("The audience the job requests its identity token for",
                       max_length=service.MAX_AUDIENCE, default=service.DEFAULT_AUDIENCE),
    "conditions": Conditions("Claims the identity token must carry with exactly these values, e.g. "
                             "repository and ref; on GitHub and GitLab one must pin the repository, "
                             "project or owner"),
    "rights": Rights("Permissions per scope the minted tokens hold (within your role; not `tokens`); "
                     "for now every scope needs the same permissions"),
    "project_id": identifier("Project the minted tokens are bound to (project tokens); "
                             "null: personal tokens", nullable=True),
    "lifetime_minutes": Integer("Lifetime of each minted token", minimum=service.MIN_LIFETIME_MINUTES,
                                maximum=service.MAX_LIFETIME_MINUTES,
                                default=service.DEFAULT_LIFETIME_MINUTES),
}, required=("name", "issuer", "conditions", "rights"), name="TrustedPublisherCreate")

EXCHANGE = Body({
    "token": String("The CI job's OIDC identity token (a JWT)", min_length=1,
                    max_length=oidc.MAX_TOKEN_CHARS),
    "trusted_publisher_id": String("The publisher meant, when several would match the identity token",
                                   max_length=40),
}, required=("token",), name="OidcExchange")


def _object(properties: dict, required: list[str] | None = None) -> dict:
    return {"type": "object", "properties": properties, "required": required or list(properties)}


_STRING, _INTEGER = {"type": "string"}, {"type": "integer"}
_STRINGS = {"type": "object", "additionalProperties": _STRING}
# The objects these endpoints answer, in the served OpenAPI document beside the others.
RESPONSES.update({
    "TrustedPublisher": _object({
        "id": _STRING, "name": _STRING, "issuer": _STRING, "audience": _STRING, "conditions": _STRINGS,
        "rights": {"type": "object", "additionalProperties": {"type": "array", "items": _STRING}},
        "project_id": {"type": "integer", "nullable": True}, "lifetime_minutes": _INTEGER,
        "created_at": {"type": "string", "format": "date-time"},
        "created_by": _object({"id": _INTEGER, "email": _STRING}),
        "live_tokens": _INTEGER,
    }, ["id", "name", "issuer", "audience", "conditions", "rights", "project_id", "lifetime_minutes",
        "created_at", "created_by"]),
    "TrustedPublisherList": _object({
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/TrustedPublisher"}},
        "page": _INTEGER, "per_page": _INTEGER, "total": _INTEGER}),
    "TrustedPublisherDeleted": _object({
        "trusted_publisher": {"$ref": "#/components/schemas/TrustedPublisher"},
        "revoked": {"type": "array", "items": _STRING}}),
    "TokenExchanged": _object({
        "token": {"$ref": "#/components/schemas/Token"},
        "secret": {"type": "string", "pattern": "^[A-Za-z0-9_]+$"},
        "trusted_publisher": _object({"id": _STRING, "name": _STRING})}),
    "OidcError": _object({"error": _object({
        "code": _STRING, "message": _STRING,
        "reason": {"type": "string", "enum": [reason.value for reason in oidc.RefusalReason]},
        "fields": _STRINGS}, ["code", "message"])}),
})


@endpoint("GET", "/trusted-publishers", summary="List the organization's trusted publishers", scope="tokens",
          tag="trusted publishers", responses={200: "TrustedPublisherList", 400: "Error", **ERRORS},
          query=pagination())
def list_trusted_publishers(query: dict):
    listings = service.list_publishers(current_actor())
    page, per_page = query["page"], query["per_page"]
    shown = listings[(page - 1) * per_page:page * per_page]
    return jsonify({"items": [service.publisher_summary(item.publisher, item.live_tokens) for item in shown],
                    "page": page, "per_page": per_page, "total": len(listings)})


@endpoint("POST", "/trusted-publishers", summary="Register a trusted publisher (a CI identity that may "
          "exchange its OIDC token for a short-lived token)", scope="tokens", tag="trusted publishers",
          responses={201: "TrustedPublisher", 400: "Error", **ERRORS}, body=CREATE_PUBLISHER)
def create_trusted_publisher(body: dict):
    publisher = service.register_publisher(current_actor(), **body)
    return jsonify(service.publisher_summary(publisher, 0)), 201


@endpoint("DELETE", "/trusted-publishers/<publisher_id>", summary="Delete a trusted publisher and revoke "
          "its live tokens", scope="tokens", tag="trusted publishers",
          responses={200: "TrustedPublisherDeleted", 404: "Error", **ERRORS})
def delete_trusted_publisher(publisher_id: str):
    actor = current_actor()
    publisher, revoked = service.delete_publisher(actor, service.get_publisher_for(actor, publisher_id))
    return jsonify({"trusted_publisher": service.publisher_summary(publisher, 0),
                    "revoked": [token.public_id for token in revoked]})


@endpoint("POST", "/oidc/exchange", summary="Exchange a CI job's OIDC identity token for a short-lived token "
          "(no authentication; answers the secret once)", scope=None, tag="trusted publishers",
          responses={201: "TokenExchanged", 400: "Error", 401: "OidcError", 403: "Error", 429: "Error",
                     503: "OidcError"},
          body=EXCHANGE, authenticated=False, address_limit="oidc_exchange")
def exchange_oidc_token(body: dict):
    address = client_address()
    ratelimits.refuse_if_failing(FAILURES, address)
    try:
        exchanged = service.exchange(body["token"], address, request.headers.get("User-Agent"),
                                     publisher_id=body.get("trusted_publisher_id"))
    except oidc.IssuerUnavailable as unavailable:
        # The identity token may be fine: the job should retry, and no failure is counted against it.
        response = error_response(503, "issuer_unavailable", unavailable.message,
                                  reason=unavailable.reason.value)
        response.headers["Retry-After"] = str(int(oidc.FAILED_FETCH_BACKOFF.total_seconds()))
        return response
    except oidc.OidcRefused as refused:
        ratelimits.count_failure(FAILURES, address)
        return error_response(401, "invalid_oidc_token", refused.message, reason=refused.reason.value)
    publisher = exchanged.publisher
    return jsonify({"token": token_summary(exchanged.token), "secret": exchanged.secret,
                    "trusted_publisher": {"id": publisher.public_id, "name": publisher.name}}), 201, NO_STORE
