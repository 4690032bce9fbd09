"""What request ids, metrics and JSON request logs cost the API's hot path, in-process.

Times authenticated `GET /api/v1/me` through Flask's test client (no network, no gunicorn) on a
fresh SQLite database, with four apps over the same data, in interleaved rounds so the machine's
other load falls on all of them alike:

  without ops hooks   request ids, metrics and request logs taken out (the cost before them)
  metrics off         the default: request ids only
  metrics on          KEYWARD_METRICS_TOKEN set: one labelled counter increment and one histogram
                      observation per request
  metrics + json log  and KEYWARD_LOG_FORMAT=json, writing its request line to /dev/null

`--multiprocess` runs with PROMETHEUS_MULTIPROC_DIR set, as under gunicorn (values in mmap'd files).
`--postgres URL` puts the data in PostgreSQL instead, in a schema of its own (kw_metrics_cost,
dropped and made again).
Prints per-request wall-clock and CPU time (medians of the rounds) and each against "metrics off".

  .venv/bin/python bench/metrics_cost.py [--requests 1000] [--rounds 7] [--multiprocess] [--postgres URL]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OPS_MODULES = ("shared.core.request_ids", "shared.core.metrics", "shared.core.logs")


def _without_ops_hooks(app):
    """The app with the request-id, metrics and request-log hooks removed."""
    for table in (app.before_request_funcs, app.after_request_funcs):
        for key, functions in table.items():
            table[key] = [f for f in functions if f.__module__ not in OPS_MODULES]
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000, help="requests per app per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--multiprocess", action="store_true", help="prometheus_client's multiprocess mode")
    parser.add_argument("--postgres", metavar="URL", help="e.g. postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="kw-metrics-cost-"))
    if args.multiprocess:  # must be set before prometheus_client is imported
        (workdir / "prometheus").mkdir()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(workdir / "prometheus")
    os.environ.update(SECRET_KEY="bench", KEYWARD_TOKEN_PEPPER="bench")

    from flask_migrate import upgrade

    from shared.app import create_app
    from shared.audit.record import Actor
    from shared.core import logs
    from shared.core.extensions import db
    from shared.identity import accounts
    from shared.models import Membership
    from shared.orgs import organizations
    from shared.tokens import lifecycle
    from shared.tokens import payload as token_payload

    database_url = f"sqlite:///{workdir / 'keyward.db'}"
    if args.postgres:
        from sqlalchemy import create_engine, text

        server = args.postgres.replace("postgresql://", "postgresql+psycopg://", 1)
        engine = create_engine(server)
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA IF EXISTS kw_metrics_cost CASCADE"))
            connection.execute(text("CREATE SCHEMA kw_metrics_cost"))
        engine.dispose()
        database_url = f"{server}{'&' if '?' in server else '?'}options=-csearch_path%3Dkw_metrics_cost"
    config = {"SQLALCHEMY_DATABASE_URI": database_url,
              "KEYWARD_QUEUE_URL": f"sqlite:///{workdir / 'queue.db'}",
              "KEYWARD_RATE_LIMITS": {"enterprise": "100000000/minute"}}
    setup = create_app(config)
    with setup.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        org = organizations.create_organization("Bench", "enterprise")
        owner = accounts.add_member(org, "owner@bench.test", "owner", password="bench password 1")
        data = token_payload.parse_token_payload(
            {"name": "bench", "scopes": ["documents"], "permissions": ["read"]}, creating=True)
        _, secret = lifecycle.create_token(Actor(membership=db.session.get(Membership, owner.id)), data)
    for handler in logging.getLogger().handlers[:]:  # the migrations' own logging set-up
        logging.getLogger().removeHandler(handler)

    token = "bench-metrics-token-0123456789"
    apps = {
        "without ops hooks": _without_ops_hooks(create_app(config)),
        "metrics off": create_app(config),
        "metrics on": create_app({**config, "KEYWARD_METRICS_TOKEN": token}),
        "metrics + json log": create_app({**config, "KEYWARD_METRICS_TOKEN": token,
                                          "KEYWARD_LOG_FORMAT": "json"}),
    }
    devnull = open(os.devnull, "w")  # noqa: SIM115 - open for the whole run
    logs.install_root_handler(logging.StreamHandler(devnull), "json", logging.WARNING)
    headers = {"Authorization": f"Bearer {secret}"}
    clients = {name: app.test_client() for name, app in apps.items()}
    for client in clients.values():  # warm-up: statement caches, connection pools
        for _ in range(200):
            assert client.get("/api/v1/me", headers=headers).status_code == 200

    wall: dict[str, list[float]] = {name: [] for name in clients}
    cpu: dict[str, list[float]] = {name: [] for name in clients}
    for _ in range(args.rounds):
        for name, client in clients.items():
            started, started_cpu = time.perf_counter(), time.process_time()
            for _ in range(args.requests):
                client.get("/api/v1/me", headers=headers)
            wall[name].append((time.perf_counter() - started) / args.requests * 1e6)
            cpu[name].append((time.process_time() - started_cpu) / args.requests * 1e6)

    mode = "multiprocess (PROMETHEUS_MULTIPROC_DIR)" if args.multiprocess else "single process"
    print(f"GET /api/v1/me in-process, {'PostgreSQL' if args.postgres else 'SQLite'}, {args.requests} "
          f"requests x {args.rounds} rounds per app, prometheus_client {mode}; medians per request")
    print(f"{'app':22} {'wall':>10} {'vs off':>8} {'CPU':>10} {'vs off':>8}")
    base_wall, base_cpu = statistics.median(wall["metrics off"]), statistics.median(cpu["metrics off"])
    for name in clients:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        print(f"{name:22} {w:8.0f}us {w / base_wall - 1:+7.1%} {c:8.0f}us {c / base_cpu - 1:+7.1%}")
    if args.postgres:
        for app in [setup, *apps.values()]:
            with app.app_context():
                db.session.remove()
                db.engine.dispose()
        engine = create_engine(server)
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA kw_metrics_cost CASCADE"))
        engine.dispose()


if __name__ == "__main__":
    main()
