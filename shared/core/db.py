"""Database plumbing: SQLite tuned for concurrent writers, and write transactions that wait.

SQLite allows one writer at a time. A transaction that has read at an older snapshot cannot
upgrade to a writer once another writer has committed (it fails at once with "database is
locked", whatever the busy timeout). So writes that race go through `write_transaction()`: it
ends any read snapshot and opens the transaction with BEGIN IMMEDIATE, which takes the write
lock first and waits (busy_timeout) instead of failing. On PostgreSQL it is a plain transaction;
row locks (`with_for_update`) do the serializing there.

Writers on one SQLite file also queue on an OS file lock (flock) just before BEGIN IMMEDIATE:
the kernel wakes the next writer the moment the lock is free, where SQLite's busy handler sleeps
1, 2, 5, 10… ms between retries, so under concurrent API traffic most of a worker's time went to
sleeping rather than serving (bench/).
"""

from __future__ import annotations

import contextvars
import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

from sqlalchemy import event
from sqlalchemy.engine import Engine

from shared.core.extensions import db

SQLITE_BUSY_TIMEOUT_MS = 30_000
AUTOCOMMIT_BIND = "autocommit"  # a second engine on a server database, for the API's hot path
_begin_immediate = contextvars.ContextVar("begin_immediate", default=False)
_in_write_transaction = contextvars.ContextVar("in_write_transaction", default=False)


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


class _WriterQueue:
    """The writers' queue of one SQLite file in this process: a thread lock, then a flock on
    `<database>-writers.lock` (opened per process, so forked workers do not share it)."""

    def __init__(self, path: str):
        self.path = f"{path}-writers.lock"
        self.thread_lock = threading.Lock()
        self.fd: int | None = None
        self.pid: int | None = None

    @contextmanager
    def turn(self) -> Iterator[None]:
        with self.thread_lock:
            if self.pid != os.getpid():
                try:
                    self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                except OSError:  # the folder is gone or read-only: SQLite itself will say what is wrong
                    yield
                    return
                self.pid = os.getpid()
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self.fd, fcntl.LOCK_UN)


_writer_queues: dict[str, _WriterQueue] = {}
_writer_queues_lock = threading.Lock()


def _writers_turn(engine):
    """Wait for this process's turn to write to the engine's SQLite file (nothing elsewhere)."""
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if not path or path == ":memory:":
        return nullcontext()
    with _writer_queues_lock:
        queue = _writer_queues.setdefault(path, _WriterQueue(path))
    return queue.turn()


@contextmanager
def write_transaction() -> Iterator:
    """A transaction that owns the write lock from its first statement; commits on success.

    Anything pending in the session is committed first (callers use this at the point where
    they start changing things). Inside another write transaction it joins that one: the outer
    block commits everything together (a service that writes can be part of a larger change, e.g.
    transfers and a removal in one commit).
    """
    session = db.session
    if _in_write_transaction.get():
        yield session
        return
    session.commit()
    with _writers_turn(session.get_bind()):
        flag = _begin_immediate.set(True)
        try:
            session.connection()  # begins now, IMMEDIATE on SQLite
        finally:
            _begin_immediate.reset(flag)
        inside = _in_write_transaction.set(True)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            _in_write_transaction.reset(inside)


@contextmanager
def immediate_begin(connection) -> Iterator:
    """A write transaction on a Core connection (BEGIN IMMEDIATE on SQLite), committed on success."""
    with _writers_turn(connection.engine):
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
