"""Token lifecycle events: the outbox that the worker reads and hands to webhook deliveries.

`emit` adds the event to the caller's transaction, so an event exists exactly when its change
committed. After a commit that added events or notifications, the queue is asked to dispatch them
(shared.worker.queue); if the queue is down, the worker's sweep finds them later: nothing is lost.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from sqlalchemy import insert, select

from shared.core import clock
from shared.core.db import write_transaction
from shared.core.extensions import db
from shared.models import Event


class EventType(StrEnum):
    """What a webhook endpoint can subscribe to; the value is the event's `type` in its body."""

    CREATED = "token.created"
    UPDATED = "token.updated"
    REGENERATED = "token.regenerated"
    DEACTIVATED = "token.deactivated"
    REACTIVATED = "token.reactivated"
    REVOKED = "token.revoked"
    EXPIRING = "token.expiring"
    EXPIRED = "token.expired"
    EXPOSED = "token.exposed"
    ANOMALY = "token.anomaly"
    CANARY_USED = "token.canary_used"
    TRANSFERRED = "token.transferred"
    EXCHANGED = "token.exchanged"


TYPES = tuple(event_type.value for event_type in EventType)
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


def dispatch_pending(consume: Callable[[Event], None], batch: int = 100) -> int:
    """Hand every undispatched event to `consume`, oldest first, and mark it dispatched; how many.

    The outbox knows no consumer: the worker passes the one it runs (webhook deliveries add their
    rows inside this transaction and are sent later, never a network call in here).

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
                consume(event)
                event.dispatched_at = clock.now()
        total += len(pending)
        if len(pending) < batch:
            return total
