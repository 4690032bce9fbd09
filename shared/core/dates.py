"""Relative and exact times, the one place the UI formats a moment.

Pages show every moment one way: relative ("3 hours ago", "in 5 days") in a
`<time datetime="<ISO>" title="<exact UTC>">`, so the exact time is one hover away (time_tag).
Calendar days (a chart's bars) read "Nov 3, 2026" (day). Raw ISO 8601 is for machines only: the
API, exports, and the datetime attribute.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time

from markupsafe import Markup, escape

from shared.core import clock

_UNITS = (
    ("year", 365 * 24 * 3600),
    ("month", 30 * 24 * 3600),
    ("day", 24 * 3600),
    ("hour", 3600),
    ("minute", 60),
)


def relative(moment: datetime | None, reference: datetime | None = None) -> str:
    """'5 days ago', 'in 3 hours', 'just now'; 'never' for None."""
    if moment is None:
        return "never"
    reference = reference or clock.now()
    seconds = int((reference - moment).total_seconds())
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 60:
        return "just now"
    for name, size in _UNITS:
        if seconds >= size:
            count = seconds // size
            label = f"{count} {name}{'s' if count != 1 else ''}"
            return f"in {label}" if future else f"{label} ago"
    return "just now"  # pragma: no cover - the loop always returns for seconds >= 60


def exact(moment: datetime | None) -> str:
    """'2026-11-23 14:05 UTC' for titles and tables; '' for None."""
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else ""


def day(value: date, *, year: bool = True) -> str:
    """'Nov 3, 2026' (or 'Nov 3' without the year) for a calendar day."""
    text = f"{value:%b} {value.day}"
    return f"{text}, {value.year}" if year else text


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 UTC with a Z, as the API writes times; None stays None."""
    if moment is None:
        return None
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


# A moment as iso() writes it (audit details and event data hold them as text).
_ISO_MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})")


def moment_in(text: object) -> datetime | None:
    """The moment a string written by iso() holds (audit details, event data), else None."""
    if not isinstance(text, str) or not _ISO_MOMENT.fullmatch(text):
        return None
    return parse_moment(text)


def is_moment_text(value: object) -> bool:
    return moment_in(value) is not None


def time_tag(moment: datetime | str | None, never: str = "never") -> Markup:
    """How a page shows a moment: relative, with the exact time on hover and ISO for machines.
    A string written by iso() is shown the same way; None reads `never`."""
    if isinstance(moment, str):
        parsed = moment_in(moment)
        if parsed is None:
            return escape(moment)
        moment = parsed
    if moment is None:
        return escape(never)
    return Markup('<time datetime="{}" title="{}">{}</time>').format(iso(moment), exact(moment),
                                                                     relative(moment))


def end_of_day(day: date) -> datetime:
    """23:59:59 UTC of the day: an expiry chosen as a date."""
    return datetime.combine(day, time(23, 59, 59), tzinfo=UTC)


def start_of_day(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def last_moment_of(day: date) -> datetime:
    """The very end of the day (23:59:59.999999 UTC): an inclusive upper bound that exists even for
    the last day datetime knows (9999-12-31), where "before the next day's start" would overflow."""
    return datetime.combine(day, time.max, tzinfo=UTC)


def parse_day(value: str | None) -> date | None:
    """A calendar day written YYYY-MM-DD, or None."""
    value = (value or "").strip()
    if len(value) != 10:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def parse_moment(value: str) -> datetime | None:
    """An ISO 8601 date (end of that day, UTC) or date-time (UTC if no offset); None when it is not
    one, or when it lies outside what datetime holds once in UTC ("0001-01-01T00:00:00+01:00")."""
    value = value.strip()
    if len(value) > 40:
        return None
    try:
        if len(value) == 10:
            return end_of_day(date.fromisoformat(value))
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def lower_bound(value: str | None) -> datetime | None:
    """A filter's "from": a date means from the start of that day, a date-time that moment."""
    if not value:
        return None
    day = parse_day(value)
    return start_of_day(day) if day else parse_moment(value)


def upper_bound(value: str | None) -> datetime | None:
    """A filter's "to", inclusive: a date means up to the very end of that day (a row created at
    23:59:59.5 belongs to it), a date-time that moment."""
    if not value:
        return None
    day = parse_day(value)
    return last_moment_of(day) if day else parse_moment(value)
