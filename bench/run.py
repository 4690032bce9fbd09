"""Keyward's load benchmark (`make bench`): authenticated GET /api/v1/me against a bare lookup
service (HMAC + one indexed read, bench/bare_service), a Django REST framework +
djangorestframework-api-key service (bench/drf_service) and Keyward's own /healthz; and a hot spot:
32 clients on one token against 32 clients spread over 32 tokens.

Two configurations: SQLite with 2 gunicorn workers (rate limits in memory), and PostgreSQL with
3 workers and Keyward's rate limits in Redis. For each:
  1. fresh databases (SQLite files in a temporary folder; PostgreSQL databases kw_bench,
     kw_bench_bare, kw_bench_drf, recreated); `flask --app wsgi db upgrade`, then an enterprise
     organization, an owner and 32 tokens made with Keyward's CLI (rate limits far above what the
     machine can serve); the bare service's table gets the same number of rows;
  2. the in-process cost of one request (bench/micro.py: Flask test client, phases timed);
  3. the three services (with Redis a fourth: the bare lookup also counting each request in Redis),
     each served by gunicorn with gunicorn.conf.py and the same worker settings;
     warm-up, then wrk (2 threads) loads each for the same time: GET me at 16 connections, /healthz,
     and the hot-spot pair at 32 connections; `--repeat N` runs N rounds, interleaved.
Then a table per configuration with medians and min–max spreads, the ratios against their targets,
the load averages, and a JSON copy in bench/results/.

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
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from contextlib import ExitStack, contextmanager
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
GUNICORN = Path(PYTHON).parent / "gunicorn"  # the project venv's, beside its python
BARE_DIR = BENCH / "bare_service"
DRF_DIR = BENCH / "drf_service"
DRF_VENV = BENCH / ".venv-drf"
DRF_PYTHON = DRF_VENV / "bin" / "python"
RESULTS = BENCH / "results"
GUNICORN_CONF = ROOT / "gunicorn.conf.py"

KEYWARD_PG_DB = "kw_bench"
BARE_PG_DB = "kw_bench_bare"
BARE_REDIS = "bare+redis"  # the bare lookup counting each request in Redis (Redis configuration only)
DRF_PG_DB = "kw_bench_drf"
UNLIMITED = "free=1000000000/minute;business=1000000000/minute;enterprise=1000000000/minute"
TARGET_AUTH_SHARE = 0.60  # authenticated req/s >= 60 % of the same server's /healthz
TARGET_VS_DRF = 1.5  # Keyward GET me req/s >= 1.5 x DRF's (on SQLite)
TARGET_VS_BARE_SQLITE = 0.7  # Keyward GET me req/s >= 0.7 x the bare lookup's, on SQLite
TARGET_VS_BARE_PG = 0.6  # ... and >= 0.6 x on PostgreSQL (+ Redis rate limits)
TARGET_HOTSPOT = 0.10  # one token under 32 clients: req/s within 10 % of 32 clients on 32 tokens


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


def settings_only_conf(settings: dict, workdir: Path) -> Path:
    """gunicorn.conf.py's resolved settings without its hooks and logger class, which import Keyward:
    for a service served from its own virtualenv (DRF)."""
    conf = workdir / "gunicorn-settings-only.conf.py"
    lines = ["import os", 'bind = [os.environ["BIND"]]']
    lines += [f"{key} = {value!r}" for key, value in settings.items() if value is not None]
    conf.write_text("\n".join(lines) + "\n")
    return conf


@contextmanager
def gunicorn(name: str, gunicorn_bin: Path, app: str, *, cwd: Path, env: dict, workdir: Path,
             conf: Path = GUNICORN_CONF):
    port = free_port()
    log = workdir / f"gunicorn-{name}.log"
    command = [str(gunicorn_bin), "-c", str(conf), app]
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


def prepare_keyward(env: dict, count: int) -> list[str]:
    """Migrate, then org + owner + `count` tokens through the CLI (bench/seed_keyward.py); their secrets."""
    run(FLASK + ["db", "upgrade"], env=env, what="flask db upgrade")
    out = run([PYTHON, str(BENCH / "seed_keyward.py"), "--tokens", str(count)], env=env,
              what="bench/seed_keyward.py")
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH_SECRETS ")), None)
    if line is None:
        raise SystemExit(f"bench: bench/seed_keyward.py printed no secrets:\n{out}")
    return json.loads(line[len("BENCH_SECRETS "):])


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


# --------------------------------------------------------------------------- measuring


@dataclass
class Case:
    """One kind of measurement: which path, how many connections, which token(s)."""

    key: str  # me / healthz / hot-1 / hot-n
    label: str
    connections: int
    tokens: int  # 0: no Authorization header; 1: the first token; n > 1: rotating over n tokens
    rotate: bool = False  # the rotating wrk script, also with one token (same per-request cost)


@dataclass
class Sample:
    round: int
    result: LoadResult
    cpu_ms: float  # CPU time (user + system) of the gunicorn processes per completed request
    server_cores: float
    loadgen_cores: float
    other_cores: float  # cores busy with neither the server nor wrk: the database, other work on the machine
    load_before: float  # 1-minute load average just before and just after this measurement
    load_after: float

    def as_dict(self) -> dict:
        return {"round": self.round, **self.result.as_dict(), "server_cpu_ms_per_request": self.cpu_ms,
                "server_cores": self.server_cores, "loadgen_cores": self.loadgen_cores,
                "other_cores": self.other_cores, "load_average_1m": [self.load_before, self.load_after]}


@dataclass
class Series:
    """The samples of one service and case, one per round."""

    service: str
    case: Case
    samples: list[Sample] = field(default_factory=list)

    def values(self, name: str) -> list[float]:
        """A figure of every round: of the load result (rps, p50_ms, ...) or of the sample (cpu_ms, ...)."""
        return [getattr(s, name) if name in Sample.__dataclass_fields__ else getattr(s.result, name)
                for s in self.samples]

    def median(self, name: str) -> float:
        return statistics.median(self.values(name)) if self.samples else 0.0

    def spread(self, name: str) -> tuple[float, float]:
        values = self.values(name)
        return (min(values), max(values)) if values else (0.0, 0.0)

    @property
    def errors(self) -> int:
        return sum(s.result.errors for s in self.samples)

    def as_dict(self) -> dict:
        return {"service": self.service, "case": self.case.key, "label": self.case.label,
                "connections": self.case.connections, "tokens": self.case.tokens,
                "rps_median": self.median("rps"), "rps_min_max": self.spread("rps"),
                "p50_ms_median": self.median("p50_ms"), "p99_ms_median": self.median("p99_ms"),
                "p99_ms_min_max": self.spread("p99_ms"), "server_cpu_ms_median": self.median("cpu_ms"),
                "errors": self.errors, "samples": [s.as_dict() for s in self.samples]}


@dataclass
class Service:
    name: str  # keyward / bare / bare+redis / drf
    server: Server
    path: str
    headers: list[str]  # "Authorization: ..." for each seeded token, the first one used by "me"
    cases: list[Case]
    series: dict[str, Series] = field(default_factory=dict)


def take_sample(service: Service, case: Case, round_index: int, args, *, duration: float) -> Sample:
    path = "/healthz" if case.key == "healthz" else service.path
    header = service.headers[0] if case.tokens == 1 and not case.rotate else None
    rotate = service.headers[:case.tokens] if case.rotate else None
    pid = service.server.process.pid
    load_before = os.getloadavg()[0]
    machine_start, loadgen_start, started = machine_busy_seconds(), children_cpu_seconds(), time.monotonic()
    cpu_start = server_cpu_seconds(pid)
    result = run_load(service.server.url + path, duration=duration, connections=case.connections,
                      header=header, rotate=rotate, generator=args.generator, threads=args.load_threads)
    cpu_end = server_cpu_seconds(pid)
    elapsed = time.monotonic() - started
    loadgen = children_cpu_seconds() - loadgen_start
    rest = machine_busy_seconds() - machine_start - (cpu_end - cpu_start) - loadgen
    return Sample(round=round_index, result=result,
                  cpu_ms=1000 * (cpu_end - cpu_start) / max(1, result.requests),
                  server_cores=(cpu_end - cpu_start) / elapsed, loadgen_cores=loadgen / elapsed,
                  other_cores=max(0.0, rest / elapsed), load_before=load_before,
                  load_after=os.getloadavg()[0])


def describe(service: Service, case: Case, sample: Sample) -> str:
    r = sample.result
    return (f"    round {sample.round + 1}: {service.name:<10} {case.label:<22} c{case.connections:<3} "
            f"{r.rps:7.0f} req/s  p50 {r.p50_ms:6.1f} ms  p99 {r.p99_ms:6.1f} ms  "
            f"server CPU {sample.cpu_ms:5.2f} ms/req  cores: server {sample.server_cores:.2f} "
            f"wrk {sample.loadgen_cores:.2f} other {sample.other_cores:.2f}  "
            f"load {sample.load_before:.2f}->{sample.load_after:.2f}"
            + (f"  ERRORS {r.errors}" if r.errors else ""))


def make_cases(args) -> dict[str, list[Case]]:
    me = Case("me", "GET me", args.connections, 1)
    healthz = Case("healthz", "GET /healthz", args.connections, 0)
    hot = [Case("hot-1", "GET me, 1 token", args.hot_connections, 1, rotate=True),
           Case("hot-n", f"GET me, {args.tokens} tokens", args.hot_connections, args.tokens, rotate=True)]
    return {"keyward": [me, healthz] + ([] if args.skip_hotspot else hot),
            "bare": [me] + ([] if args.skip_hotspot else hot),
            BARE_REDIS: [me],
            "drf": [me, healthz]}


def measure_all(services: list[Service], args) -> None:
    """Warm every server up, then `--repeat` rounds. Within a round the figures that are compared with
    each other are taken back to back (every service's `me`, then /healthz, then each hot-spot pair),
    and odd rounds run each group in reverse order, so a drift of the machine's load does not
    always favour the same side."""
    for service in services:
        check_ok(service.server.url + "/healthz", None)
        for header in service.headers:  # every seeded token must be accepted before it is measured
            check_ok(service.server.url + service.path, header)
        for case in service.cases:
            service.series[case.key] = Series(service.name, case)
    if args.warmup > 0:
        for service in services:
            for case in service.cases:
                if case.key in ("me", "healthz"):
                    take_sample(service, case, -1, args, duration=args.warmup)
    groups = [[(s, c) for s in services for c in s.cases if c.key == "me"],
              [(s, c) for s in services for c in s.cases if c.key == "healthz"]]
    groups += [[(s, c) for c in s.cases if c.key.startswith("hot-")] for s in services]
    for round_index in range(args.repeat):
        for group in groups:
            for service, case in (group if round_index % 2 == 0 else list(reversed(group))):
                sample = take_sample(service, case, round_index, args, duration=args.duration)
                service.series[case.key].samples.append(sample)
                say(describe(service, case, sample))


# --------------------------------------------------------------------------- the configurations


@dataclass
class Config:
    name: str  # sqlite / postgresql+redis / postgresql (Redis unavailable or --no-redis)
    database: str
    rate_limits: str  # memory / redis
    workers: int
    settings: dict = field(default_factory=dict)
    services: list[Service] = field(default_factory=list)
    micro: dict | None = None
    load_average: dict = field(default_factory=dict)
    comparisons: list[dict] = field(default_factory=list)


def resolve_server(args, workers: int) -> tuple[dict, dict]:
    """gunicorn.conf.py's resolved settings for this configuration, and the environment giving every
    server of the configuration exactly those values, whatever the caller's environment says."""
    server_env: dict[str, str] = {"WEB_CONCURRENCY": str(workers)}
    if args.worker_class:
        server_env["GUNICORN_WORKER_CLASS"] = args.worker_class
    if args.threads:
        server_env["GUNICORN_THREADS"] = str(args.threads)
    env_for_conf = {k: v for k, v in os.environ.items()
                    if k not in {"WEB_CONCURRENCY", "GUNICORN_WORKER_CLASS", "GUNICORN_THREADS"}}
    settings = server_settings({**env_for_conf, **server_env})
    server_env.update({"WEB_CONCURRENCY": str(settings["workers"]),
                       "GUNICORN_WORKER_CLASS": settings["worker_class"],
                       "GUNICORN_THREADS": str(settings["threads"]),
                       "GUNICORN_ACCESS_LOG": "", "GUNICORN_LOG_LEVEL": "warning",
                       "GUNICORN_MAX_REQUESTS": "0"})
    return settings, server_env


def describe_settings(settings: dict) -> str:
    return (f"{settings['workers']} {settings['worker_class']} workers"
            + (f" x {settings['threads']} threads" if settings["worker_class"] == "gthread" else ""))


def bare_env(database_url: str, base: dict) -> dict:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("KEYWARD_", "RATELIMIT_", "TEST_", "BENCH_BARE_"))}
    env.update(base)
    env.update({"BENCH_BARE_DATABASE_URL": database_url, "BENCH_BARE_PEPPER": "bench-" + uuid.uuid4().hex,
                "PYTHONDONTWRITEBYTECODE": "1"})
    return env


def prepare_bare(env: dict, count: int) -> list[str]:
    """The same number of rows as Keyward's tokens; keys shaped like Keyward's (prefix + random)."""
    keys = ["bare_" + secrets.token_urlsafe(32) for _ in range(count)]
    completed = subprocess.run([PYTHON, str(BARE_DIR / "app.py"), "seed"], input="\n".join(keys), env=env,
                               cwd=BARE_DIR, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"bench: seeding the bare service failed:\n{completed.stdout}\n{completed.stderr}")
    return keys


def database_urls(config: Config, workdir: Path, args) -> dict[str, str]:
    if config.database == "sqlite":
        return {name: f"sqlite:///{workdir / f'{name}.db'}" for name in ("keyward", "bare", "drf")}
    urls = {"keyward": recreate_pg_database(args.pg_url, KEYWARD_PG_DB)}
    if not args.skip_bare:
        urls["bare"] = recreate_pg_database(args.pg_url, BARE_PG_DB)
    if not args.skip_drf:
        urls["drf"] = recreate_pg_database(args.pg_url, DRF_PG_DB)
    return urls


def bench_config(config: Config, args, workdir: Path, redis_url: str | None) -> None:
    config.settings, server_env = resolve_server(args, config.workers)
    say(f"\n[{config.name}: {describe_settings(config.settings)}, rate limits in {config.rate_limits}, "
        f"{args.tokens} tokens]")
    urls = database_urls(config, workdir, args)
    env = keyward_env(urls["keyward"], workdir, server_env)
    env["RATELIMIT_STORAGE_URI"] = redis_url if config.rate_limits == "redis" else "memory://"
    say(f"  Keyward: migrating; an enterprise organization, its owner and {args.tokens} tokens "
        "through the CLI")
    keyward_secrets = prepare_keyward(env, args.tokens)
    if not args.skip_micro:
        say("  Keyward: in-process cost per request (bench/micro.py)")
        out = run([PYTHON, str(BENCH / "micro.py"), "--json", "--requests", str(args.micro_requests)],
                  env={**env, "BENCH_SECRET": keyward_secrets[0]}, what="bench/micro.py")
        for line in out.splitlines():
            if line.startswith("BENCH_MICRO "):
                config.micro = json.loads(line[len("BENCH_MICRO "):])
            else:
                say("    " + line)
    cases = make_cases(args)
    plan = [("keyward", ROOT, GUNICORN, "wsgi:app", env, "/api/v1/me",
             [f"Authorization: Bearer {s}" for s in keyward_secrets])]
    if not args.skip_bare:
        say(f"  bare lookup service: its own table with the same {args.tokens} rows")
        b_env = bare_env(urls["bare"], server_env)
        bare_headers = [f"Authorization: Bearer {k}" for k in prepare_bare(b_env, args.tokens)]
        plan.append(("bare", BARE_DIR, GUNICORN, "app:app", b_env, "/me", bare_headers))
        if config.rate_limits == "redis":
            say("  bare lookup + Redis count: the same service and rows, counting each request in Redis")
            plan.append((BARE_REDIS, BARE_DIR, GUNICORN, "app:app", {**b_env, "BENCH_BARE_REDIS_URL": redis_url},
                         "/me", bare_headers))
    if not args.skip_drf:
        say("  DRF + djangorestframework-api-key: migrating, creating an API key")
        d_env = drf_env(urls["drf"], server_env)
        plan.append(("drf", DRF_DIR, DRF_VENV / "bin" / "gunicorn", "drf_service.wsgi:application", d_env,
                     "/api/v1/me", [f"Authorization: Api-Key {prepare_drf(d_env)}"]))
    say(f"  serving each with gunicorn -c gunicorn.conf.py ({describe_settings(config.settings)}); measuring "
        f"{args.repeat} round(s) of {args.duration:g} s per figure after {args.warmup:g} s of warm-up")
    config.load_average["before"] = os.getloadavg()
    with ExitStack() as stack:
        for name, cwd, binary, app, service_env, path, headers in plan:
            conf = settings_only_conf(config.settings, workdir) if name == "drf" else GUNICORN_CONF
            server = stack.enter_context(gunicorn(f"{name}-{config.name}", binary, app, cwd=cwd,
                                                  env=service_env, workdir=workdir, conf=conf))
            config.services.append(Service(name, server, path, headers, cases[name]))
        measure_all(config.services, args)
    config.load_average["after"] = os.getloadavg()
    config.comparisons = comparisons(config, args)


# --------------------------------------------------------------------------- report


def ratio_of(a: Series | None, b: Series | None) -> list[float] | None:
    """a's req/s over b's, round by round (the two were measured close together in each round)."""
    if a is None or b is None or not a.samples or len(a.samples) != len(b.samples):
        return None
    return [x.result.rps / y.result.rps if y.result.rps else 0.0 for x, y in zip(a.samples, b.samples, strict=False)]


def comparisons(config: Config, args) -> list[dict]:
    series = {(s.name, key): found for s in config.services for key, found in s.series.items()}
    sqlite = config.database == "sqlite"
    wanted = [
        ("Keyward / bare, GET me", ("keyward", "me"), ("bare", "me"),
         ("min", TARGET_VS_BARE_SQLITE if sqlite else TARGET_VS_BARE_PG)),
        ("Keyward / DRF, GET me", ("keyward", "me"), ("drf", "me"),
         ("min", TARGET_VS_DRF) if sqlite else None),
        ("Keyward GET me / GET /healthz", ("keyward", "me"), ("keyward", "healthz"),
         ("min", TARGET_AUTH_SHARE)),
        (f"Keyward hot spot: 1 token / {args.tokens} tokens", ("keyward", "hot-1"), ("keyward", "hot-n"),
         ("within", TARGET_HOTSPOT)),
        (f"bare hot spot: 1 token / {args.tokens} tokens", ("bare", "hot-1"), ("bare", "hot-n"), None),
        ("Keyward / bare + Redis count, GET me", ("keyward", "me"), (BARE_REDIS, "me"), None),
    ]
    found = []
    for name, top, bottom, target in wanted:
        rounds = ratio_of(series.get(top), series.get(bottom))
        if rounds is None:
            continue
        value = statistics.median(rounds)
        met = None
        if target and target[0] == "min":
            met = value >= target[1]
        elif target:
            met = abs(1 - value) <= target[1]
        # The same comparison by server CPU per request (the inverse ratio): what the req/s ratio would be
        # if both servers had the cores to themselves. Not for the hot spot, whose cost is waiting.
        cpu_ratio = None
        if not top[1].startswith("hot-") and series[top].median("cpu_ms"):
            cpu_ratio = series[bottom].median("cpu_ms") / series[top].median("cpu_ms")
        found.append({"name": name, "of": list(top), "over": list(bottom), "median": value,
                      "rounds": rounds, "cpu_ratio": cpu_ratio, "target": list(target) if target else None,
                      "met": met})
    return found


def fmt_range(low: float, high: float, digits: int = 0) -> str:
    return f"{low:.{digits}f}–{high:.{digits}f}"


def table(config: Config, args) -> str:
    spread = args.repeat > 1
    head = (f"{'service':<11}{'measurement':<22}{'conns':>5} {'req/s':>7}"
            + (f" {'(min–max)':<13}" if spread else "")
            + f" {'p50':>8} {'p99':>8}" + (f" {'(p99 min–max)':<15}" if spread else "")
            + f" {'CPU/req':>8} {'other':>5} {'errors':>6}")
    lines = [head, "-" * len(head)]
    for service in config.services:
        for case in service.cases:
            s = service.series[case.key]
            lines.append(
                f"{service.name:<11}{case.label:<22}{case.connections:>5} {s.median('rps'):7.0f}"
                + (f" ({fmt_range(*s.spread('rps'))})".ljust(14) if spread else "")
                + f" {s.median('p50_ms'):6.1f}ms {s.median('p99_ms'):6.1f}ms"
                + (f" ({fmt_range(*s.spread('p99_ms'), 1)})".ljust(16) if spread else "")
                + f" {s.median('cpu_ms'):6.2f}ms {s.median('other_cores'):5.2f} {s.errors:6d}")
    return "\n".join(lines)


def describe_comparison(item: dict, repeat: int) -> str:
    rounds = item["rounds"]
    text = f"  {item['name']:<40} {item['median']:5.2f}"
    text += f"  (rounds {fmt_range(min(rounds), max(rounds), 2)})" if repeat > 1 else ""
    text += f"  by CPU/req {item['cpu_ratio']:4.2f}" if item["cpu_ratio"] is not None else ""
    target = item["target"]
    if target is None and item["over"][0] == BARE_REDIS:
        note = "no target: both count in Redis (bench/README.md)"
    elif target is None:
        note = "no target (Keyward/DRF targets SQLite only)" if item["of"][1] == "me" else \
            "control: no per-token state, no target"
    elif target[0] == "min":
        note = f"target >= {target[1]:.2f}: {'met' if item['met'] else 'NOT met'}"
    else:
        note = f"target within {target[1]:.0%}: {'met' if item['met'] else 'NOT met'}"
    return f"{text.ljust(90 if repeat > 1 else 66)} {note}"


def main() -> None:
    cores = multiprocessing.cpu_count()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10, help="seconds per measurement (default 10)")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of warm-up per endpoint (default 3)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of every measurement; > 1 prints medians and the min–max spread "
                        "(default 1)")
    parser.add_argument("--sqlite-workers", type=int, default=2,
                        help="gunicorn workers on SQLite (default 2)")
    parser.add_argument("--pg-workers", type=int, default=3,
                        help="gunicorn workers on PostgreSQL (+ Redis) (default 3)")
    parser.add_argument("--workers", type=int,
                        help="gunicorn workers for every configuration (overrides both)")
    parser.add_argument("--worker-class", choices=["sync", "gthread"], help="default: gunicorn.conf.py's")
    parser.add_argument("--threads", type=int, help="threads per gthread worker (default: gunicorn.conf.py's)")
    parser.add_argument("--connections", type=int, default=16,
                        help="connections for GET me and /healthz (default 16)")
    parser.add_argument("--hot-connections", type=int, default=32,
                        help="connections in the hot-spot case (default 32)")
    parser.add_argument("--tokens", type=int, default=32,
                        help="tokens seeded for Keyward (rows for the bare service) and rotated over "
                        "(default 32)")
    parser.add_argument("--load-threads", type=int, default=2,
                        help="wrk threads / Python processes (default 2)")
    parser.add_argument("--generator", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--databases", default="sqlite,postgresql", help="comma-separated (default both)")
    parser.add_argument("--skip-drf", action="store_true", help="no DRF service")
    parser.add_argument("--skip-bare", action="store_true", help="no bare lookup service")
    parser.add_argument("--skip-hotspot", action="store_true", help="no 1-token / many-tokens case")
    parser.add_argument("--skip-micro", action="store_true", help="no in-process measurement")
    parser.add_argument("--no-redis", action="store_true",
                        help="PostgreSQL with rate limits in memory, not Redis")
    parser.add_argument("--micro-requests", type=int, default=3000)
    parser.add_argument("--no-install", action="store_true", help="never apt-get install wrk")
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432"),
                        help="PostgreSQL server (no database name); env BENCH_PG_URL")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
                        help="Redis for Keyward's rate limits on PostgreSQL; env BENCH_REDIS_URL")
    args = parser.parse_args()
    if args.repeat < 1 or args.tokens < 2:
        parser.error("--repeat must be >= 1 and --tokens >= 2")

    started = time.monotonic()
    wrk = None if args.generator == "python" else ensure_wrk(not args.no_install)
    if args.generator == "wrk" and wrk is None:
        raise SystemExit("bench: --generator wrk but wrk is not installed (apt-get install wrk)")
    args.generator = "wrk" if wrk else "python"
    wrk_version = (subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False).stdout.split("\n")[0]
                   .split(" Copyright")[0].strip() if wrk else None)

    databases = [name.strip() for name in args.databases.split(",") if name.strip()]
    unknown = set(databases) - {"sqlite", "postgresql"}
    if unknown:
        raise SystemExit(f"bench: unknown database kind(s) {sorted(unknown)} (sqlite, postgresql)")
    skipped: dict[str, str] = {}
    if "postgresql" in databases and (problem := postgres_available(args.pg_url)):
        skipped["postgresql"] = f"PostgreSQL unreachable at {args.pg_url} ({problem})"
        databases.remove("postgresql")
    redis_url = None if args.no_redis else args.redis_url
    if redis_url and "postgresql" in databases and (problem := redis_available(redis_url)):
        skipped["redis"] = (f"Redis unreachable at {redis_url} ({problem}); PostgreSQL runs with rate limits "
                            "in memory")
        redis_url = None
    if not args.skip_drf:
        ensure_drf_venv()

    configs = []
    for database in databases:
        if database == "sqlite":
            configs.append(Config("sqlite", "sqlite", "memory", args.workers or args.sqlite_workers))
        else:
            configs.append(Config("postgresql+redis" if redis_url else "postgresql", "postgresql",
                                  "redis" if redis_url else "memory", args.workers or args.pg_workers))

    versions = {"python": platform.python_version(), "gunicorn": metadata.version("gunicorn"),
                "flask": metadata.version("flask"), "sqlalchemy": metadata.version("sqlalchemy"),
                "psycopg": metadata.version("psycopg"), "wrk": wrk_version}
    if not args.skip_drf:
        versions["drf_venv"] = drf_versions()

    load_before = os.getloadavg()
    say("=" * 100)
    say(f"Keyward load benchmark: {cores} CPU cores, load average before "
        + " / ".join(f"{v:.2f}" for v in load_before) + " (1 / 5 / 15 min)")
    say(f"Servers: gunicorn {versions['gunicorn']} with gunicorn.conf.py, access log off; in each "
        "configuration Keyward, the bare lookup service and DRF get the same workers and worker class")
    say(f"Load: {wrk_version or 'the Python load generator (bench/loadgen.py; costs more CPU than wrk)'}, "
        f"{args.load_threads} load thread(s), {args.connections} connections ({args.hot_connections} in the "
        f"hot-spot case), {args.warmup:g} s warm-up, then {args.duration:g} s per figure, "
        f"{args.repeat} round(s)")
    say(f"NOTE: the load generator runs on the same {cores} cores as the servers and the database, and other "
        "work on the machine lowers every figure; the services are measured identically and back to back, "
        "so their ratios are what to compare.")
    for reason in skipped.values():
        say(f"SKIPPED: {reason}")
    say("=" * 100)

    workdir = Path(tempfile.mkdtemp(prefix="kw-bench-"))
    try:
        for config in configs:
            bench_config(config, args, workdir, redis_url)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    load_after = os.getloadavg()
    say("\n" + "=" * 100)
    say("RESULTS (req/s: higher is better; p50/p99: wrk's per-request latency under that load"
        + ("; medians of the rounds, (min–max) their spread" if args.repeat > 1 else "") + ")")
    for config in configs:
        before, after = config.load_average["before"][0], config.load_average["after"][0]
        say(f"\n{config.name}: {describe_settings(config.settings)}, rate limits in {config.rate_limits}, "
            f"{args.tokens} tokens; load average {before:.2f} -> {after:.2f}")
        say(table(config, args))
        for item in config.comparisons:
            say(describe_comparison(item, args.repeat))
        if config.micro:
            result = config.micro
            phases = sorted(result["phases_us"].items(), key=lambda item: -item[1])[:3]
            say(f"  In-process: GET /api/v1/me {result['me_us']:.0f} us (CPU {result['me_cpu_us']:.0f} us), "
                f"/healthz {result['healthz_us']:.0f} us; largest parts: "
                + ", ".join(f"{name} {micros:.0f} us" for name, micros in phases))
    say("\nCPU/req: CPU time of that service's gunicorn processes per request (user + system, from /proc; "
        "the database server's not included). other: cores busy with anything but that server and wrk while "
        "measuring (PostgreSQL's backends, and other work on the machine, which lowers that row's figures).")
    say("Load average before " + " / ".join(f"{v:.2f}" for v in load_before) + ", after "
        + " / ".join(f"{v:.2f}" for v in load_after) + " (1 / 5 / 15 min).")

    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"bench-{stamp}.json"
    path.write_text(json.dumps({
        "when": stamp, "cores": cores, "platform": platform.platform(), "versions": versions,
        "load": {"generator": args.generator, "connections": args.connections,
                 "hot_connections": args.hot_connections, "tokens": args.tokens, "threads": args.load_threads,
                 "warmup_s": args.warmup, "duration_s": args.duration, "repeat": args.repeat},
        "load_average": {"before": load_before, "after": load_after}, "skipped": skipped,
        "configurations": [{
            "name": c.name, "database": c.database, "rate_limits": c.rate_limits, "server": c.settings,
            "load_average": c.load_average,
            "series": [s.as_dict() for svc in c.services for s in svc.series.values()],
            "comparisons": c.comparisons, "micro": c.micro} for c in configs],
        "elapsed_s": round(time.monotonic() - started, 1),
    }, indent=2))
    say(f"Saved {path.relative_to(ROOT)}; the whole run took {time.monotonic() - started:.0f} s.")
    if any(series.errors for c in configs for svc in c.services for series in svc.series.values()):
        raise SystemExit("bench: some requests failed (see the errors column)")


if __name__ == "__main__":
    main()
