"""Webhook endpoints over the API: scope `tokens`, owners and admins only. Thin views."""

from __future__ import annotations

from flask import jsonify

from api.auth import current_actor
from api.schema import Array, Body, String, endpoint, pagination
from shared.events import outbox
from shared.webhooks import endpoints, ssrf

NO_STORE = {"Cache-Control": "no-store"}
ERRORS = {401: "Error", 403: "Error", 429: "Error"}

CREATE_WEBHOOK = Body({
    "url": String("http:// or https:// URL on a public address", min_length=1, max_length=ssrf.MAX_URL_LENGTH),
    "event_types": Array("Event types to receive (default: all)",
                         items=String(max_length=40, choices=outbox.TYPES), min_items=1,
                         max_items=len(outbox.TYPES), default=list(outbox.TYPES)),
}, required=("url",), name="WebhookCreate")


@endpoint("GET", "/webhooks", summary="List the organization's webhook endpoints", scope="tokens", tag="webhooks",
          responses={200: "WebhookList", 400: "Error", **ERRORS}, query=pagination())
def list_webhooks(query: dict):
    items = endpoints.list_endpoints(current_actor())
    page, per_page = query["page"], query["per_page"]
    shown = items[(page - 1) * per_page:page * per_page]
    return jsonify({"items": [endpoints.endpoint_summary(e) for e in shown], "page": page, "per_page": per_page,
                    "total": len(items)})


@endpoint("POST", "/webhooks", summary="Add a webhook endpoint (answers its signing secret, once)", scope="tokens",
          tag="webhooks", responses={201: "WebhookWithSecret", 400: "Error", **ERRORS}, body=CREATE_WEBHOOK)
def create_webhook(body: dict):
    created, secret = endpoints.create_endpoint(current_actor(), body["url"],
                                               body.get("event_types", list(outbox.TYPES)))
    return jsonify({"webhook": endpoints.endpoint_summary(created), "secret": secret}), 201, NO_STORE


@endpoint("DELETE", "/webhooks/<webhook_id>", summary="Delete a webhook endpoint", scope="tokens", tag="webhooks",
          responses={200: "Webhook", 404: "Error", **ERRORS})
def delete_webhook(webhook_id: str):
    actor = current_actor()
    deleted = endpoints.delete_endpoint(actor, endpoints.get_endpoint_for(actor, webhook_id))
    return jsonify(endpoints.endpoint_summary(deleted))
