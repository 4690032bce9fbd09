"""The least any authenticating endpoint does, as a yardstick for Keyward's GET /api/v1/me.

GET /me reads the key from `Authorization: Bearer <key>`, HMAC-SHA256s it with a pepper, reads ONE
row by its indexed hash column, and answers a small JSON body. No rate limit, no usage counter, no
expiry or revocation checks, no ORM, no pool: one persistent connection per worker (per thread
under gthread), opened on first use after gunicorn forks, reopened once if PostgreSQL dropped it.
bench/run.py serves it with the project venv's gunicorn and the same gunicorn.conf.py settings as
Keyward; GET /healthz (SELECT 1) only tells run.py the server is up.

Environment: BENCH_BARE_DATABASE_URL (sqlite:////absolute/path.db or postgresql://user@host/name)
and BENCH_BARE_PEPPER. With BENCH_BARE_REDIS_URL set, each accepted request is also counted in
Redis: one INCR of the token's one-minute window, with its expiry, in one round trip on a held
connection (as Keyward sends its count), and no limit applied. That is the least a service does
that counts every request where all its processes see it, as Keyward does with Redis (run.py's
"bare+redis" row). Seeding, one key per stdin line (run.py does this before serving):
    python bench/bare_service/app.py seed < keys.txt
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
import sys
import threading
import time
from urllib.parse import unquote, urlsplit

from flask import Flask, request

DATABASE_URL = os.environ.get("BENCH_BARE_DATABASE_URL", "sqlite:////tmp/bare_bench.db")
PEPPER = os.environ.get("BENCH_BARE_PEPPER", "bench-only-not-a-secret").encode()
REDIS_URL = os.environ.get("BENCH_BARE_REDIS_URL")
IS_SQLITE = DATABASE_URL.startswith("sqlite")
PLACEHOLDER = "?" if IS_SQLITE else "%s"
LOOKUP = f"SELECT id, name, org, created_at FROM bare_tokens WHERE key_hash = {PLACEHOLDER}"
SCHEMA = [
    """CREATE TABLE bare_tokens (
           id INTEGER PRIMARY KEY,
           key_hash VARCHAR(64) NOT NULL,
           name VARCHAR(100) NOT NULL,
           org VARCHAR(100) NOT NULL,
           created_at VARCHAR(32) NOT NULL)""",
    "CREATE UNIQUE INDEX bare_tokens_key_hash ON bare_tokens (key_hash)",
]

if IS_SQLITE:
    RECONNECT_ON: tuple[type[Exception], ...] = ()  # a file does not drop connections
else:
    import psycopg

    RECONNECT_ON = (psycopg.OperationalError,)

app = Flask(__name__)
_local = threading.local()


def _sqlite_path() -> str:
    path = urlsplit(DATABASE_URL).path
    return unquote(path[1:] if path.startswith("//") else path)


def _connect():
    if IS_SQLITE:
        # Autocommit (no implicit transaction around the read) and the pragmas Keyward sets.
        conn = sqlite3.connect(_sqlite_path(), timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn
    # autocommit: a read must not leave the connection idle in a transaction between requests.
    return psycopg.connect(DATABASE_URL, autocommit=True)


def _query_one(sql: str, params: tuple = ()):
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = _connect()
    try:
        return conn.execute(sql, params).fetchone()
    except RECONNECT_ON:  # the server dropped the connection (restart, idle timeout): once more, anew
        _local.conn = None
        conn.close()
        conn = _local.conn = _connect()
        return conn.execute(sql, params).fetchone()


# One Redis round trip per accepted request, sent the lean way Keyward's count is (a held
# connection, one EVALSHA): the window's INCR, and its expiry when the INCR made it.
_INCR = "local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end return n"


def _count_in_redis(token_id: int) -> None:
    held = getattr(_local, "redis", None)
    if held is None:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        held = _local.redis = (client.connection_pool.get_connection(), client.script_load(_INCR))
    connection, sha = held
    connection.send_command("EVALSHA", sha, 1, f"bare:{token_id}:{int(time.time() // 60)}", 120)
    connection.read_response()


def hash_key(key: str) -> str:
    return hmac.new(PEPPER, key.encode(), hashlib.sha256).hexdigest()


@app.get("/me")
def me():
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme != "Bearer" or not key:
        return {"error": "missing bearer token"}, 401
    row = _query_one(LOOKUP, (hash_key(key.strip()),))
    if row is None:
        return {"error": "invalid token"}, 401
    token_id, name, org, created_at = row
    if REDIS_URL:
        _count_in_redis(token_id)
    return {"token": {"id": token_id, "name": name, "org": org, "created_at": created_at}}


@app.get("/healthz")
def healthz():
    _query_one("SELECT 1")
    return {"status": "ok"}


def seed(keys: list[str]) -> None:
    """Create the table (the database must be empty) and one row per key."""
    conn = _connect()
    try:
        for statement in SCHEMA:
            conn.execute(statement)
        rows = [(i + 1, hash_key(key), f"bench-{i}", "bench-org", "2025-01-01T00:00:00Z")
                for i, key in enumerate(keys)]
        insert = ("INSERT INTO bare_tokens (id, key_hash, name, org, created_at) VALUES "
                  f"({', '.join([PLACEHOLDER] * 5)})")
        if IS_SQLITE:
            conn.executemany(insert, rows)
            conn.execute("ANALYZE")
        else:
            with conn.cursor() as cursor:
                cursor.executemany(insert, rows)
            conn.execute("ANALYZE bare_tokens")
    finally:
        conn.close()


if __name__ == "__main__":
    if sys.argv[1:] != ["seed"]:
        raise SystemExit("usage: app.py seed < keys (one per line)")
    seed([line.strip() for line in sys.stdin if line.strip()])
