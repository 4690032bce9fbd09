"""Seed a migrated Keyward database for the benchmark: an enterprise organization, its owner and
N tokens, all made through Keyward's own CLI commands (`orgs create`, `users create`,
`tokens create`), run in this one process so that N tokens cost one application start, not N;
then ANALYZE, as the bare service's seed does.

Run by bench/run.py with the server's environment (DATABASE_URL, KEYWARD_TOKEN_PEPPER,
KEYWARD_PASSWORD, ...); prints one line `BENCH_SECRETS ["kw_...", ...]`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()

    from wsgi import app

    runner = app.test_cli_runner()

    def cli(*words: str) -> str:
        result = runner.invoke(args=list(words))
        if result.exit_code != 0:
            detail = result.output if result.exception is None or isinstance(result.exception, SystemExit) \
                else repr(result.exception)
            raise SystemExit(f"seed_keyward: `flask {' '.join(words)}` failed ({result.exit_code}): {detail}")
        # stdout alone: the commands print their result there (a slug, a secret), warnings go elsewhere.
        lines = getattr(result, "stdout", result.output).strip().splitlines()
        return lines[-1].strip() if lines else ""

    slug = cli("orgs", "create", "Bench Org", "--plan", "enterprise")
    cli("users", "create", "bench@example.com", "--org", slug, "--role", "owner")
    secrets = [cli("tokens", "create", "--org", slug, "--user", "bench@example.com", "--name", f"bench-{i}",
                   "--scopes", "documents", "--permissions", "read", "--no-expiry")
               for i in range(args.tokens)]
    if len(set(secrets)) != len(secrets) or not all(secrets):
        raise SystemExit(f"seed_keyward: `tokens create` did not print one secret each: {secrets!r}")
    # Planner statistics, as the bare service's seed takes them (and as autovacuum keeps them on a
    # live database): without them PostgreSQL plans the lookup's joins for tables of unknown size.
    from sqlalchemy import text

    from shared.core.extensions import db

    with app.app_context(), db.engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
    print("BENCH_SECRETS " + json.dumps(secrets))


if __name__ == "__main__":
    main()
