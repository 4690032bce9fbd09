"""Instructions per request: Keyward's GET /api/v1/me against the bare lookup's GET /me, counted by
valgrind's callgrind in one Python process calling each WSGI app directly (no gunicorn, no network).

Timings on a shared 2-core machine vary by a third between identical runs; instruction counts do
not (the same binary and inputs count the same whatever else the machine does). A change to the
request path is measured here first, then checked with bench/run.py.

Each service is counted twice, with 0 and with N requests after the same start-up and warm-up;
(count(N) - count(0)) / N is what one request costs its Python process (not the database or Redis
server). The databases are prepared as bench/run.py prepares them.

    .venv/bin/python bench/instructions.py                 # SQLite
    .venv/bin/python bench/instructions.py --postgres      # PostgreSQL, Keyward's limits in Redis
    .venv/bin/python bench/instructions.py --profile out   # also callgrind files to read with
                                                           # callgrind_annotate
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WARM_UP = 200
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def _serve(service: str, secret: str, requests: int) -> None:
    """In the child, under valgrind: start the app, warm it up, then `requests` calls."""
    if service == "keyward":
        sys.path.insert(0, str(ROOT))
        from wsgi import app

        path = "/api/v1/me"
    else:
        sys.path.insert(0, str(BENCH / "bare_service"))
        from app import app

        path = "/me"
    template = {
        "REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000", "HTTP_AUTHORIZATION": f"Bearer {secret}",
        "HTTP_USER_AGENT": "wrk", "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
        "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
    }
    statuses = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)

    def call() -> None:
        environ = dict(template, **{"wsgi.input": io.BytesIO()})
        body = app(environ, start_response)
        try:
            for _ in body:
                pass
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()

    for _ in range(WARM_UP):
        call()
    for _ in range(requests):
        call()
    if any(not status.startswith("200") for status in statuses):
        raise SystemExit(f"instructions: {service} answered {sorted(set(statuses))}")


def _count(service: str, secret: str, requests: int, env: dict, profile: Path | None) -> int:
    out = "/dev/null" if profile is None else str(profile / f"callgrind.{service}.{requests}")
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__,
               "--child", service, "--secret", secret, "--requests", str(requests)]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"instructions: {service} with {requests} requests failed:\n{done.stderr[-3000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL, with Keyward's limits in Redis")
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432"))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--only", choices=("keyward", "bare"), help="count one service")
    parser.add_argument("--profile", type=Path, help="keep the callgrind files in this folder")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--secret", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _serve(args.child, args.secret, args.requests)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("instructions: valgrind is not installed (apt-get install valgrind)")

    sys.path.insert(0, str(BENCH))
    import run as bench

    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    services = [args.only] if args.only else ["keyward", "bare"]
    with tempfile.TemporaryDirectory(prefix="kw-instructions-") as folder:
        workdir = Path(folder)
        if args.postgres:
            keyward_url = bench.recreate_pg_database(args.pg_url, bench.KEYWARD_PG_DB)
            bare_url = bench.recreate_pg_database(args.pg_url, bench.BARE_PG_DB)
            limits = {"RATELIMIT_STORAGE_URI": args.redis_url}
        else:
            keyward_url, bare_url = (f"sqlite:///{workdir / name}.db" for name in ("keyward", "bare"))
            limits = {}
        quiet = {"PYTHONHASHSEED": "0", "KEYWARD_USAGE_FLUSH_SECONDS": "3600"}
        prepared = {}
        if "keyward" in services:
            env = bench.keyward_env(keyward_url, workdir, quiet)
            secret = bench.prepare_keyward(env, 1)[0]
            env.update(limits)  # after seeding, which needs no limits
            prepared["keyward"] = (env, secret)
        if "bare" in services:
            env = bench.bare_env(bare_url, quiet)
            prepared["bare"] = (env, bench.prepare_bare(env, 1)[0])
        jobs = [(service, requests) for service in services for requests in (0, args.requests)]
        with ThreadPoolExecutor(max_workers=2) as pool:  # two valgrinds at once, one per core
            running = {job: pool.submit(_count, job[0], prepared[job[0]][1], job[1], prepared[job[0]][0],
                                        args.profile) for job in jobs}
            counts = {job: future.result() for job, future in running.items()}
    database = "PostgreSQL + Redis" if args.postgres else "SQLite"
    print(f"Instructions per GET me ({database}, {args.requests} requests after {WARM_UP} to warm up):")
    per_request = {}
    for service in services:
        per_request[service] = (counts[service, args.requests] - counts[service, 0]) / args.requests
        print(f"  {service:8} {per_request[service]:>12,.0f}")
    if len(per_request) == 2:
        print(f"  keyward / bare: {per_request['keyward'] / per_request['bare']:.2f}")


if __name__ == "__main__":
    main()
