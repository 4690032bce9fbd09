"""One configuration object, built from the environment (SPEC section 9)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

DEFAULT_RATE_LIMITS = "free=60/minute;business=600/minute;enterprise=3000/minute"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024


class ConfigError(RuntimeError):
    """The environment cannot run Keyward as asked (e.g. production without secrets)."""


def _instance_secret(instance_path: Path, name: str) -> str:
    """A random secret kept in instance/ so local runs survive restarts without setup."""
    instance_path.mkdir(parents=True, exist_ok=True)
    path = instance_path / name
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip()


def parse_rate_limits(text: str) -> dict[str, str]:
    """`free=60/minute;business=600/minute` -> {"free": "60/minute", ...}."""
    limits: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        plan, _, limit = part.partition("=")
        if not limit.strip():
            raise ConfigError(f"KEYWARD_RATE_LIMITS: '{part}' is not plan=limit")
        limits[plan.strip()] = limit.strip()
    return limits


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def engine_options(database_url: str) -> dict:
    """Pool settings for the final database URL. A server database gets a liveness ping on checkout,
    so a restarted PostgreSQL costs no failed request; a SQLite file needs none (and it would cost
    every request a query)."""
    return {} if database_url.startswith("sqlite") else {"pool_pre_ping": True}


def build_config(instance_path: Path, env: dict[str, str] | None = None) -> dict:
    """Everything the app reads from the environment, with local-run defaults."""
    env = dict(os.environ if env is None else env)
    keyward_env = env.get("KEYWARD_ENV", "development")
    production = keyward_env == "production"

    secret_key = env.get("SECRET_KEY")
    pepper = env.get("KEYWARD_TOKEN_PEPPER")
    if production:
        missing = [n for n, v in (("SECRET_KEY", secret_key), ("KEYWARD_TOKEN_PEPPER", pepper)) if not v]
        if missing:
            raise ConfigError(f"KEYWARD_ENV=production needs {', '.join(missing)} to be set")
    secret_key = secret_key or _instance_secret(instance_path, "secret_key")
    pepper = pepper or _instance_secret(instance_path, "token_pepper")

    database_url = env.get("DATABASE_URL") or f"sqlite:///{instance_path / 'keyward.db'}"
    if database_url.startswith("postgres://"):
        database_url = "postgresql://" + database_url[len("postgres://"):]
    if database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgresql://"):]

    return {
        "KEYWARD_ENV": keyward_env,
        "SECRET_KEY": secret_key,
        "KEYWARD_TOKEN_PEPPER": pepper,
        "KEYWARD_TOKEN_PREFIX": env.get("KEYWARD_TOKEN_PREFIX", "kw_"),
        "SQLALCHEMY_DATABASE_URI": database_url,
        "RATELIMIT_STORAGE_URI": env.get("RATELIMIT_STORAGE_URI", "memory://"),
        "RATELIMIT_KEY_PREFIX": env.get("RATELIMIT_KEY_PREFIX", "keyward"),
        "KEYWARD_RATE_LIMITS": parse_rate_limits(env.get("KEYWARD_RATE_LIMITS", DEFAULT_RATE_LIMITS)),
        "KEYWARD_FREE_TOKEN_LIMIT": int(env.get("KEYWARD_FREE_TOKEN_LIMIT", "10")),
        "KEYWARD_AUTH_FAILURE_LIMIT": env.get("KEYWARD_AUTH_FAILURE_LIMIT", "30/minute"),
        "KEYWARD_LOGIN_FAILURE_LIMIT": env.get("KEYWARD_LOGIN_FAILURE_LIMIT", "10/minute"),
        # Failed sign-ins per account, from any number of addresses.
        "KEYWARD_LOGIN_ACCOUNT_FAILURE_LIMIT": env.get("KEYWARD_LOGIN_ACCOUNT_FAILURE_LIMIT",
                                                       "20/10 minutes"),
        "KEYWARD_LEAK_REPORT_LIMIT": env.get("KEYWARD_LEAK_REPORT_LIMIT", "30/minute"),
        "KEYWARD_TRUSTED_PROXIES": int(env.get("KEYWARD_TRUSTED_PROXIES", "0")),
        "KEYWARD_QUEUE_URL": env.get("KEYWARD_QUEUE_URL", f"sqlite:///{instance_path / 'queue.db'}"),
        "KEYWARD_SMTP_URL": env.get("KEYWARD_SMTP_URL"),
        "KEYWARD_MAIL_FROM": env.get("KEYWARD_MAIL_FROM", "keyward@localhost"),
        "KEYWARD_WEBHOOK_ALLOW_PRIVATE": _flag(env.get("KEYWARD_WEBHOOK_ALLOW_PRIVATE")),
        # The largest request body read (bytes): larger ones answer 413 before being read, chunked
        # ones as soon as they cross it. Nothing Keyward accepts comes near 1 MiB.
        "KEYWARD_MAX_BODY_BYTES": int(env.get("KEYWARD_MAX_BODY_BYTES", str(DEFAULT_MAX_BODY_BYTES))),
        # Where people reach Keyward (https://keyward.example.com): invitation links in emails and
        # on the command line start with it. Unset, a page uses the address it was requested at.
        "KEYWARD_BASE_URL": (env.get("KEYWARD_BASE_URL") or "").rstrip("/") or None,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": production,
        "REMEMBER_COOKIE_SECURE": production,
        "WTF_CSRF_TIME_LIMIT": None,  # the CSRF token lives as long as the session
    }
