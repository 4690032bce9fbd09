"""Configuration from the environment (shared/core/config.py): local secrets generated once and
kept, production refusing to start without its secrets, URLs and limits read as documented."""

from __future__ import annotations

import stat

import pytest

from shared.core.config import ConfigError, build_config, engine_options, parse_rate_limits


def test_local_runs_generate_each_secret_once_and_keep_it(tmp_path):
    instance = tmp_path / "instance"
    first = build_config(instance, {})
    again = build_config(instance, {})
    assert len(first["SECRET_KEY"]) == 64 and len(first["KEYWARD_TOKEN_PEPPER"]) == 64
    assert first["SECRET_KEY"] != first["KEYWARD_TOKEN_PEPPER"]
    assert (again["SECRET_KEY"], again["KEYWARD_TOKEN_PEPPER"]) == (first["SECRET_KEY"], first["KEYWARD_TOKEN_PEPPER"])
    assert stat.S_IMODE((instance / "token_pepper").stat().st_mode) == 0o600


@pytest.mark.parametrize(("env", "missing"), [
    ({}, "SECRET_KEY, KEYWARD_TOKEN_PEPPER"), ({"SECRET_KEY": "s"}, "KEYWARD_TOKEN_PEPPER"),
    ({"SECRET_KEY": "s", "KEYWARD_TOKEN_PEPPER": ""}, "KEYWARD_TOKEN_PEPPER"),
])
def test_production_refuses_to_start_without_its_secrets(tmp_path, env, missing):
    with pytest.raises(ConfigError, match=f"^KEYWARD_ENV=production needs {missing} to be set$"):
        build_config(tmp_path, {"KEYWARD_ENV": "production", **env})
    assert not (tmp_path / "secret_key").exists()  # nothing generated in production


def test_production_marks_cookies_secure(tmp_path):
    config = build_config(tmp_path, {"KEYWARD_ENV": "production", "SECRET_KEY": "s", "KEYWARD_TOKEN_PEPPER": "p"})
    assert config["SESSION_COOKIE_SECURE"] and config["REMEMBER_COOKIE_SECURE"]
    assert not build_config(tmp_path, {})["SESSION_COOKIE_SECURE"]


@pytest.mark.parametrize(("url", "expected"), [
    ("postgres://u@db/k", "postgresql+psycopg://u@db/k"),
    ("postgresql://u@db/k", "postgresql+psycopg://u@db/k"),
    ("postgresql+psycopg://u@db/k", "postgresql+psycopg://u@db/k"),
    ("sqlite:////var/keyward.db", "sqlite:////var/keyward.db"),
])
def test_database_urls_are_read_with_the_psycopg_driver(tmp_path, url, expected):
    assert build_config(tmp_path, {"DATABASE_URL": url})["SQLALCHEMY_DATABASE_URI"] == expected


def test_server_databases_ping_pooled_connections_sqlite_does_not():
    assert engine_options("postgresql+psycopg://u@db/k") == {"pool_pre_ping": True}
    assert engine_options("sqlite:///x.db") == {}


def test_rate_limits_are_read_per_plan():
    assert parse_rate_limits(" free=5/second ; business = 7/minute;;") == {"free": "5/second", "business": "7/minute"}
    with pytest.raises(ConfigError, match="'business' is not plan=limit"):
        parse_rate_limits("free=1/minute;business")


@pytest.mark.parametrize(("value", "on"), [("1", True), ("true", True), (" YES ", True), ("on", True),
                                           ("0", False), ("", False), ("off", False), (None, False)])
def test_flags_read_the_usual_spellings(tmp_path, value, on):
    env = {} if value is None else {"KEYWARD_WEBHOOK_ALLOW_PRIVATE": value}
    assert build_config(tmp_path, env)["KEYWARD_WEBHOOK_ALLOW_PRIVATE"] is on


def test_the_ca_bundle_is_unset_unless_given(tmp_path):
    assert build_config(tmp_path, {})["KEYWARD_CA_BUNDLE"] is None
    assert build_config(tmp_path, {"KEYWARD_CA_BUNDLE": ""})["KEYWARD_CA_BUNDLE"] is None
    assert build_config(tmp_path, {"KEYWARD_CA_BUNDLE": "/etc/ca.pem"})["KEYWARD_CA_BUNDLE"] == "/etc/ca.pem"
