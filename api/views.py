"""JSON endpoints. Thin: parse, call a service in shared/, answer."""

from __future__ import annotations

from flask import g, jsonify, request

from api import bp
from api.auth import current_actor, token_required
from api.params import QueryParams
from shared import tokens
from shared.errors import InvalidRequest
from shared.models import TokenType

NO_STORE = {"Cache-Control": "no-store"}


def _json_body() -> dict:
    payload = request.get_json(silent=True)
    if payload is None:
        raise InvalidRequest("Send a JSON object with Content-Type: application/json",
                             fields={"body": "Expected a JSON object"})
    return payload


@bp.get("/me")
@token_required()
def me():
    token = g.api_token
    org = token.organization
    user = token.creator.user
    return jsonify({
        "token": tokens.token_summary(token),
        "organization": {"id": org.id, "name": org.name, "slug": org.slug},
        "user": {"id": user.id, "email": user.email, "role": token.creator.role},
    })


@bp.get("/tokens")
@token_required("tokens")
def list_tokens():
    params = QueryParams({"name", "type", "status", "project_id", "page", "per_page"})
    filters = tokens.TokenFilters(
        tab="deleted" if request.args.get("status") == "revoked" else "active",
        name=params.text("name", 100),
        type=params.choice("type", TokenType.ALL),
        status=params.choice("status", tokens.LIST_STATUSES),
        project_id=params.integer("project_id", minimum=1),
        page=params.integer("page", default=1, minimum=1, maximum=100_000),
        per_page=params.integer("per_page", default=25, minimum=1, maximum=100),
    )
    params.done()
    items, total = tokens.list_tokens(current_actor(), filters)
    return jsonify({"items": [tokens.token_summary(t) for t in items], "page": filters.page,
                    "per_page": filters.per_page, "total": total})


@bp.post("/tokens")
@token_required("tokens")
def create_token():
    data = tokens.parse_token_payload(_json_body(), creating=True)
    token, secret = tokens.create_token(current_actor(), data)
    return jsonify({"token": tokens.token_summary(token), "secret": secret}), 201, NO_STORE


@bp.get("/tokens/<token_id>")
@token_required("tokens")
def get_token(token_id: str):
    return jsonify(tokens.token_summary(tokens.get_token_for(current_actor(), token_id)))


@bp.patch("/tokens/<token_id>")
@token_required("tokens")
def update_token(token_id: str):
    actor = current_actor()
    token = tokens.get_token_for(actor, token_id)
    data = tokens.parse_token_payload(_json_body(), creating=False)
    return jsonify(tokens.token_summary(tokens.update_token(actor, token, data)))


@bp.delete("/tokens/<token_id>")
@token_required("tokens")
def revoke_token(token_id: str):
    actor = current_actor()
    token = tokens.get_token_for(actor, token_id)
    return jsonify(tokens.token_summary(tokens.revoke_token(actor, token)))


@bp.post("/tokens/<token_id>/regenerate")
@token_required("tokens")
def regenerate_token(token_id: str):
    actor = current_actor()
    token, secret = tokens.regenerate_token(actor, tokens.get_token_for(actor, token_id))
    return jsonify({"token": tokens.token_summary(token), "secret": secret}), 200, NO_STORE


@bp.post("/tokens/<token_id>/deactivate")
@token_required("tokens")
def deactivate_token(token_id: str):
    actor = current_actor()
    token = tokens.set_active(actor, tokens.get_token_for(actor, token_id), False)
    return jsonify(tokens.token_summary(token))


@bp.post("/tokens/<token_id>/reactivate")
@token_required("tokens")
def reactivate_token(token_id: str):
    actor = current_actor()
    token = tokens.set_active(actor, tokens.get_token_for(actor, token_id), True)
    return jsonify(tokens.token_summary(token))
