"""Settings → Webhooks, for owners and admins: endpoints, the show-once signing secret,
and each endpoint's delivery log with Resend. Thin: parse the form, call shared.webhooks, render.
"""

from __future__ import annotations

import json

from flask import flash, redirect, render_template, request, url_for

from portal.blueprint import bp
from portal.views import staff_page
from shared.core.errors import InvalidRequest
from shared.events import outbox
from shared.identity.roles import Capability
from shared.identity.signin import current_actor
from shared.tokens.pages import FORM_ERROR_STATUS, NO_STORE
from shared.webhooks import endpoints
from shared.webhooks.signing import event_body

manager_page = staff_page(Capability.MANAGE_WEBHOOKS)


def request_body(event) -> str:
    """The body every attempt of an event sent (the same bytes each time), indented to be read."""
    return json.dumps(json.loads(event_body(event)), indent=2, ensure_ascii=False)


def _index(*, error: InvalidRequest | None = None, created=None, secret: str | None = None):
    form = request.form if error else {}
    return render_template(
        "portal/webhooks.html", endpoints=endpoints.list_endpoints(current_actor()), event_types=outbox.TYPES,
        values={"url": form.get("url", ""),
                "event_types": form.getlist("event_types") if error else list(outbox.TYPES)},
        errors=error.fields if error else {}, form_error=error.message if error and not error.fields else None,
        created=created, secret=secret)


def _back(message: str, endpoint_id: str | None = None):
    flash(message)
    if endpoint_id:
        return redirect(url_for("portal.webhook_log", webhook_id=endpoint_id))
    return redirect(url_for("portal.webhooks_page"))


@bp.get("/settings/webhooks")
@manager_page
def webhooks_page():
    return _index()


@bp.post("/settings/webhooks")
@manager_page
def webhook_create():
    try:
        endpoint, secret = endpoints.create_endpoint(current_actor(), request.form.get("url", ""),
                                                    request.form.getlist("event_types"))
    except InvalidRequest as error:
        return _index(error=error), FORM_ERROR_STATUS
    # The one POST that renders instead of redirecting: the secret is shown here, once.
    return _index(created=endpoint, secret=secret), 200, NO_STORE


@bp.get("/settings/webhooks/<webhook_id>")
@manager_page
def webhook_log(webhook_id: str):
    actor = current_actor()
    endpoint = endpoints.get_endpoint_for(actor, webhook_id)
    return render_template("portal/webhook_log.html", endpoint=endpoint,
                           entries=endpoints.delivery_log(actor, endpoint), request_body=request_body)


@bp.post("/settings/webhooks/<webhook_id>/<any(enable, disable):action>")
@manager_page
def webhook_set_active(webhook_id: str, action: str):
    actor = current_actor()
    active = action == "enable"
    endpoint = endpoints.set_endpoint_active(actor, endpoints.get_endpoint_for(actor, webhook_id), active)
    return _back(f"Enabled {endpoint.url}." if active
                 else f"Disabled {endpoint.url}. Nothing is sent to it until you enable it again.")


@bp.post("/settings/webhooks/<webhook_id>/delete")
@manager_page
def webhook_delete(webhook_id: str):
    actor = current_actor()
    endpoint = endpoints.delete_endpoint(actor, endpoints.get_endpoint_for(actor, webhook_id))
    return _back(f"Deleted the endpoint {endpoint.url}. Nothing more is sent to it.")


@bp.post("/settings/webhooks/<webhook_id>/test")
@manager_page
def webhook_test(webhook_id: str):
    """Send a signed `ping` to this endpoint, then show its delivery log, where the attempt appears."""
    actor = current_actor()
    endpoint = endpoints.get_endpoint_for(actor, webhook_id)
    try:
        delivery = endpoints.send_test_event(actor, endpoint)
    except InvalidRequest as error:
        flash(error.message, "error")
        return redirect(url_for("portal.webhook_log", webhook_id=endpoint.public_id))
    return _back(f"Sent a test event ({delivery.event.public_id}, type ping) to {endpoint.url}. Its attempts "
                 "appear below as they happen: reload to see the answer.", endpoint.public_id)


@bp.post("/settings/webhooks/<webhook_id>/deliveries/<int:delivery_id>/resend")
@manager_page
def webhook_resend(webhook_id: str, delivery_id: int):
    actor = current_actor()
    endpoint = endpoints.get_endpoint_for(actor, webhook_id)
    try:
        delivery = endpoints.resend(actor, endpoint, delivery_id)
    except InvalidRequest as error:
        flash(error.message, "error")
        return redirect(url_for("portal.webhook_log", webhook_id=endpoint.public_id))
    return _back(f"Resending {delivery.event.public_id}.", endpoint.public_id)
