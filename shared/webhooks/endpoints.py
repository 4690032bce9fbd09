"""Webhook endpoints of an organization: register, list, enable/disable, delete, the delivery log, resend.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from shared.audit import record as audit
from shared.audit.record import Actor
from shared.core import clock
from shared.core.dates import iso
from shared.core.db import write_transaction
from shared.core.errors import InvalidRequest, NotFound
from shared.core.extensions import db
from shared.events import outbox
from shared.identity.roles import Capability, require
from shared.models import DeliveryStatus, Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from shared.webhooks.signing import new_signing_secret
from shared.webhooks.ssrf import check_url

NOT_ALLOWED = "Your role cannot manage webhooks"


PUBLIC_ID = re.compile(r"wh_[0-9a-f]{16}")




MAX_ENDPOINTS = 20  # live endpoints per organization








def clean_event_types(value: object) -> list[str]:
    """Known event types, each once, in the documented order; at least one.

    :raise InvalidRequest:
    """
    if not isinstance(value, list | tuple) or not value:
        raise InvalidRequest("Choose at least one event", fields={"event_types": "Choose at least one event"})
    unknown = [str(item)[:50] for item in value if item not in outbox.TYPES]
    if unknown:
        message = f"Unknown event type: {', '.join(unknown[:5])}"
        raise InvalidRequest(message, fields={"event_types": message})
    return [kind for kind in outbox.TYPES if kind in value]


def endpoint_summary(endpoint: WebhookEndpoint) -> dict:
    """The API's webhook object. Never the signing secret."""
    return {
        "id": endpoint.public_id,
        "url": endpoint.url,
        "event_types": list(endpoint.event_types),
        "status": "active" if endpoint.is_active else "disabled",
        "is_active": endpoint.is_active,
        "disabled_reason": endpoint.disabled_reason,
        "consecutive_failures": endpoint.consecutive_failures,
        "created_at": iso(endpoint.created_at),
    }


def live_endpoints(organization_id: int):
    return select(WebhookEndpoint).where(WebhookEndpoint.organization_id == organization_id,
                                         WebhookEndpoint.deleted_at.is_(None))


def list_endpoints(actor: Actor) -> list[WebhookEndpoint]:
    """The organization's endpoints, newest first."""
    require(actor, Capability.MANAGE_WEBHOOKS, NOT_ALLOWED)
    return list(db.session.scalars(live_endpoints(actor.organization_id).order_by(WebhookEndpoint.id.desc())))


def get_endpoint_for(actor: Actor, public_id: str) -> WebhookEndpoint:
    """One of the actor's organization's endpoints.

    :raise PermissionDenied: unless the actor may manage webhooks
    :raise NotFound: for unknown, deleted and other organizations' ids alike
    """
    require(actor, Capability.MANAGE_WEBHOOKS, NOT_ALLOWED)
    if not isinstance(public_id, str) or not PUBLIC_ID.fullmatch(public_id):
        raise NotFound("No such webhook endpoint")
    endpoint = db.session.scalars(live_endpoints(actor.organization_id)
                                  .where(WebhookEndpoint.public_id == public_id)).first()
    if endpoint is None:
        raise NotFound("No such webhook endpoint")
    return endpoint


def create_endpoint(actor: Actor, url: object, event_types: object) -> tuple[WebhookEndpoint, str]:
    """A new endpoint; returns it with its signing secret, which is shown this once."""
    require(actor, Capability.MANAGE_WEBHOOKS, NOT_ALLOWED)
    fields: dict[str, str] = {}
    try:
        destination = check_url(url)
    except InvalidRequest as error:
        fields.update(error.fields)
    try:
        kinds = clean_event_types(event_types)
    except InvalidRequest as error:
        fields.update(error.fields)
    if fields:
        raise InvalidRequest(next(iter(fields.values())), fields=fields)
    secret = new_signing_secret()
    with write_transaction() as session:
        live = session.scalar(select(func.count(WebhookEndpoint.id)).where(
            WebhookEndpoint.organization_id == actor.organization_id, WebhookEndpoint.deleted_at.is_(None)))
        if live >= MAX_ENDPOINTS:
            raise InvalidRequest(f"An organization has at most {MAX_ENDPOINTS} webhook endpoints; delete one first")
        endpoint = WebhookEndpoint(
            public_id="wh_" + secrets.token_hex(8), organization_id=actor.organization_id, url=destination.url,
            event_types=kinds, signing_secret=secret, is_active=True, consecutive_failures=0,
            created_by_user_id=actor.user_id, created_at=clock.now())
        session.add(endpoint)
        session.flush()
        audit.record(actor, actor.organization_id, "webhook.created", "webhook", endpoint.public_id,
                     {"url": endpoint.url, "event_types": kinds})
    return endpoint, secret


def set_endpoint_active(actor: Actor, endpoint: WebhookEndpoint, active: bool) -> WebhookEndpoint:
    """Disable (nothing is sent; pending deliveries wait) or enable again (the failure count restarts
    and waiting deliveries go out)."""
    require(actor, Capability.MANAGE_WEBHOOKS, NOT_ALLOWED)
    with write_transaction() as session:
        endpoint.is_active = active
        endpoint.disabled_reason = None if active else f"Disabled by {actor.membership.user.email}"
        if active:
            endpoint.consecutive_failures = 0
            outbox.mark_outbox()  # send whatever waited for it
        session.add(endpoint)
        audit.record(actor, endpoint.organization_id, "webhook.enabled" if active else "webhook.disabled",
                     "webhook", endpoint.public_id, {"url": endpoint.url})
    return endpoint


def delete_endpoint(actor: Actor, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """Stop sending for good; the row and its log stay for audit, out of every list."""
    require(actor, Capability.MANAGE_WEBHOOKS, NOT_ALLOWED)
    with write_transaction() as session:
        endpoint.deleted_at = clock.now()
        endpoint.is_active = False
        session.add(endpoint)
        audit.record(actor, endpoint.organization_id, "webhook.deleted", "webhook", endpoint.public_id,
                     {"url": endpoint.url})
    return endpoint


@dataclass(frozen=True)
class LogEntry:
    delivery: WebhookDelivery
    attempts: list[WebhookAttempt]  # newest first


def delivery_log(actor: Actor, endpoint: WebhookEndpoint, limit: int = 50) -> list[LogEntry]:
    """The endpoint's latest deliveries, newest first, each with every attempt."""
    require(actor, Capability.MANAGE_WEBHOOKS, NOT_ALLOWED)
    deliveries = list(db.session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
        .options(joinedload(WebhookDelivery.event)).order_by(WebhookDelivery.id.desc()).limit(limit)))
    attempts: dict[int, list[WebhookAttempt]] = {delivery.id: [] for delivery in deliveries}
    if deliveries:
        for attempt in db.session.scalars(select(WebhookAttempt).where(
                WebhookAttempt.delivery_id.in_(list(attempts))).order_by(WebhookAttempt.id.desc())):
            attempts[attempt.delivery_id].append(attempt)
    return [LogEntry(delivery, attempts[delivery.id]) for delivery in deliveries]


def resend(actor: Actor, endpoint: WebhookEndpoint, delivery_id: int) -> WebhookDelivery:
    """Send a delivery again now, with a fresh retry schedule (same event id; every earlier attempt
    stays in the log).

    :raise NotFound: for a delivery of another endpoint
    :raise InvalidRequest: while the endpoint is disabled
    """
    require(actor, Capability.MANAGE_WEBHOOKS, NOT_ALLOWED)
    delivery = db.session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.endpoint_id != endpoint.id:
        raise NotFound("No such delivery")
    if not endpoint.is_active:
        raise InvalidRequest("Enable the endpoint before resending")
    with write_transaction() as session:
        delivery.status, delivery.attempts, delivery.finished_at = DeliveryStatus.PENDING, 0, None
        delivery.next_attempt_at = clock.now()
        session.add(delivery)
        audit.record(actor, endpoint.organization_id, "webhook.resent", "webhook", endpoint.public_id,
                     {"event_id": delivery.event.public_id})
        outbox.mark_outbox()  # the queue sends it right after this commit
    return delivery


PING = "ping"  # the test event: sent to one endpoint on request, never subscribed to


def send_test_event(actor: Actor, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """Send the endpoint a signed `ping` now, delivered, retried and logged like any event, so a
    receiver can be checked before a real event comes. Only this endpoint gets it.

    :raise InvalidRequest: while the endpoint is disabled
    """
    require(actor, Capability.MANAGE_WEBHOOKS, NOT_ALLOWED)
    if not endpoint.is_active:
        raise InvalidRequest("Enable the endpoint before sending a test event")
    now = clock.now()
    with write_transaction() as session:
        # Dispatched already: the outbox hands it to no other endpoint.
        event = Event(public_id=outbox.new_event_id(), organization_id=endpoint.organization_id, type=PING,
                      token_id=None, data={"webhook": {"id": endpoint.public_id, "url": endpoint.url}},
                      created_at=now, dispatched_at=now)
        session.add(event)
        session.flush()
        delivery = WebhookDelivery(endpoint_id=endpoint.id, event_id=event.id, status=DeliveryStatus.PENDING,
                                   attempts=0, next_attempt_at=now, created_at=now)
        session.add(delivery)
        audit.record(actor, endpoint.organization_id, "webhook.tested", "webhook", endpoint.public_id,
                     {"event_id": event.public_id})
        outbox.mark_outbox()  # the queue sends it right after this commit
    return delivery
