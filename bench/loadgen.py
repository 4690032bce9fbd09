"""Drive HTTP load at one URL for a fixed time and report req/s and latency percentiles.

`wrk` (Debian package `wrk`) is the load generator: a C event loop that costs little CPU per
request, which matters on a small machine where it shares the cores with the server. When wrk is
missing, a multi-process Python generator with keep-alive connections stands in; it needs more
CPU per request, so its figures are lower and only comparable with each other.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import shutil
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_report.lua"


@dataclass
class LoadResult:
    url: str
    generator: str
    connections: int
    duration_s: float
    requests: int
    errors: int  # connection errors, timeouts and responses with a status >= 400
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float

    def as_dict(self) -> dict:
        return asdict(self)


def wrk_path() -> str | None:
    return shutil.which("wrk")


def run_load(url: str, *, duration: float, connections: int, header: str | None = None,
             rotate: list[str] | None = None, generator: str = "auto", threads: int = 1) -> LoadResult:
    """Load `url` for `duration` seconds over `connections` connections; `header` is "Name: value".

    `rotate` (a list of "Name: value") spreads the requests over those headers instead: wrk gives
    each request the next one in turn, the Python generator gives each connection its own.
    """
    if generator == "auto":
        generator = "wrk" if wrk_path() else "python"
    if generator == "wrk":
        return _run_wrk(url, duration=duration, connections=connections, header=header, rotate=rotate,
                        threads=threads)
    return _run_python(url, duration=duration, connections=connections, header=header, rotate=rotate,
                       processes=max(1, threads))


# --------------------------------------------------------------------------- wrk


def _run_wrk(url: str, *, duration: float, connections: int, header: str | None, rotate: list[str] | None,
             threads: int) -> LoadResult:
    wrk = wrk_path()
    if wrk is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    threads = max(1, min(threads, connections))
    env = {**os.environ, "BENCH_AUTH_HEADER": header or "", "BENCH_AUTH_HEADERS": "\n".join(rotate or []),
           "BENCH_LOAD_THREADS": str(threads)}
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
               "--timeout", "10s", "-s", str(WRK_SCRIPT), url]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    line = next((ln for ln in completed.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if completed.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({completed.returncode}):\n{completed.stdout}\n{completed.stderr}")
    data = json.loads(line[len("BENCH_JSON "):])
    seconds = data["duration_us"] / 1e6
    errors = sum(data["errors"].values())
    lat = data["latency_us"]
    return LoadResult(url=url, generator="wrk", connections=connections, duration_s=round(seconds, 2),
                      requests=data["requests"], errors=errors, rps=data["requests"] / seconds,
                      p50_ms=lat["p50"] / 1000, p90_ms=lat["p90"] / 1000, p99_ms=lat["p99"] / 1000,
                      mean_ms=lat["mean"] / 1000, max_ms=lat["max"] / 1000)


# --------------------------------------------------------------------------- Python fallback


def _connection_loop(host: str, port: int, path: str, headers: dict, deadline: float,
                     latencies: list[float], errors: list[int]) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    while True:
        start = time.perf_counter()
        if start >= deadline:
            break
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status >= 400:
                errors[0] += 1
            if response.will_close:
                conn.close()  # sync workers close after each response; reconnect on the next request
        except (OSError, http.client.HTTPException):
            errors[0] += 1
            conn.close()
            continue
        latencies.append(time.perf_counter() - start)
    conn.close()


def _process_worker(args: tuple) -> tuple[list[float], int]:
    """One load process: waits for the common wall-clock start, then runs its connections until the end."""
    host, port, path, header_sets, start_at, duration = args
    time.sleep(max(0.0, start_at - time.time()))
    deadline = time.perf_counter() + duration
    latencies: list[float] = []
    errors = [0]
    workers = [threading.Thread(target=_connection_loop,
                                args=(host, port, path, headers, deadline, latencies, errors))
               for headers in header_sets]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return latencies, errors[0]


def _percentile(ordered: list[float], pct: float) -> float:
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def _headers(header: str | None) -> dict:
    headers = {"Connection": "keep-alive"}
    if header:
        name, _, value = header.partition(":")
        headers[name.strip()] = value.strip()
    return headers


def _run_python(url: str, *, duration: float, connections: int, header: str | None, rotate: list[str] | None,
                processes: int) -> LoadResult:
    parts = urlsplit(url)
    # One header set per connection: connection i carries rotate[i % len(rotate)], or `header` for all.
    per_connection = [_headers(rotate[i % len(rotate)] if rotate else header) for i in range(connections)]
    processes = max(1, min(processes, connections))
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        start_at = time.time() + 1.0  # leaves time for the spawned processes to start
        jobs = [(parts.hostname, parts.port or 80, parts.path or "/", per_connection[i::processes],
                 start_at, duration) for i in range(processes)]
        results = pool.map(_process_worker, jobs)
    latencies = sorted(lat for lats, _ in results for lat in lats)
    errors = sum(err for _, err in results)
    count = len(latencies)
    mean = sum(latencies) / count if count else 0.0
    return LoadResult(url=url, generator="python", connections=connections, duration_s=duration,
                      requests=count, errors=errors, rps=count / duration,
                      p50_ms=_percentile(latencies, 50) * 1000, p90_ms=_percentile(latencies, 90) * 1000,
                      p99_ms=_percentile(latencies, 99) * 1000, mean_ms=mean * 1000,
                      max_ms=(latencies[-1] * 1000 if latencies else 0.0))
