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

It is a benchmark, not a test: it prints and fails only when an event is lost or a signature is
wrong. `.venv/bin/python bench/webhooks.py --help` lists the knobs.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
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

    def __init__(self):
        self.secret = ""
        self.arrivals: dict[str, float] = {}
        self.requests = 0
        self.bad_signatures = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
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


def run_storage(label: str, queue_url: str, args, workdir: Path) -> dict:
    from shared.app import create_app
    from shared.audit.record import Actor
    from shared.core.extensions import db
    from shared.events import outbox
    from shared.identity import accounts
    from shared.models import Event, Membership
    from shared.orgs import organizations
    from shared.tokens import lifecycle
    from shared.tokens import payload as token_payload
    from shared.webhooks import endpoints
    from shared.worker.queue import queue_for

    folder = workdir / label
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
    app = create_app({"KEYWARD_QUEUE_NAME": queue_name})
    receiver = Receiver()
    worker = None
    try:
        with app.app_context():
            org = organizations.create_organization("Bench", "enterprise")
            owner = accounts.add_member(org, "owner@bench.test", "owner", password="bench password 1")
            actor = Actor(membership=db.session.get(Membership, owner.id))
            _, receiver.secret = endpoints.create_endpoint(actor, receiver.url, list(outbox.TYPES))

            def change(n: int) -> str:
                data = token_payload.parse_token_payload({"name": f"bench {n}", "scopes": ["documents"],
                                                   "permissions": ["read"]}, creating=True)
                token, _ = lifecycle.create_token(actor, data)
                return token.id

            def events_of(token_ids: list[int]) -> dict[str, float]:
                rows = db.session.execute(db.select(Event.public_id, Event.created_at)
                                          .where(Event.token_id.in_(token_ids))).all()
                return {public_id: created.replace(tzinfo=created.tzinfo or UTC).timestamp()
                        for public_id, created in rows}

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


def redis_reachable(url: str) -> bool:
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception:  # noqa: BLE001 - any failure means: skip the Redis row
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst", type=int, default=1000, help="token changes committed while the worker is stopped")
    parser.add_argument("--paced", type=int, default=200, help="token changes made one by one, worker running")
    parser.add_argument("--rate", type=float, default=20.0, help="paced changes per second")
    parser.add_argument("--storages", default="sqlite,redis", help="queue storages to measure: sqlite, redis")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS, help="Redis for the queue (a random queue name)")
    args = parser.parse_args()

    rows = []
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
            say(f"{storage}: {args.paced} changes at {args.rate:g}/s, then a burst of {args.burst} …")
            rows.append(run_storage(storage, url, args, workdir))

    say()
    say("Webhook delivery, one worker, data on SQLite (events/s: burst drained; delay: change → arrival, paced)")
    say(f"{'queue':8} {'events/s':>9} {'p50 delay':>10} {'p99 delay':>10} {'max':>9}")
    for row in rows:
        say(f"{row['storage']:8} {row['events_per_second']:9.0f} {row['p50_ms']:8.1f}ms {row['p99_ms']:8.1f}ms "
            f"{row['max_ms']:7.1f}ms")
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (results / f"webhooks-{stamp}.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
