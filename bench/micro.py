"""The cost of one request in-process: Flask's test client, no network, no gunicorn.

Run by bench/run.py against the database it prepared (DATABASE_URL and BENCH_SECRET in the
environment); alone: `DATABASE_URL=... BENCH_SECRET=kw_... .venv/bin/python bench/micro.py`.

It times N calls of GET /healthz and of authenticated GET /api/v1/me, then splits the
authenticated request into its phases by wrapping the service functions the request path calls
(each wrapper costs well under a microsecond). `--profile` adds a cProfile listing.
Prints a table and, with --json, one JSON line starting with BENCH_MICRO.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# (module, function or Class.method, phase): the request path of GET /api/v1/me (api/auth.py token_required).
PROBES = [
    ("api.auth", "extract_credentials", "read the header"),
    ("shared.tokens.authn", "is_well_formed", "format and checksum"),
    ("shared.tokens.authn", "hash_secret", "HMAC-SHA256 of the secret"),
    ("shared.tokens.authn", "find_token", "lookup (one query)"),
    ("shared.tokens.authn", "authenticate", "other authentication checks"),
    ("shared.core.ratelimits", "refuse_if_failing", "rate limits (failures + per token)"),
    ("shared.core.ratelimits", "hit_token", "rate limits (failures + per token)"),
    ("shared.tokens.usage_flush", "UsageAccounting.count_request", "usage tally (no database write)"),
    ("shared.tokens.summary", "token_summary", "response body (summary + JSON)"),
    ("api.views", "jsonify", "response body (summary + JSON)"),
]
# Calls nested in another probe: their time is taken out of the enclosing phase.
NESTED_IN = {
    "hash_secret": "authenticate",
    "find_token": "authenticate",
    "is_well_formed": "authenticate",
    "hit_token": "UsageAccounting.count_request",
}


def _install_probes(totals: collections.Counter) -> list[str]:
    """Wrap each probed function; returns the ones that could not be found (code moved on)."""
    import importlib

    missing = []
    for module_name, name, _ in PROBES:
        owner = importlib.import_module(module_name)
        *path, attribute = name.split(".")
        for part in path:
            owner = getattr(owner, part, None)
        original = getattr(owner, attribute, None)
        if original is None:
            missing.append(f"{module_name}.{name}")
            continue

        def probe(*args, __original=original, __name=name, **kwargs):
            start = time.perf_counter()
            try:
                return __original(*args, **kwargs)
            finally:
                totals[__name] += time.perf_counter() - start

        setattr(owner, attribute, probe)
    return missing


def _exclusive(totals: collections.Counter) -> dict[str, float]:
    own = dict(totals)
    for inner, outer in NESTED_IN.items():
        if inner in own and outer in own:
            own[outer] -= totals[inner]
    return own


def _time_requests(client, path: str, headers: dict, count: int, rounds: int) -> tuple[float, float]:
    """Medians over `rounds` of the wall-clock and the CPU seconds per request.

    CPU time (this process, all threads) hardly moves when other work shares the machine;
    wall-clock time also holds the waits for the database.
    """
    wall, cpu = [], []
    for _ in range(rounds):
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(count):
            response = client.get(path, headers=headers)
            if response.status_code != 200:
                raise SystemExit(f"GET {path} answered {response.status_code}: {response.get_data(True)[:300]}")
        wall.append((time.perf_counter() - start) / count)
        cpu.append((time.process_time() - start_cpu) / count)
    return statistics.median(wall), statistics.median(cpu)


def measure(requests: int = 3000, rounds: int = 5, profile: bool = False) -> dict:
    rounds = max(1, rounds)
    from shared.app import create_app

    secret = os.environ["BENCH_SECRET"]
    app = create_app()
    client = app.test_client()
    auth = {"Authorization": f"Bearer {secret}"}
    per_round = max(1, requests // rounds)

    for _ in range(300):  # warm-up: imports, statement caches, connection pool
        client.get("/healthz")
        client.get("/api/v1/me", headers=auth)

    healthz, healthz_cpu = _time_requests(client, "/healthz", {}, per_round, rounds)
    me, me_cpu = _time_requests(client, "/api/v1/me", auth, per_round, rounds)

    totals: collections.Counter = collections.Counter()
    missing = _install_probes(totals)
    client.get("/api/v1/me", headers=auth)
    totals.clear()
    start = time.perf_counter()
    for _ in range(per_round * rounds):
        client.get("/api/v1/me", headers=auth)
    probed_total = (time.perf_counter() - start) / (per_round * rounds)
    own = _exclusive(totals)
    calls = per_round * rounds

    phases: dict[str, float] = collections.defaultdict(float)
    for _, name, phase in PROBES:
        if name in own:
            phases[phase] += own[name] / calls
    phases["framework, routing, test client, teardown"] = probed_total - sum(phases.values())

    result = {
        "database": app.config["SQLALCHEMY_DATABASE_URI"].split(":", 1)[0],
        "requests_timed": per_round * rounds,
        "rounds": rounds,
        "healthz_us": healthz * 1e6,
        "me_us": me * 1e6,
        "auth_overhead_us": (me - healthz) * 1e6,
        "healthz_cpu_us": healthz_cpu * 1e6,
        "me_cpu_us": me_cpu * 1e6,
        "probed_me_us": probed_total * 1e6,
        "phases_us": {phase: seconds * 1e6 for phase, seconds in phases.items()},
        "missing_probes": missing,
    }
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(per_round):
            client.get("/api/v1/me", headers=auth)
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
        result["profile"] = out.getvalue()
    with app.app_context():
        from shared.core.extensions import db

        db.session.remove()
        db.engine.dispose()
    return result


def render(result: dict) -> str:
    lines = [
        (f"In-process cost per request ({result['database']}, Flask test client, {result['requests_timed']} "
         f"requests, median of {result['rounds']} rounds; wall-clock, and CPU time of this process):"),
        f"  GET /healthz                    {result['healthz_us']:8.0f} us   (CPU {result['healthz_cpu_us']:.0f} us)",
        (f"  GET /api/v1/me (authenticated)  {result['me_us']:8.0f} us   (CPU {result['me_cpu_us']:.0f} us)"
         f"   +{result['auth_overhead_us']:.0f} us over /healthz"),
        f"  where an authenticated request spends its time (probed run: {result['probed_me_us']:.0f} us):",
    ]
    total = result["probed_me_us"] or 1
    for phase, micros in sorted(result["phases_us"].items(), key=lambda item: -item[1]):
        lines.append(f"    {phase:<44s} {micros:8.1f} us  {100 * micros / total:5.1f} %")
    if result["missing_probes"]:
        lines.append(f"  (not probed, not found in the code: {', '.join(result['missing_probes'])})")
    if result.get("profile"):
        lines.append(result["profile"])
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="add a cProfile listing (by own time)")
    parser.add_argument("--json", action="store_true", help="also print one BENCH_MICRO JSON line")
    args = parser.parse_args()
    result = measure(args.requests, args.rounds, args.profile)
    print(render(result))
    if args.json:
        print("BENCH_MICRO " + json.dumps({k: v for k, v in result.items() if k != "profile"}))


if __name__ == "__main__":
    main()
