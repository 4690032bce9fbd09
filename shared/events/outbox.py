"""Token lifecycle events (SPEC 11): the outbox that webhooks and the worker read.

`emit` adds the event to the caller's transaction, so an event exists exactly when its change
committed. After a commit that added events or notifications, the queue is asked to dispatch them
(shared.queue); if the queue is down, the worker's sweep finds them later: nothing is lost.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import insert, select

from shared.core import clock
from shared.core.db import write_transaction
from shared.core.extensions import db
from shared.models import Event

TYPES = (
    "token.created", "token.updated", "token.regenerated", "token.deactivated", "token.reactivated",
    "token.revoked", "token.expiring", "token.expired", "token.exposed", "token.anomaly",
    "token.canary_used", "token.transferred", "token.exchanged",
)
OUTBOX_FLAG = "keyward.outbox"  # in session.info: this transaction wrote something to dispatch


def new_event_id() -> str:
    return "evt_" + secrets.token_hex(12)


def mark_outbox() -> None:
    db.session.info[OUTBOX_FLAG] = True


def emit(event_type: str, organization_id: int, token_id: int | None, data: dict[str, Any], *,
         connection=None) -> str:
    """One event row in the current transaction; returns its evt_ id. `data` must never hold a secret.

    With `connection` (a Core connection in a transaction: the API's hot path) the row is inserted
    there, and the caller pokes the queue after its commit (queue_for().poke()).
    """
    if event_type not in TYPES:
        raise ValueError(f"unknown event type {event_type}")
    values = {"public_id": new_event_id(), "organization_id": organization_id, "type": event_type,
              "token_id": token_id, "data": data, "created_at": clock.now()}
    if connection is not None:
        connection.execute(insert(Event), values)
    else:
        db.session.add(Event(**values))
        mark_outbox()
    return values["public_id"]


# --------------------------------------------------------------------------- dispatch (the worker)


def deliver_event(event: Event) -> None:
    """Hand one event to whatever consumes events, inside the dispatching transaction.

    Webhook deliveries (SPEC 11, signed webhooks) hang off this: they add their delivery rows here,
    in the same transaction that marks the event dispatched, and are sent by webhooks.deliver_due
    (never a network call inside this transaction).
    """
    from shared.webhooks import delivery  # webhooks builds on this module

    delivery.add_deliveries(event)


def dispatch_pending(batch: int = 100) -> int:
    """Deliver every undispatched event, oldest first, and mark it dispatched; how many.

    Each batch is one write transaction (rows locked with SKIP LOCKED on PostgreSQL, the write
    lock on SQLite), so two workers never dispatch the same event.
    """
    total = 0
    while True:
        with write_transaction() as session:
            pending = session.scalars(
                select(Event).where(Event.dispatched_at.is_(None)).order_by(Event.id).limit(batch)
                .with_for_update(skip_locked=True)).all()
            for event in pending:
                deliver_event(event)
                event.dispatched_at = clock.now()
        total += len(pending)
        if len(pending) < batch:
            return total
