"""Webhook delivery benchmark (`make bench-webhooks`): events delivered per second and the delay
from a token change to its delivery, with one worker (`flask --app wsgi worker`), the queue on
SQLite and on Redis (KEYWARD_QUEUE_URL), the data on SQLite.

For each queue storage, on a fresh SQLite database:
  1. an enterprise organization, an owner, and a webhook endpoint (all event types) pointing at a
     receiver on 127.0.0.1 started here, which verifies every signature;
  2. latency: the worker runs; `--paced` token creations at `--rate` per second; the delay of each
     event is its arrival at the receiver minus its row's `created_at` (written in the change's
     transaction), so it covers the commit, the queue poke, the dispatch and the signed POST;
  3. throughput: the worker is stopped, `--burst` token creations are committed, the worker starts
     again; events delivered per second between the first and the last arrival of that burst.

Then isolation (`--cases isolation`): ten organizations with one endpoint each,
`--isolation-changes` changes at `--rate` per second spread over them in turn, the worker
delivering with its default concurrency; once with all ten receivers healthy, once with one that never answers (each attempt
to it hangs until the 5 s timeout). The healthy endpoints' change-to-arrival p99 with a hanging
one should stay within 20 % of the all-healthy run: a slow receiver delays only itself.

It is a benchmark, not a test: it prints and fails only when an event is lost or a signature is
wrong. `.venv/bin/python bench/webhooks.py --help` lists the knobs.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def say(text: str = "") -> None:
    print(text, flush=True)


class Receiver:
    """Records when each event id first arrives; counts signatures that do not verify."""

    def __init__(self, hang: bool = False):
        self.secret = ""
        self.arrivals: dict[str, float] = {}
        self.requests = 0
        self.bad_signatures = 0
        self.hang = hang  # never answer: the sender times out
        self.released = threading.Event()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                if receiver.hang:
                    self.rfile.read(int(self.headers.get("Content-Length", "0")))
                    with receiver.lock:
                        receiver.requests += 1
                    # Held until the sender gives up (closes the connection at its timeout).
                    while not receiver.released.is_set():
                        if select.select([self.connection], [], [], 0.5)[0]:
                            break
                    self.close_connection = True
                    return
                arrived = time.time()
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                fields = dict(part.split("=", 1) for part in self.headers.get("Keyward-Signature", "").split(","))
                expected = hmac.new(receiver.secret.encode(), f"{fields.get('t')}.".encode() + body,
                                    hashlib.sha256).hexdigest()
                with receiver.lock:
                    receiver.requests += 1
                    if not hmac.compare_digest(expected, fields.get("v1", "")):
                        receiver.bad_signatures += 1
                    receiver.arrivals.setdefault(json.loads(body)["id"], arrived)
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/keyward"

    def count(self, ids: set[str]) -> int:
        with self.lock:
            return len(ids & self.arrivals.keys())

    def stop(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


class Worker:
    """`flask --app … worker` with this run's settings (the queue name through the app factory, so a
    Redis queue never mixes with anyone else's)."""

    def __init__(self, env: dict, queue_name: str, log: Path):
        factory = f"shared.app:create_app({{'KEYWARD_QUEUE_NAME': {queue_name!r}}})"
        with open(log, "ab") as handle:
            self.process = subprocess.Popen([sys.executable, "-m", "flask", "--app", factory, "worker"], cwd=ROOT,
                                            env=env, stdout=handle, stderr=subprocess.STDOUT)
        self.log = log
        deadline = time.monotonic() + 30
        while b"worker running" not in log.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bench: the worker did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def wait_for(receiver: Receiver, ids: set[str], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while receiver.count(ids) < len(ids):
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: only {receiver.count(ids)} of {len(ids)} events arrived in {seconds:.0f} s")
        time.sleep(0.01)


def prepare(folder: Path, queue_url: str):
    """A fresh SQLite database migrated by `flask db upgrade`, the app, the worker's environment."""
    from shared.app import create_app

    folder.mkdir()
    queue_name = f"kwbench-{uuid.uuid4().hex[:10]}"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{folder / 'keyward.db'}", "KEYWARD_QUEUE_URL": queue_url,
           "KEYWARD_WEBHOOK_ALLOW_PRIVATE": "1", "SECRET_KEY": "bench", "KEYWARD_TOKEN_PEPPER": "bench"}
    os.environ.update({key: env[key] for key in ("DATABASE_URL", "KEYWARD_QUEUE_URL", "KEYWARD_WEBHOOK_ALLOW_PRIVATE",
                                                 "SECRET_KEY", "KEYWARD_TOKEN_PEPPER")})
    migrated = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"], cwd=ROOT, env=env,
                              capture_output=True, text=True, check=False)
    if migrated.returncode != 0:
        raise SystemExit(f"bench: db upgrade failed:\n{migrated.stderr}")
    return env, queue_name, create_app({"KEYWARD_QUEUE_NAME": queue_name})


def owner_actor(name: str):
    """A new enterprise organization and its owner, acting."""
    from shared.audit.record import Actor
    from shared.core.extensions import db
    from shared.identity import accounts
    from shared.models import Membership
    from shared.orgs import organizations

    org = organizations.create_organization(name, "enterprise")
    owner = accounts.add_member(org, f"owner@{org.slug}.test", "owner", password="bench password 1")
    return Actor(membership=db.session.get(Membership, owner.id))


def token_change(actor, n: int) -> int:
    """One token created (its token.created event); the token's id."""
    from shared.tokens import lifecycle
    from shared.tokens import payload as token_payload

    data = token_payload.parse_token_payload({"name": f"bench {n}", "scopes": ["documents"],
                                              "permissions": ["read"]}, creating=True)
    token, _ = lifecycle.create_token(actor, data)
    return token.id


def events_of(token_ids: list[int]) -> dict[str, float]:
    """{event id: created_at as unix seconds} of these tokens' events."""
    from shared.core.extensions import db
    from shared.models import Event

    rows = db.session.execute(db.select(Event.public_id, Event.created_at)
                              .where(Event.token_id.in_(token_ids))).all()
    return {public_id: created.replace(tzinfo=created.tzinfo or UTC).timestamp()
            for public_id, created in rows}


def run_storage(label: str, queue_url: str, args, workdir: Path) -> dict:
    from shared.events import outbox
    from shared.webhooks import endpoints
    from shared.worker.queue import queue_for

    folder = workdir / label
    env, queue_name, app = prepare(folder, queue_url)
    receiver = Receiver()
    worker = None
    try:
        with app.app_context():
            actor = owner_actor("Bench")
            _, receiver.secret = endpoints.create_endpoint(actor, receiver.url, list(outbox.TYPES))

            def change(n: int) -> int:
                return token_change(actor, n)

            log = folder / "worker.log"
            worker = Worker(env, queue_name, log)
            paced = []
            for n in range(args.paced):
                started = time.monotonic()
                paced.append(change(n))
                time.sleep(max(0.0, 1 / args.rate - (time.monotonic() - started)))
            changed = events_of(paced)
            wait_for(receiver, set(changed), 60)
            delays = [(receiver.arrivals[event_id] - created) * 1000 for event_id, created in changed.items()]

            worker.stop()
            burst = [change(args.paced + n) for n in range(args.burst)]
            burst_events = events_of(burst)
            worker = Worker(env, queue_name, log)
            wait_for(receiver, set(burst_events), 600)
            arrivals = sorted(receiver.arrivals[event_id] for event_id in burst_events)
            rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
            queue_for(app).huey.flush()
    finally:
        if worker is not None:
            worker.stop()
        receiver.stop()
    if receiver.bad_signatures:
        raise SystemExit(f"bench: {receiver.bad_signatures} deliveries with a wrong signature")
    return {"storage": label, "events_per_second": rate, "burst": args.burst, "paced": args.paced,
            "rate": args.rate, "p50_ms": statistics.median(delays), "p99_ms": percentile(delays, 0.99),
            "max_ms": max(delays), "requests": receiver.requests}


ISOLATION_ORGS = 10


def run_isolation(label: str, queue_url: str, args, workdir: Path, hanging: bool) -> dict:
    """Ten organizations, one endpoint each (the first one's receiver hanging when `hanging`),
    paced token changes spread over them; the healthy endpoints' change-to-arrival delays."""
    from shared.events import outbox
    from shared.webhooks import endpoints
    from shared.worker.queue import queue_for

    case = "1 hanging + 9 healthy" if hanging else "10 healthy"
    workdir.mkdir(exist_ok=True)
    folder = workdir / f"{label}-isolation-{'hanging' if hanging else 'healthy'}"
    env, queue_name, app = prepare(folder, queue_url)
    receivers = [Receiver(hang=hanging and n == 0) for n in range(ISOLATION_ORGS)]
    worker = None
    try:
        with app.app_context():
            actors = [owner_actor(f"Bench {n}") for n in range(ISOLATION_ORGS)]
            for actor, receiver in zip(actors, receivers, strict=True):
                _, receiver.secret = endpoints.create_endpoint(actor, receiver.url, list(outbox.TYPES))
            worker = Worker(env, queue_name, folder / "worker.log")
            changed: list[list[int]] = [[] for _ in range(ISOLATION_ORGS)]
            for n in range(args.isolation_changes):
                started = time.monotonic()
                changed[n % ISOLATION_ORGS].append(token_change(actors[n % ISOLATION_ORGS], n))
                time.sleep(max(0.0, 1 / args.rate - (time.monotonic() - started)))
            healthy = [(receivers[n], events_of(changed[n])) for n in range(ISOLATION_ORGS)
                       if not receivers[n].hang]
            for receiver, events in healthy:
                wait_for(receiver, set(events), 60)
            delays = [(receiver.arrivals[event_id] - created) * 1000
                      for receiver, events in healthy for event_id, created in events.items()]
            worker.stop()  # the attempt in flight ends (times out) and is recorded
            worker = None
            hung = attempt_spans(receivers[0].url) if hanging else []
            queue_for(app).huey.flush()
    finally:
        if worker is not None:
            worker.stop()
        for receiver in receivers:
            receiver.stop()
    if any(receiver.bad_signatures for receiver in receivers):
        raise SystemExit("bench: deliveries with a wrong signature")
    return {"storage": label, "case": case, "deliveries": len(delays), "p50_ms": statistics.median(delays),
            "p99_ms": percentile(delays, 0.99), "max_ms": max(delays), "hanging_attempts": len(hung),
            "hanging_most_at_once": most_at_once(hung)}


def attempt_spans(url: str) -> list[tuple[float, float]]:
    """(start, end) in unix seconds of every recorded attempt to the endpoint at `url`, as the
    worker saw them."""
    from shared.core.extensions import db
    from shared.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

    db.session.rollback()  # a fresh snapshot: the worker recorded its last attempts as it stopped
    rows = db.session.execute(db.select(WebhookAttempt.attempted_at, WebhookAttempt.latency_ms)
                              .join(WebhookDelivery).join(WebhookEndpoint)
                              .where(WebhookEndpoint.url == url)).all()
    return [(at.timestamp(), at.timestamp() + latency / 1000) for at, latency in rows]


def most_at_once(spans: list[tuple[float, float]]) -> int:
    moments = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = current = 0
    for _, change in moments:
        current += change
        most = max(most, current)
    return most


def redis_reachable(url: str) -> bool:
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst", type=int, default=1000, help="token changes committed while the worker is stopped")
    parser.add_argument("--paced", type=int, default=200, help="token changes made one by one, worker running")
    parser.add_argument("--rate", type=float, default=20.0, help="paced changes per second")
    parser.add_argument("--storages", default="sqlite,redis", help="queue storages to measure: sqlite, redis")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS, help="Redis for the queue (a random queue name)")
    parser.add_argument("--isolation-changes", type=int, default=600,
                        help="token changes of each isolation run (at --rate, spread over the organizations)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="isolation runs per case, alternating healthy and hanging; the verdict compares "
                             "the median p99s (the machine's other load moves a single p99 a lot)")
    parser.add_argument("--cases", default="throughput,isolation",
                        help="throughput (one endpoint: paced and burst), isolation (one hanging endpoint)")
    args = parser.parse_args()
    cases = set(args.cases.split(","))

    rows, isolation = [], []
    with tempfile.TemporaryDirectory(prefix="kw-bench-webhooks-") as tmp:
        workdir = Path(tmp)
        for storage in args.storages.split(","):
            if storage == "sqlite":
                url = f"sqlite:///{workdir / 'queue.db'}"
            elif storage == "redis":
                if not redis_reachable(args.redis_url):
                    say(f"redis: {args.redis_url} unreachable, skipped")
                    continue
                url = args.redis_url
            else:
                raise SystemExit(f"bench: unknown storage {storage}")
            if "throughput" in cases:
                say(f"{storage}: {args.paced} changes at {args.rate:g}/s, then a burst of {args.burst} …")
                rows.append(run_storage(storage, url, args, workdir))
            if "isolation" in cases:
                for run in range(args.repeat):
                    for hanging in (False, True):
                        say(f"{storage}: isolation, {args.isolation_changes} changes at {args.rate:g}/s over "
                            f"{ISOLATION_ORGS} organizations{', one receiver hanging' if hanging else ''} …")
                        isolation.append(run_isolation(storage, url, args, workdir / f"run{run}", hanging))

    if rows:
        say()
        say("Webhook delivery, one worker, data on SQLite "
            "(events/s: burst drained; delay: change → arrival, paced)")
        say(f"{'queue':8} {'events/s':>9} {'p50 delay':>10} {'p99 delay':>10} {'max':>9}")
        for row in rows:
            say(f"{row['storage']:8} {row['events_per_second']:9.0f} {row['p50_ms']:8.1f}ms "
                f"{row['p99_ms']:8.1f}ms {row['max_ms']:7.1f}ms")
    if isolation:
        say()
        say(f"Isolation: {ISOLATION_ORGS} organizations, one endpoint each, one worker (8 delivery threads); "
            "delay of the healthy endpoints' deliveries")
        say(f"{'queue':8} {'receivers':22} {'deliveries':>10} {'p50':>9} {'p99':>9} {'max':>9} "
            f"{'hanging endpoint: attempts, most at once':>41}")
        for row in isolation:
            hung = f"{row['hanging_attempts']}, {row['hanging_most_at_once']}" if "hanging" in row["case"] else ""
            say(f"{row['storage']:8} {row['case']:22} {row['deliveries']:10} {row['p50_ms']:7.1f}ms "
                f"{row['p99_ms']:7.1f}ms {row['max_ms']:7.1f}ms {hung:>41}")
        say()
        for storage in dict.fromkeys(row["storage"] for row in isolation):
            healthy, hanging = ([row["p99_ms"] for row in isolation if row["storage"] == storage and
                                 ("hanging" in row["case"]) == hung] for hung in (False, True))
            change = statistics.median(hanging) / statistics.median(healthy) - 1
            say(f"{storage}: healthy endpoints' p99 with one hanging {statistics.median(hanging):.1f} ms, all "
                f"healthy {statistics.median(healthy):.1f} ms (median of {len(healthy)}): {change:+.0%}, "
                f"{'within' if change <= 0.20 else 'OVER'} 20 %")
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (results / f"webhooks-{stamp}.json").write_text(json.dumps(rows + isolation, indent=2))


if __name__ == "__main__":
    main()
