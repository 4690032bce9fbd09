"""Database plumbing: SQLite tuned for concurrent writers, and write transactions that wait.

SQLite allows one writer at a time. A transaction that has read at an older snapshot cannot
upgrade to a writer once another writer has committed (it fails at once with "database is
locked", whatever the busy timeout). So writes that race go through `write_transaction()`: it
ends any read snapshot and opens the transaction with BEGIN IMMEDIATE, which takes the write
lock first and waits (busy_timeout) instead of failing. On PostgreSQL it is a plain transaction;
row locks (`with_for_update`) do the serializing there.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event
from sqlalchemy.engine import Engine

from shared.extensions import db

SQLITE_BUSY_TIMEOUT_MS = 30_000
AUTOCOMMIT_BIND = "autocommit"  # a second engine on a server database, for the API's hot path
_begin_immediate = contextvars.ContextVar("begin_immediate", default=False)


@event.listens_for(Engine, "connect")
def _configure_sqlite(dbapi_connection, connection_record) -> None:
    if type(dbapi_connection).__module__.split(".")[0] not in {"sqlite3", "pysqlite2"}:
        return
    # Let SQLAlchemy emit BEGIN itself (see _begin), so we can choose IMMEDIATE.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


@event.listens_for(Engine, "begin")
def _begin(connection) -> None:
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE" if _begin_immediate.get() else "BEGIN")


def is_sqlite() -> bool:
    return db.session.get_bind().dialect.name == "sqlite"


@contextmanager
def write_transaction() -> Iterator:
    """A transaction that owns the write lock from its first statement; commits on success.

    Anything pending in the session is committed first (callers use this at the point where
    they start changing things).
    """
    session = db.session
    session.commit()
    flag = _begin_immediate.set(True)
    try:
        session.connection()  # begins now, IMMEDIATE on SQLite
    finally:
        _begin_immediate.reset(flag)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise


@contextmanager
def immediate_begin(connection) -> Iterator:
    """A write transaction on a Core connection (BEGIN IMMEDIATE on SQLite), committed on success."""
    flag = _begin_immediate.set(True)
    try:
        transaction = connection.begin()
    finally:
        _begin_immediate.reset(flag)
    with transaction:
        yield connection


def contains_pattern(text: str) -> str:
    """A LIKE pattern (escape character backslash) matching `text` anywhere, lower-cased."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
