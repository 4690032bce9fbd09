"""Production defaults for serving Keyward with gunicorn: `gunicorn` (or `gunicorn -c gunicorn.conf.py`).

gunicorn reads this file from the working directory on its own; flags on the command line win
over it. Every value can be tuned from the environment without editing the file:

  WEB_CONCURRENCY          worker processes (default: 2 x cores + 1, at most 12)
  BIND / PORT              listen address (default 127.0.0.1:8000; PORT alone gives 127.0.0.1:$PORT)
  GUNICORN_WORKER_CLASS    sync (default) or gthread
  GUNICORN_THREADS         threads per worker when the class is gthread (default 4)
  GUNICORN_TIMEOUT         seconds before a silent worker is killed and replaced (default 30)
  GUNICORN_ACCESS_LOG      "-" for stdout or a file path; off when unset
  GUNICORN_LOG_LEVEL       default info
  FORWARDED_ALLOW_IPS      addresses whose X-Forwarded-Proto gunicorn believes; nobody by default
  GUNICORN_MAX_REQUESTS    recycle a worker after this many requests (default 0: never)

Why `sync` workers by default: a Keyward request is short and CPU-bound (parse, one indexed
lookup, a usage tally in memory or Redis, JSON), so threads in a worker mostly wait for the GIL,
and on SQLite they add writers queueing for the one database write lock. Measured with
`make bench` on 2 cores, 5 workers (bench/README.md has the table): on SQLite sync workers served
30-40 % more authenticated requests per second than gthread (4 or 2 threads) with a far lower p99;
on PostgreSQL gthread was ~15 % ahead in throughput but sync kept the lowest p99 (under 100 ms
against 130-430 ms). Sync workers do not keep connections alive and a slow client holds a whole
worker, so put a buffering reverse proxy (nginx, a cloud load balancer) in front, which is the
deployment Keyward is built for; clients served directly, without a proxy, are the case for
GUNICORN_WORKER_CLASS=gthread.

Client addresses: gunicorn never rewrites REMOTE_ADDR from X-Forwarded-For; Keyward itself decides
how many proxy hops to believe (KEYWARD_TRUSTED_PROXIES, default 0). Likewise this file trusts no
front end for the scheme headers unless FORWARDED_ALLOW_IPS says so (gunicorn's own default
would trust 127.0.0.1 and ::1).
"""

from __future__ import annotations

import multiprocessing
import os
import sys

MAX_DEFAULT_WORKERS = 12  # beyond this, more processes only add database connections and memory


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def _default_workers() -> int:
    return min(2 * multiprocessing.cpu_count() + 1, MAX_DEFAULT_WORKERS)


wsgi_app = "wsgi:app"

bind = [os.environ.get("BIND") or f"127.0.0.1:{os.environ.get('PORT', '8000')}"]
backlog = 2048

workers = _env_int("WEB_CONCURRENCY", _default_workers())
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "sync")
threads = _env_int("GUNICORN_THREADS", 4) if worker_class == "gthread" else 1

timeout = _env_int("GUNICORN_TIMEOUT", 30)  # a request that runs longer is a bug: kill the worker
graceful_timeout = 30  # on reload or shutdown, let in-flight requests finish
keepalive = 5  # gthread only (sync closes every connection); just above common proxy idle timeouts

max_requests = _env_int("GUNICORN_MAX_REQUESTS", 0)
max_requests_jitter = max_requests // 10  # staggered, so the workers do not all restart at once

# Request size limits stay at gunicorn's defaults (4094-byte request line, 100 header fields of at
# most 8190 bytes): an API token and its headers fit with room to spare.

accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None  # off: one line per request costs throughput
# gunicorn's default line holds the Basic-auth user name (%(u)s) and the query string (%(r)s): a client
# that sends its token as `curl -u kw_...:` or `?api_key=kw_...` (both refused) would have it logged.
# This format keeps neither: method, path without the query, protocol, status, size, referer, agent, ms.
# The path, Referer and User-Agent are the client's text, so a token can still stand there
# (`GET /kw_…`): every log line passes the secret-masking filter installed below.
access_log_format = '%(h)s - - %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)sms'
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")

forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "")
proxy_allow_ips = ""  # only read with proxy_protocol, which stays off

# gunicorn >= 25 opens a control socket at one fixed per-user path by default; several instances on
# one host would fight over it, and Keyward does not use gunicornc.
control_socket_disable = True

# Logs (KEYWARD_LOG_FORMAT): gunicorn's error log and the app's own lines, each with its request id,
# through Keyward's logger class; `json` makes them one JSON object per line, and then the app
# writes one JSON line per request itself, so gunicorn's text access log is turned off.
logger_class = "shared.core.logs.GunicornLogger"
if os.environ.get("KEYWARD_LOG_FORMAT", "").strip().lower() == "json":
    accesslog = None


# Metrics (prometheus_client's multiprocess mode, when PROMETHEUS_MULTIPROC_DIR is set): each worker
# keeps its values in files in that folder and /metrics adds up every worker's. Files left by an
# earlier run would be counted again, so the folder is emptied at start (give each gunicorn
# instance a folder of its own); an exited worker's live gauges are dropped.
def _empty_metrics_folder() -> None:
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        os.makedirs(folder, exist_ok=True)
        for name in os.listdir(folder):
            if name.endswith(".db"):
                os.remove(os.path.join(folder, name))


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def worker_exit(server, worker):
    """A worker stopping gracefully (SIGTERM, SIGINT, SIGQUIT, a reload, a max_requests recycle)
    first writes the usage it tallied in memory: its requests are counted, none lost."""
    from shared.tokens import usage_flush

    usage_flush.flush_all()


def _mask_secrets_in_logs() -> None:
    """Token-shaped values in any log line become `kw_••••` + their last 4 (shared/tokens/log_masking.py)."""
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    from shared.tokens.log_masking import install

    install()


def _warn_if_rate_limits_are_per_worker(server) -> None:
    """With in-memory rate limits each worker process keeps its own counters, so N workers let a
    token through up to N times its limit: say so once, at start."""
    storage = os.environ.get("RATELIMIT_STORAGE_URI", "memory://")
    if storage.startswith("memory://") and server.cfg.workers > 1:
        server.log.warning(
            "Keyward: RATELIMIT_STORAGE_URI is memory:// with %d workers: each worker counts rate limits "
            "on its own, so a token may make up to %d times its per-minute limit; set "
            "RATELIMIT_STORAGE_URI=redis://... to share the counts (docs/operations.md)",
            server.cfg.workers, server.cfg.workers)


def on_starting(server) -> None:
    _empty_metrics_folder()
    _mask_secrets_in_logs()
    _warn_if_rate_limits_are_per_worker(server)


def post_worker_init(worker) -> None:
    _mask_secrets_in_logs()  # again in the worker: its loggers may have been set up anew
