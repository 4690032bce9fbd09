"""Connections a hot path keeps between two uses, instead of a pool checkout and check-in each time.

Every API request runs one token lookup (PostgreSQL or SQLite) and, with Redis, one counting
script. Through their pools, each costs a checkout and a check-in (SQLAlchemy's reset, redis-py's
readiness poll and bookkeeping) that cost as much again as the work itself (bench/micro.py). Here a
process keeps a list of idle connections: each thread takes one (or opens one) and gives it back,
so a thread that ends holds none, and a forked child never uses its parent's.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

Connection = TypeVar("Connection")

# This process's id, read once and again in a forked child: os.getpid() is a system call, and the
# lists are looked up twice per request.
_process = os.getpid()


def _forked() -> None:
    global _process
    _process = os.getpid()


os.register_at_fork(after_in_child=_forked)


class Held(Generic[Connection]):
    def __init__(self, open_one: Callable[[], Connection]):
        self._open_one = open_one
        self._idle: dict[int, list[Connection]] = {}

    def _here(self) -> list[Connection]:
        return self._idle.setdefault(_process, [])

    def take(self) -> Connection:
        """An idle connection of this process, or a new one (the driver's error when none opens)."""
        try:
            return self._here().pop()
        except IndexError:
            return self._open_one()

    def give_back(self, connection: Connection) -> None:
        """After a use that left it ready for the next one."""
        self._here().append(connection)

    def take_all(self) -> Iterator[Connection]:
        """Every idle connection of this process, each taken (to close them or return them to a pool)."""
        idle = self._here()
        while idle:
            with contextlib.suppress(IndexError):  # another thread took the last one meanwhile
                yield idle.pop()
