"""Check the branch-coverage figures of the last `make coverage` run (the .coverage data file).

The modules that decide access must be fully covered (every line and every branch), and the whole
code base at least --total percent. Prints the figures; exits 1 when a gate is missed.

    python tools/coverage_gate.py [--data-file .coverage] [--total 95]
"""

from __future__ import annotations

import argparse
import io
import sys

import coverage
from coverage.exceptions import NoDataError

# Role matrix, token rights and format, the hot path's checks, client addresses, the SSRF guard.
ACCESS_MODULES = (
    "shared/identity/roles.py",
    "shared/tokens/rights.py",
    "shared/tokens/format.py",
    "shared/tokens/authn.py",
    "shared/core/netaddr.py",
    "shared/webhooks/ssrf.py",
)


def percent(cov: coverage.Coverage, include: list[str] | None = None) -> float:
    """Line and branch coverage together, as `coverage report` computes it."""
    return cov.report(include=include, file=io.StringIO(), precision=2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-file", default=".coverage")
    parser.add_argument("--total", type=float, default=95.0, help="minimum total percent (default 95)")
    args = parser.parse_args(argv)

    cov = coverage.Coverage(data_file=args.data_file)
    cov.load()
    failures = []
    try:
        total = percent(cov)
    except NoDataError:
        print(f"no coverage data in {args.data_file}: run `make coverage` first", file=sys.stderr)
        return 2
    print(f"{'total':<34} {total:6.2f} %  (gate {args.total:g} %)")
    if total < args.total:
        failures.append(f"total {total:.2f} % < {args.total:g} %")
    for module in ACCESS_MODULES:
        figure = percent(cov, [f"*/{module}"])
        print(f"{module:<34} {figure:6.2f} %  (gate 100 %)")
        if figure < 100:
            failures.append(f"{module} {figure:.2f} % < 100 %")
    for failure in failures:
        print(f"coverage gate missed: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
