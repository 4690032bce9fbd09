"""Keyward's load benchmark (`make bench`): authenticated GET /api/v1/me against /healthz, and
against a Django REST framework + djangorestframework-api-key service, on SQLite and PostgreSQL.

For each database kind, one run:
  1. a fresh database (SQLite file in a temporary folder; PostgreSQL database kw_bench, recreated),
     `flask --app wsgi db upgrade`, then an enterprise organization, an owner and a token made
     with the CLI (rate limits set far above what the machine can serve);
  2. the in-process cost of one request (bench/micro.py: Flask test client, phases timed);
  3. gunicorn with gunicorn.conf.py on loopback; warm-up, then wrk loads /healthz and then
     /api/v1/me with the token, each for the same time and number of connections;
  4. the same for the comparison service (bench/drf_service, its own venv bench/.venv-drf,
     database kw_bench_drf or its own SQLite file), served by the same gunicorn version with the
     same gunicorn.conf.py and worker settings.
Then a table, the ratios, and a JSON copy in bench/results/.

`.venv/bin/python bench/run.py --help` lists the knobs (duration, workers, connections, which rows).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import platform
import resource
import runpy
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from loadgen import LoadResult, run_load, wrk_path  # noqa: E402

PYTHON = sys.executable
FLASK = [PYTHON, "-m", "flask", "--app", "wsgi"]
DRF_DIR = BENCH / "drf_service"
DRF_VENV = BENCH / ".venv-drf"
DRF_PYTHON = DRF_VENV / "bin" / "python"
RESULTS = BENCH / "results"
GUNICORN_CONF = ROOT / "gunicorn.conf.py"

KEYWARD_PG_DB = "kw_bench"
DRF_PG_DB = "kw_bench_drf"
UNLIMITED = "free=1000000000/minute;business=1000000000/minute;enterprise=1000000000/minute"
TARGET_AUTH_SHARE = 0.60  # authenticated req/s >= 60 % of the same server's /healthz
TARGET_VS_DRF = 1.5  # Keyward authenticated req/s >= 1.5 x DRF's


def say(text: str = "") -> None:
    print(text, flush=True)


# --------------------------------------------------------------------------- processes


def run(command: list[str], *, env: dict, cwd: Path = ROOT, what: str) -> str:
    completed = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"bench: {what} failed ({completed.returncode}):\n{completed.stdout}\n{completed.stderr}")
    return completed.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A gunicorn master started with gunicorn.conf.py; stopped with SIGTERM (graceful)."""

    name: str
    process: subprocess.Popen
    url: str
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def gunicorn(name: str, gunicorn_bin: Path, app: str, *, cwd: Path, env: dict, workdir: Path):
    port = free_port()
    log = workdir / f"gunicorn-{name}.log"
    command = [str(gunicorn_bin), "-c", str(GUNICORN_CONF), app]
    with open(log, "w") as handle:
        process = subprocess.Popen(command, cwd=cwd, env={**env, "BIND": f"127.0.0.1:{port}"},
                                   stdout=handle, stderr=subprocess.STDOUT)
    server = Server(name, process, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bench: gunicorn for {name} did not start:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(server.url + "/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        yield server
    finally:
        server.stop()


def server_cpu_seconds(master_pid: int) -> float:
    """User + system CPU seconds used so far by a gunicorn master and its workers (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rpartition(")")[2].split()
        except OSError:
            continue  # the process ended meanwhile
        # fields[1] is the parent pid; fields[11] and fields[12] are utime and stime (stat fields 4, 14, 15).
        if int(entry) == master_pid or int(fields[1]) == master_pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def machine_busy_seconds() -> float:
    """CPU seconds all cores have spent busy since boot (/proc/stat: everything but idle and iowait)."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU seconds of this script's finished child processes (the load generator runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def check_ok(url: str, header: str | None) -> None:
    request = urllib.request.Request(url)
    if header:
        name, _, value = header.partition(":")
        request.add_header(name.strip(), value.strip())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status == 200:
                return
    except urllib.error.HTTPError as error:
        raise SystemExit(f"bench: GET {url} answered {error.code}: {error.read()[:300]!r}") from None
    raise SystemExit(f"bench: GET {url} did not answer 200")


# --------------------------------------------------------------------------- tools


def ensure_wrk(allow_install: bool) -> str | None:
    """wrk from Debian (`apt-get install wrk`); None means the Python load generator is used."""
    if wrk_path():
        return wrk_path()
    if not allow_install:
        return None
    sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if sudo is None or not shutil.which("apt-get"):
        return None
    say("bench: wrk is missing; installing Debian's package (apt-get install wrk)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        if subprocess.run(sudo + command, env=env, capture_output=True, check=False).returncode != 0:
            return None
    return wrk_path()


def ensure_drf_venv() -> None:
    """bench/.venv-drf with requirements.txt and the Keyward venv's exact gunicorn version."""
    gunicorn_version = metadata.version("gunicorn")
    requirements = (DRF_DIR / "requirements.txt").read_text()
    stamp = DRF_VENV / (".installed-" + hashlib.sha256(
        (requirements + gunicorn_version).encode()).hexdigest()[:16])
    if stamp.exists():
        return
    say("bench: preparing the comparison service's venv (bench/.venv-drf)")
    if not DRF_PYTHON.exists():
        base = getattr(sys, "_base_executable", None) or shutil.which("python3") or PYTHON
        run([base, "-m", "venv", str(DRF_VENV)], env=dict(os.environ), what="python -m venv bench/.venv-drf")
    pip = [str(DRF_PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    run(pip + ["-r", str(DRF_DIR / "requirements.txt"), f"gunicorn=={gunicorn_version}"],
        env=dict(os.environ), what="pip install (bench/.venv-drf)")
    for old in DRF_VENV.glob(".installed-*"):
        old.unlink()
    stamp.touch()


def drf_versions() -> dict:
    code = ("import json; from importlib.metadata import version as v; print(json.dumps({p: v(p) for p in "
            "('django', 'djangorestframework', 'djangorestframework-api-key', 'gunicorn', 'psycopg')}))")
    out = run([str(DRF_PYTHON), "-c", code], env=dict(os.environ), what="versions of the DRF venv")
    return json.loads(out)


def server_settings(env: dict) -> dict:
    """What gunicorn.conf.py resolves to under `env` (the values every server in the run gets)."""
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        conf = runpy.run_path(str(GUNICORN_CONF))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return {key: conf.get(key) for key in ("workers", "worker_class", "threads", "timeout", "keepalive",
                                           "accesslog", "max_requests")}


# --------------------------------------------------------------------------- databases


def pg_admin_url(base: str) -> str:
    return base.rstrip("/") + "/postgres"


def postgres_available(base: str) -> str | None:
    try:
        import psycopg

        with psycopg.connect(pg_admin_url(base), connect_timeout=3):
            return None
    except Exception as error:
        return f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"


def recreate_pg_database(base: str, name: str) -> str:
    import psycopg

    with psycopg.connect(pg_admin_url(base), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{base.rstrip('/')}/{name}"


def redis_available(url: str) -> str | None:
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
        return None
    except Exception as error:
        return f"{type(error).__name__}: {error}"


# --------------------------------------------------------------------------- the two services


def keyward_env(database_url: str, workdir: Path, base: dict) -> dict:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("KEYWARD_", "RATELIMIT_", "TEST_"))
           and key not in {"DATABASE_URL", "SECRET_KEY", "FLASK_APP", "FLASK_DEBUG"}}
    env.update(base)
    env.update({
        "KEYWARD_ENV": "production",
        "SECRET_KEY": "bench-" + uuid.uuid4().hex,
        "KEYWARD_TOKEN_PEPPER": "bench-" + uuid.uuid4().hex,
        "DATABASE_URL": database_url,
        "KEYWARD_QUEUE_URL": f"sqlite:///{workdir / 'queue.db'}",
        "KEYWARD_RATE_LIMITS": UNLIMITED,
        "RATELIMIT_STORAGE_URI": "memory://",
        "RATELIMIT_KEY_PREFIX": "kwbench-" + uuid.uuid4().hex[:8],
        "KEYWARD_PASSWORD": "bench password " + uuid.uuid4().hex[:8],
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    return env


def prepare_keyward(env: dict) -> str:
    """Migrate, then org + owner + token through the CLI; returns the token's secret."""
    run(FLASK + ["db", "upgrade"], env=env, what="flask db upgrade")
    slug = run(FLASK + ["orgs", "create", "Bench Org", "--plan", "enterprise"], env=env,
               what="flask orgs create").strip().splitlines()[-1]
    run(FLASK + ["users", "create", "bench@example.com", "--org", slug, "--role", "owner"], env=env,
        what="flask users create")
    secret = run(FLASK + ["tokens", "create", "--org", slug, "--user", "bench@example.com", "--name", "bench",
                          "--scopes", "documents", "--permissions", "read", "--no-expiry"],
                 env=env, what="flask tokens create").strip()
    if "\n" in secret or not secret:
        raise SystemExit(f"bench: `tokens create` printed more than a secret: {secret!r}")
    return secret


def drf_env(database_url: str, base: dict) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("KEYWARD_", "TEST_"))}
    env.update(base)
    env.update({"BENCH_DRF_DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "drf_service.settings",
                "DJANGO_SECRET_KEY": "bench-" + uuid.uuid4().hex, "PYTHONDONTWRITEBYTECODE": "1"})
    return env


def prepare_drf(env: dict) -> str:
    manage = [str(DRF_PYTHON), "manage.py"]
    run(manage + ["migrate", "--verbosity", "0"], env=env, cwd=DRF_DIR, what="manage.py migrate")
    return run(manage + ["create_bench_key", "bench"], env=env, cwd=DRF_DIR,
               what="manage.py create_bench_key").strip()


# --------------------------------------------------------------------------- measuring


@dataclass
class Row:
    service: str  # keyward / drf
    database: str  # sqlite / postgresql
    rate_limits: str  # memory / redis / -
    healthz: LoadResult
    auth: LoadResult
    cpu_ms: dict[str, float] = field(default_factory=dict)  # server CPU per request: {"auth": .., "healthz": ..}

    @property
    def ratio(self) -> float:
        return self.auth.rps / self.healthz.rps if self.healthz.rps else 0.0

    def as_dict(self) -> dict:
        return {"service": self.service, "database": self.database, "rate_limits": self.rate_limits,
                "auth": self.auth.as_dict(), "healthz": self.healthz.as_dict(),
                "auth_over_healthz": self.ratio, "server_cpu_ms_per_request": self.cpu_ms}


def measure(server: Server, auth_path: str, header: str, args) -> tuple[LoadResult, LoadResult, dict]:
    healthz_url, auth_url = server.url + "/healthz", server.url + auth_path
    check_ok(healthz_url, None)
    check_ok(auth_url, header)
    load = {"connections": args.connections, "generator": args.generator, "threads": args.load_threads}
    if args.warmup > 0:
        run_load(healthz_url, duration=args.warmup, **load)
        run_load(auth_url, duration=args.warmup, header=header, **load)
    pid = server.process.pid
    machine_start, loadgen_start, started = machine_busy_seconds(), children_cpu_seconds(), time.monotonic()
    cpu_start = server_cpu_seconds(pid)
    healthz = run_load(healthz_url, duration=args.duration, **load)
    cpu_middle = server_cpu_seconds(pid)
    auth = run_load(auth_url, duration=args.duration, header=header, **load)
    cpu_end = server_cpu_seconds(pid)
    elapsed = time.monotonic() - started
    loadgen = children_cpu_seconds() - loadgen_start
    rest = machine_busy_seconds() - machine_start - (cpu_end - cpu_start) - loadgen
    cpu_ms = {"healthz": 1000 * (cpu_middle - cpu_start) / max(1, healthz.requests),
              "auth": 1000 * (cpu_end - cpu_middle) / max(1, auth.requests),
              # cores used on average while measuring: the server, the load generator, everything else
              # (the database server, and any other work on the machine, which skews the figures)
              "server_cores": (cpu_end - cpu_start) / elapsed, "loadgen_cores": loadgen / elapsed,
              "other_cores": max(0.0, rest / elapsed)}
    return healthz, auth, cpu_ms


def describe(row: Row) -> str:
    return (f"    {row.service} / {row.database}: healthz {row.healthz.rps:7.0f} req/s, "
            f"auth {row.auth.rps:7.0f} req/s (p50 {row.auth.p50_ms:.1f} ms, p99 {row.auth.p99_ms:.1f} ms), "
            f"auth/healthz {row.ratio:.2f}; server CPU per request: auth {row.cpu_ms['auth']:.2f} ms, "
            f"healthz {row.cpu_ms['healthz']:.2f} ms; cores used: server {row.cpu_ms['server_cores']:.2f}, "
            f"load generator {row.cpu_ms['loadgen_cores']:.2f}, rest of the machine {row.cpu_ms['other_cores']:.2f}"
            + (f", ERRORS healthz {row.healthz.errors} auth {row.auth.errors}"
               if row.healthz.errors or row.auth.errors else ""))


def bench_keyward(database: str, database_url: str, args, workdir: Path, server_env: dict,
                  redis_url: str | None) -> tuple[list[Row], dict | None]:
    env = keyward_env(database_url, workdir, server_env)
    say(f"  Keyward on {database}: migrating, creating org/user/token with the CLI")
    secret = prepare_keyward(env)
    header = f"Authorization: Bearer {secret}"
    micro = None
    if not args.skip_micro:
        say(f"  Keyward on {database}: in-process cost per request (bench/micro.py)")
        out = run([PYTHON, str(BENCH / "micro.py"), "--json", "--requests", str(args.micro_requests)],
                  env={**env, "BENCH_SECRET": secret}, what="bench/micro.py")
        for line in out.splitlines():
            if line.startswith("BENCH_MICRO "):
                micro = json.loads(line[len("BENCH_MICRO "):])
            else:
                say("    " + line)
    rows = []
    storages = [("memory", "memory://")]
    if redis_url and database == "postgresql":
        storages.append(("redis", redis_url))
    for label, storage in storages:
        run_env = {**env, "RATELIMIT_STORAGE_URI": storage}
        say(f"  Keyward on {database} (rate limits in {label}): serving with gunicorn, measuring")
        with gunicorn(f"keyward-{database}-{label}", ROOT / ".venv" / "bin" / "gunicorn", "wsgi:app",
                      cwd=ROOT, env=run_env, workdir=workdir) as server:
            healthz, auth, cpu_ms = measure(server, "/api/v1/me", header, args)
        rows.append(Row("keyward", database, label, healthz, auth, cpu_ms))
        say(describe(rows[-1]))
    return rows, micro


def bench_drf(database: str, database_url: str, args, workdir: Path, server_env: dict) -> Row:
    env = drf_env(database_url, server_env)
    say(f"  DRF + djangorestframework-api-key on {database}: migrating, creating an API key")
    key = prepare_drf(env)
    say(f"  DRF on {database}: serving with gunicorn, measuring")
    with gunicorn(f"drf-{database}", DRF_VENV / "bin" / "gunicorn", "drf_service.wsgi:application",
                  cwd=DRF_DIR, env=env, workdir=workdir) as server:
        healthz, auth, cpu_ms = measure(server, "/api/v1/me", f"Authorization: Api-Key {key}", args)
    row = Row("drf", database, "-", healthz, auth, cpu_ms)
    say(describe(row))
    return row


# --------------------------------------------------------------------------- report


def table(rows: list[Row]) -> str:
    head = (f"{'service':<8} {'database':<10} {'limits':<6} {'auth req/s':>10} {'healthz req/s':>13} "
            f"{'auth/hz':>7} {'auth p50':>9} {'auth p99':>9} {'hz p50':>8} {'hz p99':>8} "
            f"{'CPU/auth':>9} {'CPU/hz':>8} {'other':>5} {'errors':>6}")
    lines = [head, "-" * len(head)]
    for row in rows:
        lines.append(
            f"{row.service:<8} {row.database:<10} {row.rate_limits:<6} {row.auth.rps:10.0f} {row.healthz.rps:13.0f} "
            f"{row.ratio:7.2f} {row.auth.p50_ms:7.1f}ms {row.auth.p99_ms:7.1f}ms "
            f"{row.healthz.p50_ms:6.1f}ms {row.healthz.p99_ms:6.1f}ms "
            f"{row.cpu_ms.get('auth', 0):7.2f}ms {row.cpu_ms.get('healthz', 0):6.2f}ms "
            f"{row.cpu_ms.get('other_cores', 0):5.2f} {row.auth.errors + row.healthz.errors:6d}")
    lines.append("CPU/auth, CPU/hz: CPU time of the gunicorn processes per request (user + system, from /proc), "
                 "the database server's not included.")
    lines.append("other: cores busy with anything but the server and the load generator while measuring "
                 "(PostgreSQL's backends, and other work on the machine, which lowers that row's figures).")
    return "\n".join(lines)


def comparisons(rows: list[Row]) -> list[dict]:
    found = []
    for kw in (r for r in rows if r.service == "keyward"):
        drf = next((r for r in rows if r.service == "drf" and r.database == kw.database), None)
        found.append({
            "database": kw.database, "rate_limits": kw.rate_limits,
            "auth_over_healthz": kw.ratio, "auth_share_target_met": kw.ratio >= TARGET_AUTH_SHARE,
            "keyward_over_drf": (kw.auth.rps / drf.auth.rps) if drf and drf.auth.rps else None,
            "drf_target_met": (kw.auth.rps / drf.auth.rps >= TARGET_VS_DRF) if drf and drf.auth.rps else None,
        })
    return found


def main() -> None:
    cores = multiprocessing.cpu_count()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10, help="seconds per measurement (default 10)")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of warm-up per endpoint (default 3)")
    parser.add_argument("--workers", type=int, help="gunicorn workers (default: gunicorn.conf.py's, from the cores)")
    parser.add_argument("--worker-class", choices=["sync", "gthread"], help="default: gunicorn.conf.py's")
    parser.add_argument("--threads", type=int, help="threads per gthread worker (default: gunicorn.conf.py's)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections (default 16)")
    parser.add_argument("--load-threads", type=int, default=1, help="wrk threads / Python processes (default 1)")
    parser.add_argument("--generator", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--databases", default="sqlite,postgresql", help="comma-separated (default both)")
    parser.add_argument("--skip-drf", action="store_true", help="Keyward rows only")
    parser.add_argument("--skip-micro", action="store_true", help="no in-process measurement")
    parser.add_argument("--no-redis", action="store_true", help="no PostgreSQL + Redis rate-limit row")
    parser.add_argument("--micro-requests", type=int, default=3000)
    parser.add_argument("--no-install", action="store_true", help="never apt-get install wrk")
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432"),
                        help="PostgreSQL server (no database name); env BENCH_PG_URL")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
                        help="Redis for the rate-limit row; env BENCH_REDIS_URL")
    args = parser.parse_args()

    started = time.monotonic()
    wrk = None if args.generator == "python" else ensure_wrk(not args.no_install)
    if args.generator == "wrk" and wrk is None:
        raise SystemExit("bench: --generator wrk but wrk is not installed (apt-get install wrk)")
    args.generator = "wrk" if wrk else "python"
    wrk_version = (subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False).stdout.split("\n")[0]
                   .split(" Copyright")[0].strip() if wrk else None)

    server_env: dict[str, str] = {}
    if args.workers:
        server_env["WEB_CONCURRENCY"] = str(args.workers)
    if args.worker_class:
        server_env["GUNICORN_WORKER_CLASS"] = args.worker_class
    if args.threads:
        server_env["GUNICORN_THREADS"] = str(args.threads)
    env_for_conf = {k: v for k, v in os.environ.items()
                    if k not in {"WEB_CONCURRENCY", "GUNICORN_WORKER_CLASS", "GUNICORN_THREADS"}}
    settings = server_settings({**env_for_conf, **server_env})
    # Every server in the run gets the same resolved values, whatever the caller's environment says.
    server_env.update({"WEB_CONCURRENCY": str(settings["workers"]),
                       "GUNICORN_WORKER_CLASS": settings["worker_class"],
                       "GUNICORN_THREADS": str(settings["threads"]),
                       "GUNICORN_ACCESS_LOG": "", "GUNICORN_LOG_LEVEL": "warning",
                       "GUNICORN_MAX_REQUESTS": "0"})

    databases = [name.strip() for name in args.databases.split(",") if name.strip()]
    skipped: dict[str, str] = {}
    if "postgresql" in databases and (problem := postgres_available(args.pg_url)):
        skipped["postgresql"] = f"PostgreSQL unreachable at {args.pg_url} ({problem})"
        databases.remove("postgresql")
    redis_url = None if args.no_redis else args.redis_url
    if redis_url and "postgresql" in databases and (problem := redis_available(redis_url)):
        skipped["redis"] = f"Redis unreachable at {redis_url} ({problem})"
        redis_url = None
    if not args.skip_drf:
        ensure_drf_venv()

    versions = {"python": platform.python_version(), "gunicorn": metadata.version("gunicorn"),
                "flask": metadata.version("flask"), "sqlalchemy": metadata.version("sqlalchemy"),
                "wrk": wrk_version}
    if not args.skip_drf:
        versions["drf_venv"] = drf_versions()

    load_before = os.getloadavg()
    say("=" * 100)
    say(f"Keyward load benchmark: {cores} CPU cores, load average before {load_before[0]:.2f}")
    say(f"Server: gunicorn {versions['gunicorn']} with gunicorn.conf.py: {settings['workers']} "
        f"{settings['worker_class']} workers" + (f" x {settings['threads']} threads"
                                                  if settings['worker_class'] == 'gthread' else "")
        + ", access log off; the same settings for Keyward and for DRF")
    say(f"Load: {wrk_version or 'the Python load generator (bench/loadgen.py; costs more CPU than wrk)'}, "
        f"{args.load_threads} load thread(s), {args.connections} connections (keep-alive where the server allows), "
        f"{args.warmup:g} s warm-up then {args.duration:g} s per endpoint")
    say(f"NOTE: the load generator runs on the same {cores} cores as the server and the database, so "
        "every figure is lower than a dedicated load machine would show; both services are measured "
        "identically, so their ratios hold.")
    for reason in skipped.values():
        say(f"SKIPPED: {reason}")
    say("=" * 100)

    rows: list[Row] = []
    micro: dict[str, dict] = {}
    workdir = Path(tempfile.mkdtemp(prefix="kw-bench-"))
    try:
        for database in databases:
            say(f"\n[{database}]")
            if database == "sqlite":
                kw_url = f"sqlite:///{workdir / 'keyward.db'}"
                drf_url = f"sqlite:///{workdir / 'drf.db'}"
            elif database == "postgresql":
                kw_url = recreate_pg_database(args.pg_url, KEYWARD_PG_DB)
                drf_url = recreate_pg_database(args.pg_url, DRF_PG_DB) if not args.skip_drf else None
            else:
                raise SystemExit(f"bench: unknown database kind {database!r} (sqlite, postgresql)")
            kw_rows, kw_micro = bench_keyward(database, kw_url, args, workdir, server_env, redis_url)
            rows += kw_rows
            if kw_micro:
                micro[database] = kw_micro
            if not args.skip_drf:
                rows.append(bench_drf(database, drf_url, args, workdir, server_env))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    load_after = os.getloadavg()
    compared = comparisons(rows)
    say("\n" + "=" * 100)
    say("RESULTS (req/s: higher is better; latency: wrk's per-request percentiles under this load)")
    say(table(rows))
    say("")
    for item in compared:
        line = (f"Keyward {item['database']}" + (f" + {item['rate_limits']} rate limits"
                                                  if item['rate_limits'] != "memory" else "")
                + f": auth/healthz {item['auth_over_healthz']:.2f} "
                + f"(target >= {TARGET_AUTH_SHARE:.2f}: {'met' if item['auth_share_target_met'] else 'NOT met'})")
        if item["keyward_over_drf"] is not None:
            line += (f"; Keyward/DRF auth {item['keyward_over_drf']:.2f}x "
                     f"(target >= {TARGET_VS_DRF:.1f}x: {'met' if item['drf_target_met'] else 'NOT met'})")
        say(line)
    for database, result in micro.items():
        phases = sorted(result["phases_us"].items(), key=lambda item: -item[1])[:3]
        say(f"In-process ({database}): one authenticated GET /api/v1/me costs {result['me_us']:.0f} us "
            f"(CPU {result['me_cpu_us']:.0f} us), /healthz {result['healthz_us']:.0f} us; "
            f"authentication, rate limit, usage update and body add {result['auth_overhead_us']:.0f} us. "
            "Largest parts: " + ", ".join(f"{name} {micros:.0f} us" for name, micros in phases))
    say(f"Load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
        "(other work on the machine lowers every figure).")

    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"bench-{stamp}.json"
    path.write_text(json.dumps({
        "when": stamp, "cores": cores, "platform": platform.platform(), "versions": versions,
        "server": settings, "load": {"generator": args.generator, "connections": args.connections,
                                     "threads": args.load_threads, "warmup_s": args.warmup,
                                     "duration_s": args.duration},
        "load_average": {"before": load_before, "after": load_after},
        "skipped": skipped, "rows": [row.as_dict() for row in rows], "comparisons": compared,
        "micro": micro, "elapsed_s": round(time.monotonic() - started, 1),
    }, indent=2))
    say(f"Saved {path.relative_to(ROOT)}; the whole run took {time.monotonic() - started:.0f} s.")
    if any(row.auth.errors or row.healthz.errors for row in rows):
        raise SystemExit("bench: some requests failed (see the errors column)")


if __name__ == "__main__":
    main()
