"""A minimal Django REST framework API authenticated by djangorestframework-api-key.

It exists only to be measured beside Keyward (bench/run.py): the settings are what a lean
production API would use, so the comparison is not won by handicapping the other side.
DEBUG is off, no session/CSRF/auth/message middleware (an API key API needs none of them), only
the JSON renderer, and persistent database connections (CONN_MAX_AGE=None, checked for health like
Keyward's pool_pre_ping) so neither side reconnects per request.
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

DEBUG = False
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "bench-only-not-a-secret")
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "drf_service.urls"
WSGI_APPLICATION = "drf_service.wsgi.application"
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "rest_framework",
    "rest_framework_api_key",
    "drf_service",
]

# What an API behind a proxy typically keeps; no sessions, CSRF, auth or messages.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],  # the API key is checked by the permission class
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework_api_key.permissions.HasAPIKey"],
    "UNAUTHENTICATED_USER": None,  # no django.contrib.auth needed
}


def _database(url: str) -> dict:
    """BENCH_DRF_DATABASE_URL: sqlite:////absolute/path.db or postgresql://user@host:port/name."""
    parts = urlsplit(url)
    common = {"CONN_MAX_AGE": None, "CONN_HEALTH_CHECKS": True}
    if parts.scheme == "sqlite":
        return {
            **common,
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": unquote(parts.path[1:] if parts.path.startswith("//") else parts.path),
            # The same SQLite tuning as Keyward (shared/db.py): WAL, 30 s busy timeout, NORMAL sync.
            "OPTIONS": {"timeout": 30, "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
        }
    return {
        **common,
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/"),
        "USER": unquote(parts.username or "postgres"),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "127.0.0.1",
        "PORT": str(parts.port or 5432),
    }


DATABASES = {"default": _database(os.environ.get("BENCH_DRF_DATABASE_URL", "sqlite:////tmp/drf_bench.db"))}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
