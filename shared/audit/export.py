"""Audit log export (Insight): what the Audit log page's filters show, as CSV or JSON
Lines, streamed. The portal's download and `flask --app wsgi audit export` both write `chunks`.

Memory stays flat whatever the size of the log: events are read in batches of plain column rows
(no ORM objects, nothing kept in the session), keyset-paginated on the page's own order (newest
first: created_at, id), and each batch is written out before the next is read.

CSV cells that a spreadsheet would run as a formula (starting with = + - @, a tab or a carriage
return: a token's name is anyone's text) get a leading apostrophe; JSON Lines keeps every value
exactly.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select

from shared.audit.log import AuditFilters, matching, require_reader
from shared.audit.record import Actor
from shared.core import clock
from shared.core.dates import iso
from shared.core.errors import InvalidRequest
from shared.core.extensions import db
from shared.models import ApiToken, AuditEvent, User

FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}
COLUMNS = ("id", "created_at", "action", "actor_user_id", "actor_email", "actor_token_id", "target_type",
           "target_id", "source_ip", "user_agent", "details")
BATCH = 200
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Download:
    chunks: Iterator[str]
    content_type: str
    filename: str


def check_format(name: str) -> str:
    """:raise InvalidRequest: for anything but csv and jsonl."""
    if name not in FORMATS:
        raise InvalidRequest("Unknown export format", fields={"format": "Choose csv or jsonl"})
    return name


def records(organization_id: int, filters: AuditFilters, batch: int = BATCH) -> Iterator[dict[str, Any]]:
    """The organization's events matching the filters, newest first, one dict per event."""
    columns = select(AuditEvent.id, AuditEvent.created_at, AuditEvent.action, AuditEvent.actor_user_id,
                     User.email, ApiToken.public_id, AuditEvent.target_type, AuditEvent.target_id,
                     AuditEvent.source_ip, AuditEvent.user_agent, AuditEvent.details)
    query = (matching(columns, organization_id, filters)
             .outerjoin(User, User.id == AuditEvent.actor_user_id)
             .outerjoin(ApiToken, ApiToken.id == AuditEvent.actor_token_id)
             .order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc()).limit(batch))
    after: tuple[datetime, int] | None = None
    while True:
        page = query
        if after is not None:
            moment, last_id = after
            page = query.where(or_(AuditEvent.created_at < moment,
                                   and_(AuditEvent.created_at == moment, AuditEvent.id < last_id)))
        rows = db.session.execute(page).all()
        for row in rows:
            yield dict(zip(COLUMNS, (row[0], iso(row[1]), *row[2:]), strict=True))
        if len(rows) < batch:
            return
        after = (rows[-1][1], rows[-1][0])
        del rows


def _cell(value: Any) -> Any:
    if isinstance(value, dict):
        value = json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


class _Echo:
    """A file for csv.writer whose write hands the line back instead of keeping it."""

    def write(self, text: str) -> str:
        return text


def csv_chunks(events: Iterator[dict[str, Any]], batch: int = BATCH) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(COLUMNS)
    lines: list[str] = []
    for event in events:
        lines.append(writer.writerow([_cell(event[name]) for name in COLUMNS]))
        if len(lines) >= batch:
            yield "".join(lines)
            lines = []
    if lines:
        yield "".join(lines)


def jsonl_chunks(events: Iterator[dict[str, Any]], batch: int = BATCH) -> Iterator[str]:
    lines: list[str] = []
    for event in events:
        lines.append(json.dumps(event, ensure_ascii=False) + "\n")
        if len(lines) >= batch:
            yield "".join(lines)
            lines = []
    if lines:
        yield "".join(lines)


def chunks(organization_id: int, filters: AuditFilters, fmt: str) -> Iterator[str]:
    """The export as text chunks, read and written a batch at a time (the CLI's entry).

    The first batch is read now, before anything is sent: a query that fails answers an error
    (or the command's message) instead of a download cut off after its 200.
    """
    write = csv_chunks if check_format(fmt) == "csv" else jsonl_chunks
    events = records(organization_id, filters)
    first = next(events, None)
    return write(itertools.chain([first], events) if first is not None else iter(()))


def download(actor: Actor, filters: AuditFilters, fmt: str, organization_slug: str) -> Download:
    """The export for a member who may read the audit log. Checked now, before anything streams.

    :raise PermissionDenied: for a role that cannot read the audit log
    :raise InvalidRequest: for an unknown format
    """
    require_reader(actor)
    stream = chunks(actor.organization_id, filters, fmt)
    name = f"keyward-audit-{organization_slug}-{clock.now():%Y%m%d-%H%M%S}.{fmt}"
    return Download(stream, FORMATS[fmt], name)
