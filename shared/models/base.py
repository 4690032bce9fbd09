"""Column types and defaults every model shares: moments are stored and returned as aware UTC datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    DateTime,
    TypeDecorator,
)

from shared.core import clock


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in Python on every database (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def result_processor(self, dialect, coltype):
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        process_result_value = self.process_result_value

        # SQLite returns the stored text: parsed by datetime.fromisoformat in one step instead of
        # SQLAlchemy's regular expression and then the step above (every token lookup reads
        # several; bench/README.md).
        def parse(value):
            if value is None:
                return None
            if value.__class__ is str:
                return process_result_value(datetime.fromisoformat(value), dialect)
            return process_result_value(value, dialect)

        return parse


def utc_now() -> datetime:
    return clock.now()
