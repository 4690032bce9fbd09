"""Token lifecycle operations counted when they commit (keyward_token_operations_total).

Every operation writes its audit record in the change's own transaction, so the audit rows a
transaction added are exactly the operations that happened, once it commits; a rolled-back
change counts nothing. The label is the audit action without its `token.` prefix (created,
regenerated, revoked, bulk_revoked, ...): a fixed set written in the code.
"""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.orm import Session

from shared.core import metrics
from shared.models import AuditEvent

PREFIX = "token."
_PENDING = "keyward.token_operations"  # in session.info: operations flushed, not yet committed


@event.listens_for(Session, "after_flush")
def _collect(session: Session, flush_context) -> None:
    for row in session.new:  # still the rows this flush inserted
        if isinstance(row, AuditEvent) and row.action.startswith(PREFIX):
            session.info.setdefault(_PENDING, []).append(row.action[len(PREFIX):])


@event.listens_for(Session, "after_commit")
def _count(session: Session) -> None:
    for operation in session.info.pop(_PENDING, ()):
        metrics.TOKEN_OPERATIONS.labels(operation).inc()


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_PENDING, None)
