"""One fixed read, run on a driver connection with as little Python per run as the driver allows.

The API's token lookup runs once per request, always the same statement with one parameter, so
it skips SQLAlchemy (shared/tokens/authn.py) and, on PostgreSQL, psycopg's cursor too:

- `PreparedStatement` (PostgreSQL through psycopg): the statement is prepared on a connection's
  first run and each run is one libpq call (`psycopg.pq`, psycopg's documented libpq layer; it releases the
  GIL while it waits), its row converted by the connection's own psycopg loaders, as its cursor
  would convert it. psycopg's cursor spends about 25 µs of Python per execute deciding whether and
  how to prepare, bind and wait, a quarter of the whole lookup (bench/README.md). A statement the
  server does not know (a new connection; `DEALLOCATE` or `DISCARD ALL` on an old one) is
  prepared and run once more.
- `CursorStatement` (any other driver: SQLite): the driver's cursor, kept between runs.

Both raise the driver's own exceptions (a failed statement, a dropped connection), so the caller
tells a dropped connection from a failed statement as for any query of that driver.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy.engine import Dialect


class Statement(Protocol):
    def fetch_one(self, value: str) -> Sequence[Any] | None:
        """The first row for this value of the parameter, or None."""

    def close(self) -> None: ...


def statement_for(dbapi_connection: Any, dialect: Dialect, sql: str, parameter: str) -> Statement:
    """`sql`, whose one parameter is written `:<parameter>` (as often as it is used), ready to run
    on this driver connection of `dialect`."""
    name = f":{parameter}"
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        return PreparedStatement(dbapi_connection, sql.replace(name, "$1"))
    placeholder = "?" if dialect.name == "sqlite" else "%s"
    return CursorStatement(dbapi_connection, sql.replace(name, placeholder), sql.count(name))


class CursorStatement:
    def __init__(self, dbapi_connection: Any, sql: str, occurrences: int):
        # Positional parameters, the value once per place: cheaper for the drivers than named ones.
        self.cursor = dbapi_connection.cursor()  # kept: making one per run costs more than binding
        self.sql = sql
        self.occurrences = occurrences

    def fetch_one(self, value: str) -> Sequence[Any] | None:
        self.cursor.execute(self.sql, (value,) * self.occurrences)
        return self.cursor.fetchone()

    def close(self) -> None:
        self.cursor.close()


class PreparedStatement:
    def __init__(self, dbapi_connection: Any, sql: str):
        # Here, not at the top: a process on SQLite never loads psycopg.
        from psycopg import errors, pq
        from psycopg.adapt import Transformer

        self._error_from_result, self._not_prepared = errors.error_from_result, errors.InvalidSqlStatementName
        self._prepared, self._rows = pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK
        self.pgconn = dbapi_connection.pgconn
        self.encoding = dbapi_connection.info.encoding
        self.sql = sql.encode()
        # Named after the statement (psycopg names its own _pg3_<n>): a pooled connection that holds
        # one of this name holds this very statement, prepared by an earlier holder.
        self.name = b"keyward_" + hashlib.sha256(self.sql).hexdigest()[:24].encode()
        self.loaders = Transformer(dbapi_connection)

    def fetch_one(self, value: str) -> Sequence[Any] | None:
        try:
            result = self._run(value)
        except self._not_prepared:  # a new connection, or one whose statements were discarded
            self._check(self.pgconn.prepare(self.name, self.sql), self._prepared)
            result = self._run(value)
        if not result.ntuples:
            return None
        self.loaders.set_pgresult(result)
        return self.loaders.load_row(0, tuple)

    def _run(self, value: str):
        return self._check(self.pgconn.exec_prepared(self.name, [value.encode()]), self._rows)

    def _check(self, result, expected):
        """The result, or the exception psycopg raises for it (by SQLSTATE: a terminated backend is
        an OperationalError, as a cursor would report it)."""
        if result.status != expected:
            raise self._error_from_result(result, encoding=self.encoding)
        return result

    def close(self) -> None:
        """Nothing to free: the statement lives as long as its connection."""
