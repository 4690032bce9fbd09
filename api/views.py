"""JSON endpoints. Thin: the schema validates, a service in shared/ acts, the view answers."""

from __future__ import annotations

from flask import jsonify

from api.auth import authenticated_token, current_actor
from api.schema import (
    Array,
    Body,
    Boolean,
    Integer,
    Moment,
    String,
    endpoint,
    identifier,
    pagination,
)
from shared.core.netaddr import client_address
from shared.identity import roles
from shared.models import TOKEN_TYPES, TokenType
from shared.tokens import access, leaks, lifecycle, queries, rights, summary, usage
from shared.tokens import payload as token_payload

NO_STORE = {"Cache-Control": "no-store"}
AUTH_ERRORS = {401: "Error", 403: "Error", 429: "Error"}
TOKEN_ERRORS = {**AUTH_ERRORS, 404: "Error", 409: "Error"}

_labels = dict(items=String(max_length=50, min_length=1), min_items=1, max_items=token_payload.MAX_LABELS)
TOKEN_FIELDS = {
    "name": String("1–100 characters, no control characters", min_length=1, max_length=100),
    "description": String("At most 500 characters", max_length=500, nullable=True),
    "permissions": Array(f"Known: {', '.join(roles.KNOWN_PERMISSIONS)}", **_labels),
    "scopes": Array(f"Known: {', '.join(roles.KNOWN_SCOPES)}", **_labels),
    "expires_in_days": Integer("Lifetime in days", minimum=1, maximum=3650, nullable=True),
    "expires_at": Moment("Expiry; null for never", nullable=True),
    "ip_allowlist": Array("IPv4/IPv6 addresses or CIDR ranges",
                          items=String(max_length=64), max_items=token_payload.MAX_ALLOWLIST_ENTRIES, nullable=True),
}
CREATE_TOKEN = Body({
    **TOKEN_FIELDS,
    "type": String("Token type", choices=TOKEN_TYPES, default=TokenType.PERSONAL),
    "project_id": identifier("Project of a project token", nullable=True),
    "canary": Boolean("A canary (owners, admins, security managers): an organization token that grants "
                      "nothing and raises token.canary_used whenever it is presented", default=False),
}, required=("name", "permissions", "scopes"), name="TokenCreate")
UPDATE_TOKEN = Body({**TOKEN_FIELDS, "is_active": Boolean("Active flag")}, name="TokenUpdate")


@endpoint("GET", "/me", summary="Introspect the calling token", scope=None, tag="tokens",
          responses={200: "Me", **AUTH_ERRORS})
def me():
    # Everything here was read by authentication: no further query.
    token = authenticated_token()
    return jsonify({
        "token": summary.token_summary(token),
        "organization": {"id": token.organization_id, "name": token.organization_name,
                         "slug": token.organization_slug},
        "user": {"id": token.creator_user.id, "email": token.creator_user.email, "role": token.creator_role},
    })


@endpoint("GET", "/tokens", summary="List tokens (own; every token of the org for managers)", scope="tokens",
          tag="tokens", responses={200: "TokenList", 400: "Error", **AUTH_ERRORS}, query={
              "name": String("Filter by name (contains)", max_length=100),
              "type": String("Token type", choices=TOKEN_TYPES),
              "status": String("Status", choices=queries.LIST_STATUSES),
              "project_id": identifier("Project"),
              **pagination()})
def list_tokens(query: dict):
    filters = queries.TokenFilters(
        tab="deleted" if query.get("status") == "revoked" else "active", name=query.get("name", "").strip(),
        type=query.get("type", ""), status=query.get("status", ""), project_id=query.get("project_id"),
        page=query["page"], per_page=query["per_page"])
    items, total = queries.list_tokens(current_actor(), filters)
    return jsonify({"items": [summary.token_summary(t) for t in items], "page": filters.page,
                    "per_page": filters.per_page, "total": total})


@endpoint("POST", "/tokens", summary="Create a token (answers its secret, once)", scope="tokens", tag="tokens",
          responses={201: "TokenWithSecret", 400: "Error", **TOKEN_ERRORS}, body=CREATE_TOKEN)
def create_token(body: dict):
    token, secret = lifecycle.create_token(current_actor(), token_payload.parse_token_payload(body, creating=True))
    return jsonify({"token": summary.token_summary(token), "secret": secret}), 201, NO_STORE


@endpoint("GET", "/tokens/<token_id>", summary="Read a token", scope="tokens", tag="tokens",
          responses={200: "Token", **TOKEN_ERRORS})
def get_token(token_id: str):
    return jsonify(summary.token_summary(access.get_token_for(current_actor(), token_id)))


@endpoint("GET", "/tokens/<token_id>/usage", summary="Requests per UTC day, oldest first (days without requests included)",
          scope="tokens", tag="tokens", responses={200: "TokenUsage", 400: "Error", **TOKEN_ERRORS},
          query={"days": Integer("Days back, today included", minimum=1, maximum=90, default=30)})
def token_usage(token_id: str, query: dict):
    token = access.get_token_for(current_actor(), token_id)
    counts = usage.daily_requests([token.id], query["days"])[token.id]
    return jsonify({"days": [{"date": day.isoformat(), "requests": counts.get(day, 0)}
                             for day in usage.days_window(query["days"])]})


@endpoint("GET", "/tokens/<token_id>/rights", summary="Effective rights: every scope × method, allowed or why not",
          scope="tokens", tag="tokens", responses={200: "TokenRights", **TOKEN_ERRORS})
def token_rights(token_id: str):
    return jsonify({"rights": rights.rights_table(access.get_token_for(current_actor(), token_id))})


@endpoint("PATCH", "/tokens/<token_id>", summary="Edit a token (everything but the secret)", scope="tokens",
          tag="tokens", responses={200: "Token", 400: "Error", **TOKEN_ERRORS}, body=UPDATE_TOKEN)
def update_token(token_id: str, body: dict):
    actor = current_actor()
    token = access.get_token_for(actor, token_id)
    data = token_payload.parse_token_payload(body, creating=False)
    return jsonify(summary.token_summary(lifecycle.update_token(actor, token, data)))


@endpoint("DELETE", "/tokens/<token_id>", summary="Revoke a token (final)", scope="tokens", tag="tokens",
          responses={200: "Token", **TOKEN_ERRORS})
def revoke_token(token_id: str):
    actor = current_actor()
    return jsonify(summary.token_summary(lifecycle.revoke_token(actor, access.get_token_for(actor, token_id))))


REGENERATE = Body({"grace_period": String("How long the old value keeps working",
                                           choices=tuple(lifecycle.GRACE_PERIODS), default="none")},
                   name="TokenRegenerate", optional=True)


@endpoint("POST", "/tokens/<token_id>/regenerate",
          summary="New secret; the old value stops at once or after the grace period",
          scope="tokens", tag="tokens", responses={200: "TokenWithSecret", 400: "Error", **TOKEN_ERRORS},
          body=REGENERATE)
def regenerate_token(token_id: str, body: dict):
    actor = current_actor()
    token, secret = lifecycle.regenerate_token(actor, access.get_token_for(actor, token_id),
                                            body.get("grace_period", "none"))
    return jsonify({"token": summary.token_summary(token), "secret": secret}), 200, NO_STORE


@endpoint("POST", "/tokens/<token_id>/end-grace", summary="The previous value stops working now",
          scope="tokens", tag="tokens", responses={200: "Token", **TOKEN_ERRORS})
def end_grace(token_id: str):
    actor = current_actor()
    return jsonify(summary.token_summary(lifecycle.end_grace(actor, access.get_token_for(actor, token_id))))


@endpoint("POST", "/tokens/<token_id>/deactivate", summary="Deactivate a token", scope="tokens", tag="tokens",
          responses={200: "Token", **TOKEN_ERRORS})
def deactivate_token(token_id: str):
    actor = current_actor()
    return jsonify(summary.token_summary(lifecycle.set_active(actor, access.get_token_for(actor, token_id), False)))


@endpoint("POST", "/tokens/<token_id>/reactivate", summary="Reactivate a token", scope="tokens", tag="tokens",
          responses={200: "Token", **TOKEN_ERRORS})
def reactivate_token(token_id: str):
    actor = current_actor()
    return jsonify(summary.token_summary(lifecycle.set_active(actor, access.get_token_for(actor, token_id), True)))


LEAK_REPORT = Body({
    "tokens": Array("The values found (any text; only Keyward tokens are acted on)",
                    items=String(max_length=200), min_items=1, max_items=leaks.MAX_VALUES),
    "url": String("Where they were found", max_length=2000, default=""),
}, required=("tokens",), name="LeakReport")


@endpoint("POST", "/leaks", summary="Report leaked token values (no authentication; live ones are revoked)",
          scope=None, tag="tokens", responses={202: "LeakReceived", 400: "Error", 429: "Error"},
          body=LEAK_REPORT, authenticated=False, address_limit="leak_report")
def report_leaks(body: dict):
    received = leaks.report(body["tokens"], body.get("url", ""), client_address())
    return jsonify({"received": received}), 202
