"""Security team tools over the API: bulk revoke, transfer, narrow. Thin views.

`POST /tokens/bulk-revoke` is a static rule beside `/tokens/<token_id>`: Werkzeug matches static
path parts before variables whatever the order of registration, so "bulk-revoke" is never read
as a token id.
"""

from __future__ import annotations

from flask import jsonify

from api.auth import current_actor
from api.schema import Array, Body, Boolean, Moment, String, endpoint, identifier
from shared.core import dates
from shared.tokens import access, incident, summary

ERRORS = {400: "Error", 401: "Error", 403: "Error", 404: "Error", 409: "Error", 429: "Error"}

BULK_REVOKE = Body({
    "token_ids": Array("Token ids (selected rows); or give rules instead",
                       items=String(max_length=32, min_length=1), min_items=1,
                       max_items=incident.MAX_BULK_IDS),
    "created_by": identifier("Every token created by this user (rules combine: all must match)"),
    "partner_id": identifier("Every token of this partner's users"),
    "created_before": Moment("Every token created before this moment (a date: before that day, UTC)"),
    "all": Boolean("Every token of the organization (incident response)"),
    "dry_run": Boolean("List what would be revoked and change nothing", default=False),
}, name="BulkRevoke")
TRANSFER = Body({"to_user_id": identifier("The member who becomes the token's creator")},
                required=("to_user_id",), name="TokenTransfer")


@endpoint("POST", "/tokens/bulk-revoke",
          summary="Revoke many tokens at once, by id or by rule; dry_run lists them first "
                  "(owners, admins, security managers)",
          scope="tokens", tag="tokens", responses={200: "BulkRevokeResult", **ERRORS}, body=BULK_REVOKE)
def bulk_revoke(body: dict):
    rule = incident.BulkRule(
        token_ids=tuple(body.get("token_ids", ())), created_by=body.get("created_by"),
        partner_id=body.get("partner_id"), created_before=dates.lower_bound(body.get("created_before")),
        all=body.get("all", False))
    result = incident.bulk_revoke(current_actor(), rule, dry_run=body.get("dry_run", False))
    return jsonify(result.as_json())


@endpoint("POST", "/tokens/<token_id>/transfer",
          summary="Give an organization or project token to another member (owners, admins)",
          scope="tokens", tag="tokens", responses={200: "Token", **ERRORS}, body=TRANSFER)
def transfer_token(token_id: str, body: dict):
    actor = current_actor()
    token = incident.transfer_token(actor, access.get_token_for(actor, token_id), body["to_user_id"])
    return jsonify(summary.token_summary(token))


@endpoint("POST", "/tokens/<token_id>/narrow",
          summary="Keep only the scope × permission pairs the token used in the last 30 days",
          scope="tokens", tag="tokens", responses={200: "Token", **ERRORS})
def narrow_token(token_id: str):
    actor = current_actor()
    return jsonify(summary.token_summary(incident.narrow_token(actor, access.get_token_for(actor, token_id))))
