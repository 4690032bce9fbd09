"""One configuration object, built from the environment."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from shared.core.oidc_issuers import InvalidIssuerConfig, trusted_issuers

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


LOG_FORMATS = ("text", "json")
MIN_METRICS_TOKEN_LENGTH = 16
DEFAULT_WEBHOOK_CONCURRENCY = 8  # webhook deliveries in flight per worker process


def parse_log_format(value: str | None) -> str:
    """KEYWARD_LOG_FORMAT: `text` (default) or `json` (one JSON object per line)."""
    value = (value or "").strip().lower() or "text"
    if value not in LOG_FORMATS:
        raise ConfigError("KEYWARD_LOG_FORMAT must be text or json")
    return value


def _positive_int(env: dict[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    try:
        value = int(text) if text else default
    except ValueError:
        raise ConfigError(f"{name} must be a whole number") from None
    if value < 1:
        raise ConfigError(f"{name} must be at least 1")
    return value


def _metrics_token(env: dict[str, str]) -> str | None:
    token = env.get("KEYWARD_METRICS_TOKEN", "").strip() or None
    if token is not None and len(token) < MIN_METRICS_TOKEN_LENGTH:
        raise ConfigError(f"KEYWARD_METRICS_TOKEN must be at least {MIN_METRICS_TOKEN_LENGTH} characters")
    return token


def _seconds(name: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 3600:
        raise ConfigError(f"{name} must be a number of seconds above 0 (at most 3600), not '{value}'")
    return seconds


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

    try:
        oidc_issuers = trusted_issuers(env.get("KEYWARD_OIDC_ISSUERS"))
    except InvalidIssuerConfig as error:
        raise ConfigError(str(error)) from None

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
        # Trusted publishers: the issuers whose CI identity tokens may be exchanged, every exchange
        # per client address (CI runners share egress addresses, so it is generous) and the
        # refused ones (signature, audience, no publisher...) per address, checked first.
        "KEYWARD_OIDC_ISSUERS": oidc_issuers,
        "KEYWARD_OIDC_EXCHANGE_LIMIT": env.get("KEYWARD_OIDC_EXCHANGE_LIMIT", "300/minute"),
        "KEYWARD_OIDC_FAILURE_LIMIT": env.get("KEYWARD_OIDC_FAILURE_LIMIT", "30/minute"),
        "KEYWARD_TRUSTED_PROXIES": int(env.get("KEYWARD_TRUSTED_PROXIES", "0")),
        "KEYWARD_QUEUE_URL": env.get("KEYWARD_QUEUE_URL", f"sqlite:///{instance_path / 'queue.db'}"),
        "KEYWARD_SMTP_URL": env.get("KEYWARD_SMTP_URL"),
        "KEYWARD_MAIL_FROM": env.get("KEYWARD_MAIL_FROM", "keyward@localhost"),
        "KEYWARD_WEBHOOK_ALLOW_PRIVATE": _flag(env.get("KEYWARD_WEBHOOK_ALLOW_PRIVATE")),
        "KEYWARD_WEBHOOK_CONCURRENCY": _positive_int(env, "KEYWARD_WEBHOOK_CONCURRENCY",
                                                     DEFAULT_WEBHOOK_CONCURRENCY),
        "KEYWARD_LOG_FORMAT": parse_log_format(env.get("KEYWARD_LOG_FORMAT")),
        "KEYWARD_METRICS_TOKEN": _metrics_token(env),  # /metrics is off when unset
        "KEYWARD_WORKER_METRICS_BIND": env.get("KEYWARD_WORKER_METRICS_BIND", "").strip() or None,
        "KEYWARD_USAGE_FLUSH_SECONDS": _seconds("KEYWARD_USAGE_FLUSH_SECONDS",
                                                env.get("KEYWARD_USAGE_FLUSH_SECONDS", "1")),
        # Extra CAs (PEM) trusted for webhook deliveries and SMTP, beside the system's.
        "KEYWARD_CA_BUNDLE": env.get("KEYWARD_CA_BUNDLE") or None,
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
