"""Webhook test helpers: an owner's all-powerful key, endpoints through the API, the worker run once,
the deliveries and attempts recorded, and a fake DNS for the SSRF guard.

A plain module (neither a test module nor a conftest): the tests import from here.
"""

from __future__ import annotations

import socket

from sqlalchemy import select

from shared.core.extensions import db
from shared.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

ALL_SCOPES = ["documents", "projects", "templates", "analytics", "billing", "tokens"]
ALL_PERMISSIONS = ["read", "write", "delete"]


def owner_key(make, org=None, role="owner"):
    """A member and their all-powerful token; its token.created event is dispatched at once, so
    tests see only the events they cause (an endpoint never gets events from before it existed)."""
    org = org or make.org("business")
    member = make.api_member(org, role)
    key = make.token(member, scopes=ALL_SCOPES, permissions=ALL_PERMISSIONS, expires_at=None)
    run_worker(make.app)
    return member, key


def add_endpoint(client, key, url, event_types=None):
    body = {"url": url} if event_types is None else {"url": url, "event_types": event_types}
    response = client.post("/api/v1/webhooks", json=body, headers=key.headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def run_worker(app) -> None:
    """`flask --app wsgi worker --once`: every queued job and one sweep."""
    result = app.test_cli_runner().invoke(args=["worker", "--once"])
    assert result.exit_code == 0, result.output


def deliveries(app, endpoint_id: str) -> list[WebhookDelivery]:
    with app.app_context():
        return list(db.session.scalars(
            select(WebhookDelivery).join(WebhookEndpoint).where(WebhookEndpoint.public_id == endpoint_id)
            .order_by(WebhookDelivery.id)))


def attempts_of(app, delivery_id: int) -> list[WebhookAttempt]:
    with app.app_context():
        return list(db.session.scalars(select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id)
                                       .order_by(WebhookAttempt.id)))


def endpoint_row(app, endpoint_id: str) -> WebhookEndpoint:
    with app.app_context():
        return db.session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.public_id == endpoint_id)).one()


def fake_dns(answers: dict[str, list[str]]):
    """getaddrinfo answering `answers` for those names, as the real one for anything else."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in answers:
            return real(host, port, *args, **kwargs)
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (a, port) if ":" not in a else (a, port, 0, 0)) for a in answers[host]]

    return getaddrinfo
