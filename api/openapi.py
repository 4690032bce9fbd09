"""GET /api/v1/openapi.json: generated from the registered endpoints and their schemas."""

from __future__ import annotations

import re

from flask import current_app, jsonify

from api.blueprint import bp
from api.schema import MAX_ID, OPERATIONS
from shared.identity.roles import KNOWN_SCOPES

_NULLABLE_TIME = {"type": "string", "format": "date-time", "nullable": True}
_TIME = {"type": "string", "format": "date-time"}


def _object(properties: dict, required: list[str] | None = None) -> dict:
    return {"type": "object", "properties": properties, "required": required or list(properties)}


def _list_of(ref: str) -> dict:
    return _object({"items": {"type": "array", "items": {"$ref": f"#/components/schemas/{ref}"}},
                    "page": {"type": "integer"}, "per_page": {"type": "integer"}, "total": {"type": "integer"}})


# What the endpoints answer (shared.tokens.token_summary, shared.documents.*_summary).
RESPONSES = {
    "Error": _object({"error": _object({
        "code": {"type": "string"}, "message": {"type": "string"},
        "fields": {"type": "object", "additionalProperties": {"type": "string"}},
        "required": {"type": "object", "properties": {"scope": {"type": "string"}, "permission": {"type": "string"}}},
        "request_id": {"type": "string"},
    }, ["code", "message"])}),
    "Token": _object({
        "id": {"type": "string"}, "name": {"type": "string"}, "description": {"type": "string"},
        "type": {"type": "string", "enum": ["personal", "organization", "project"]},
        "project_id": {"type": "integer", "nullable": True},
        "rights": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}},
                   "description": "For each scope, the permissions the token has there"},
        "permissions": {"type": "array", "items": {"type": "string"},
                        "description": "Every permission the token has on some scope (older shape)"},
        "scopes": {"type": "array", "items": {"type": "string"},
                   "description": "The scopes the token has any permission on (older shape)"},
        "ip_allowlist": {"type": "array", "items": {"type": "string"}},
        "masked": {"type": "string"},
        "status": {"type": "string", "enum": ["active", "inactive", "expired", "revoked"]},
        "is_active": {"type": "boolean"}, "created_at": _TIME, "expires_at": _NULLABLE_TIME,
        "last_used_at": _NULLABLE_TIME, "last_used_ip": {"type": "string", "nullable": True},
        "usage_count": {"type": "integer"}, "documents_processed": {"type": "integer"},
        "revoked_at": _NULLABLE_TIME,
        "revoked_reason": {"type": "string", "nullable": True},
        "previous_expires_at": _NULLABLE_TIME,
        "canary": {"type": "boolean"}, "canary_trips": {"type": "integer"},
        "created_by": _object({"id": {"type": "integer"}, "email": {"type": "string"}}),
    }),
    "TokenWithSecret": _object({"token": {"$ref": "#/components/schemas/Token"},
                                "secret": {"type": "string", "pattern": "^[A-Za-z0-9_]+$"}}),
    "TokenList": _list_of("Token"),
    "LeakReceived": _object({"received": {"type": "integer"}}),
    "BulkRevokeResult": _object({"revoked": {"type": "integer"}, "would_revoke": {"type": "integer"},
                                 "ids": {"type": "array", "items": {"type": "string"}}}, ["ids"]),
    "TokenUsage": _object({"days": {"type": "array", "items": _object({
        "date": {"type": "string", "format": "date"}, "requests": {"type": "integer"}})}}),
    "TokenRights": _object({"rights": {"type": "array", "items": _object({
        "scope": {"type": "string"}, "method": {"type": "string", "enum": ["GET", "POST", "PATCH", "DELETE"]},
        "allowed": {"type": "boolean"}, "reason": {"type": "string", "nullable": True}})}}),
    "Me": _object({
        "token": {"$ref": "#/components/schemas/Token"},
        "organization": _object({"id": {"type": "integer"}, "name": {"type": "string"}, "slug": {"type": "string"}}),
        "user": _object({"id": {"type": "integer"}, "email": {"type": "string"}, "role": {"type": "string"}}),
    }),
    "Document": _object({
        "id": {"type": "integer"}, "title": {"type": "string"}, "body": {"type": "string"},
        "status": {"type": "string", "enum": ["draft", "published", "archived"]},
        "project_id": {"type": "integer", "nullable": True},
        "visibility_group_id": {"type": "integer", "nullable": True},
        "partner_id": {"type": "integer", "nullable": True},
        "created_by_token_id": {"type": "string", "nullable": True},
        "created_at": _TIME, "updated_at": _TIME,
    }),
    "DocumentList": _list_of("Document"),
    "Project": _object({"id": {"type": "integer"}, "name": {"type": "string"},
                        "organization_id": {"type": "integer"}, "created_at": _TIME}),
    "ProjectList": _list_of("Project"),
    "Template": _object({"id": {"type": "integer"}, "name": {"type": "string"}, "body": {"type": "string"}}),
    "TemplateList": _list_of("Template"),
    "Usage": _object({"days": {"type": "integer"}, "items": {"type": "array", "items": _object({
        "token_id": {"type": "string"}, "name": {"type": "string"},
        "usage": {"type": "array", "items": _object({"date": {"type": "string", "format": "date"},
                                                     "requests": {"type": "integer"}})}})}}),
    "Webhook": _object({
        "id": {"type": "string"}, "url": {"type": "string"},
        "event_types": {"type": "array", "items": {"type": "string"}},
        "status": {"type": "string", "enum": ["active", "disabled"]}, "is_active": {"type": "boolean"},
        "disabled_reason": {"type": "string", "nullable": True}, "consecutive_failures": {"type": "integer"},
        "created_at": _TIME,
    }),
    "WebhookWithSecret": _object({"webhook": {"$ref": "#/components/schemas/Webhook"},
                                  "secret": {"type": "string", "pattern": "^whsec_[0-9a-f]{64}$"}}),
    "WebhookList": _list_of("Webhook"),
    "Billing": _object({"plan": {"type": "string"}, "credit_balance": {"type": "integer"},
                        "rate_limit": {"type": "string"},
                        "token_limit_per_member": {"type": "integer", "nullable": True}}),
}

_DESCRIPTIONS = {200: "OK", 201: "Created", 204: "No content", 400: "Invalid request (`invalid_request`, `fields`)",
                 401: "Missing, malformed, unknown, revoked, inactive or expired token",
                 403: "Refused: IP, plan, scope or permission", 404: "Not found (also another organization's ids)",
                 409: "Conflict: token limit reached, the token is revoked or minted by a trusted publisher",
                 429: "Rate limited (`Retry-After`)",
                 503: "Temporarily unavailable (`Retry-After`)"}
_RATE_HEADERS = {name: {"schema": {"type": "integer"}, "description": text} for name, text in (
    ("X-RateLimit-Limit", "Requests allowed in the window"),
    ("X-RateLimit-Remaining", "Requests left in the window"),
    ("X-RateLimit-Reset", "Unix time when the window resets"))}


_VARIABLE = r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>"


def _path(rule: str) -> tuple[str, list[dict]]:
    parameters = []
    for converter, name in re.findall(_VARIABLE, rule):
        schema = ({"type": "integer", "minimum": 1, "maximum": MAX_ID} if converter == "int"
                  else {"type": "string", "maxLength": 32})
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    return re.sub(_VARIABLE, r"{\2}", rule), parameters


def _response(status: int, schema: str) -> dict:
    response: dict = {"description": _DESCRIPTIONS.get(status, "")}
    if status == 200 and schema == "Export":
        response["content"] = {"application/x-ndjson": {"schema": {"type": "string"}}}
    elif schema:
        response["content"] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    if status != 401:
        response["headers"] = _RATE_HEADERS
    return response


def build_document() -> dict:
    paths: dict = {}
    for op in OPERATIONS:
        path, parameters = _path(op.rule)
        parameters += [{"name": name, "in": "query", "required": False, "schema": field.openapi()}
                       for name, field in op.query.items()]
        entry: dict = {
            "summary": op.summary,
            "operationId": f"{op.method.lower()}_{re.sub(r'[^a-z0-9]+', '_', path.lower()).strip('_')}",
            "tags": [op.tag],
            "parameters": parameters,
            "responses": {str(status): _response(status, schema) for status, schema in sorted(op.responses.items())},
        }
        if op.scope:
            entry["description"] = f"Needs scope `{op.scope}` and the method's permission."
        if op.body is not None:
            entry["requestBody"] = {"required": not op.body.optional,
                                    "content": {"application/json": {"schema": op.body.openapi()}}}
        if not op.authenticated:
            entry["security"] = []
        paths.setdefault(f"/api/v1{path}", {})[op.method.lower()] = entry
    return {
        "openapi": "3.0.3",
        "info": {"title": "Keyward API", "version": "1.0.0",
                 "description": "Tokens act as their creator: rights are the creator's current role ∩ the "
                                "token's permissions on the scope ∩ project binding ∩ visibility. "
                                f"Known scopes: {', '.join(KNOWN_SCOPES)}."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
            "schemas": RESPONSES,
        },
    }


@bp.get("/openapi.json")
def openapi_document():
    cached = current_app.extensions.get("keyward_openapi")
    if cached is None:
        cached = current_app.extensions["keyward_openapi"] = build_document()
    return jsonify(cached)
