"""Security: response headers, cookies, session fixation, production secrets, trusted proxies and
no secret in any log (docs/operations.md, "Security model")."""

from __future__ import annotations

import base64
import http.cookiejar
import json
import logging
import os
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

import pytest

from shared.core.config import ConfigError, build_config
from shared.core.http_headers import CONTENT_SECURITY_POLICY
from shared.tokens.format import generate_secret
from tests.conftest import ROOT, Factory, bearer, csrf_from, login

TOKENS = "/settings/api-tokens"
SECRET_SHOWN = re.compile(r"data-token-value>(kw_[0-9a-f]{64})<")


@pytest.fixture
def editor(make):
    return make.member(make.org("business"), "editor")


def assert_security_headers(response) -> None:
    headers = response.headers
    assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["X-Frame-Options"] == "DENY"


def session_cookie(response) -> str:
    cookies = [value for value in response.headers.getlist("Set-Cookie") if value.startswith("session=")]
    assert cookies, f"no session cookie in {response.headers.getlist('Set-Cookie')}"
    return cookies[-1]


def cookie_value(set_cookie: str) -> str:
    return set_cookie.split(";", 1)[0].split("=", 1)[1]


# --------------------------------------------------------------------------- headers


def test_csp_allows_only_our_own_scripts_and_forbids_framing():
    directives = dict(part.split(" ", 1) for part in CONTENT_SECURITY_POLICY.split("; "))
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY


def test_pages_carry_security_headers_and_are_not_stored(client, editor):
    page = client.get("/login")
    assert page.status_code == 200
    assert_security_headers(page)
    assert page.headers["Cache-Control"] == "no-store"
    assert "Strict-Transport-Security" not in page.headers  # development over plain http

    login(client, editor)
    tokens_page = client.get(TOKENS)
    assert tokens_page.status_code == 200
    assert_security_headers(tokens_page)
    assert tokens_page.headers["Cache-Control"] == "no-store"


def test_api_answers_and_errors_carry_the_api_security_headers(client, make, editor):
    """OWASP's set for a JSON API: a policy allowing nothing, nosniff, no framing, no caching."""
    issued = make.token(editor)
    for response in (client.get("/api/v1/me", headers=issued.headers),
                     client.get("/api/v1/me"),
                     client.get("/api/v1/documents/does-not-exist", headers=issued.headers),
                     client.get("/api/v1/no-such-endpoint", headers=issued.headers)):
        headers = response.headers
        assert headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'", response.status_code
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Cache-Control"] == "no-store"
        assert "Referrer-Policy" not in headers and "Cross-Origin-Opener-Policy" not in headers  # pages only


def test_health_check_carries_the_page_security_headers(client):
    response = client.get("/healthz")
    assert_security_headers(response)
    assert response.headers["Cache-Control"] == "no-store"


def test_error_pages_carry_security_headers(client):
    missing = client.get("/no-such-page")
    assert missing.status_code == 404
    assert_security_headers(missing)
    refused = client.post("/login", data={"email": "a@example.test", "password": "x"})  # no CSRF token
    assert refused.status_code == 400
    assert_security_headers(refused)


def test_static_files_keep_their_caching_but_get_nosniff(client):
    response = client.get("/static/app.js")
    assert response.status_code == 200
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers.get("Cache-Control") != "no-store"
    response.close()


def test_a_response_made_by_werkzeug_itself_gets_the_security_headers_too(app_with):
    """Keyward's responses add the headers they make without Werkzeug's check of each value; a
    response an extension makes with Werkzeug's own class gets them through Werkzeug's check."""
    from werkzeug.wrappers import Response as WerkzeugResponse

    app = app_with()
    app.add_url_rule("/plain-werkzeug", "plain_werkzeug", lambda: WerkzeugResponse("plain", headers={"X-Own": "1"}))
    response = app.test_client().get("/plain-werkzeug")
    assert response.status_code == 200 and response.get_data(as_text=True) == "plain"
    assert_security_headers(response)
    assert response.headers["X-Own"] == "1" and response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Request-Id"]


def test_a_view_that_sets_cache_control_keeps_it(client, make, editor):
    """The show-once API answer sets no-store itself; the headers hook must not override views."""
    key = make.token(editor, scopes=["tokens", "documents"], permissions=["read", "write"])
    created = client.post("/api/v1/tokens", headers=key.headers,
                          json={"name": "hook", "scopes": ["documents"], "permissions": ["read"]})
    assert created.status_code == 201
    assert created.headers.getlist("Cache-Control") == ["no-store"]


# --------------------------------------------------------------------------- production


@pytest.fixture
def production_app(app_config, monkeypatch):
    monkeypatch.setenv("KEYWARD_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "production-secret-key")
    monkeypatch.setenv("KEYWARD_TOKEN_PEPPER", "production-pepper")
    from shared.app import create_app

    app = create_app({key: value for key, value in app_config.items() if key != "TESTING"})
    yield app
    with app.app_context():
        from shared.core.extensions import db

        db.session.remove()
        db.engine.dispose()


def test_production_api_answers_pin_https_too(production_app):
    refused = production_app.test_client().get("/api/v1/me", base_url="https://keyward.example")
    assert refused.status_code == 401
    assert refused.headers["Strict-Transport-Security"] == "max-age=31536000"


def test_production_session_cookie_is_secure_httponly_and_lax(production_app):
    factory = Factory(production_app)
    member = factory.member(factory.org(), "editor")
    client = production_app.test_client()
    page = client.get("/login", base_url="https://keyward.example")
    flags = [part.strip() for part in session_cookie(page).split(";")]
    assert {"Secure", "HttpOnly", "SameSite=Lax"} <= set(flags), flags
    assert page.headers["Strict-Transport-Security"] == "max-age=31536000"

    signed_in = client.post("/login", base_url="https://keyward.example",
                            headers={"Referer": "https://keyward.example/login"},
                            data={"email": member.email, "password": member.password,
                                  "csrf_token": csrf_from(page.get_data(as_text=True))})
    assert signed_in.status_code == 302, signed_in.get_data(as_text=True)
    flags = [part.strip() for part in session_cookie(signed_in).split(";")]
    assert {"Secure", "HttpOnly", "SameSite=Lax"} <= set(flags), flags


def test_development_session_cookie_is_httponly_lax_but_not_secure(client):
    flags = [part.strip() for part in session_cookie(client.get("/login")).split(";")]
    assert {"HttpOnly", "SameSite=Lax"} <= set(flags) and "Secure" not in flags


@pytest.mark.parametrize("missing", ["SECRET_KEY", "KEYWARD_TOKEN_PEPPER"])
def test_production_refuses_to_start_without_each_secret(tmp_path, missing):
    env = {"KEYWARD_ENV": "production", "SECRET_KEY": "s" * 32, "KEYWARD_TOKEN_PEPPER": "p" * 32}
    build_config(tmp_path, env)  # both present: fine
    for absent in ({**env, missing: ""}, {k: v for k, v in env.items() if k != missing}):
        with pytest.raises(ConfigError, match=f"KEYWARD_ENV=production needs {missing} to be set"):
            build_config(tmp_path, absent)
    assert not (tmp_path / "secret_key").exists() and not (tmp_path / "token_pepper").exists()


def _production_env_without(name: str) -> dict[str, str]:
    env = {**os.environ, "KEYWARD_ENV": "production", "SECRET_KEY": "s" * 32, "KEYWARD_TOKEN_PEPPER": "p" * 32}
    env.pop(name)
    return env


def test_flask_cli_in_production_without_pepper_exits_with_a_clear_message():
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
                            cwd=ROOT, env=_production_env_without("KEYWARD_TOKEN_PEPPER"),
                            check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "Keyward cannot start: KEYWARD_ENV=production needs KEYWARD_TOKEN_PEPPER to be set" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_gunicorn_in_production_without_secret_key_stops_instead_of_respawning():
    # Port 0: the kernel picks a free one (a port chosen earlier may be taken by then).
    # One worker: with more, a worker can fail while the master is still spawning the others, and
    # gunicorn then dies of its own uncaught HaltServer (exit 1) instead of halting (exit 3).
    command = [sys.executable, "-m", "gunicorn", "wsgi:app", "-b", "127.0.0.1:0", "-w", "1"]
    result = subprocess.run(command, cwd=ROOT, env=_production_env_without("SECRET_KEY"),
                            check=False, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 3, output  # gunicorn: "Worker failed to boot"
    assert "Keyward cannot start: KEYWARD_ENV=production needs SECRET_KEY to be set" in output
    assert "Traceback" not in output


# --------------------------------------------------------------------------- sessions


def test_login_issues_a_fresh_session_and_the_old_cookie_stays_anonymous(app, client, editor):
    before = client.get("/login")
    planted = cookie_value(session_cookie(before))  # what an attacker could have fixed in a browser
    csrf_before = csrf_from(before.get_data(as_text=True))

    signed_in = client.post("/login", data={"email": editor.email, "password": editor.password,
                                            "csrf_token": csrf_before})
    assert signed_in.status_code == 302
    after = cookie_value(session_cookie(signed_in))
    assert after != planted
    assert client.get(TOKENS).status_code == 200
    assert csrf_from(client.get(TOKENS + "/new").get_data(as_text=True)) != csrf_before  # rotated too

    attacker = app.test_client()
    attacker.set_cookie("session", planted)
    response = attacker.get(TOKENS)
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_each_sign_in_gets_its_own_server_side_session(app, editor):
    first, second = app.test_client(), app.test_client()
    login(first, editor)
    login(second, editor)
    assert first.get(TOKENS).status_code == 200 and second.get(TOKENS).status_code == 200
    first.post("/logout", data={"csrf_token": csrf_from(first.get(TOKENS).get_data(as_text=True))})
    assert first.get(TOKENS).status_code == 302
    assert second.get(TOKENS).status_code == 200  # signing out one browser ends only that session


# --------------------------------------------------------------------------- trusted proxies


def _last_used_ip(server, secret: str, forwarded_for: str) -> str:
    request = urllib.request.Request(server.url + "/api/v1/me",
                                     headers={**bearer(secret), "X-Forwarded-For": forwarded_for})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["token"]["last_used_ip"]


@pytest.mark.parametrize(("hops", "seen"), [("0", "127.0.0.1"), ("1", "203.0.113.9")])
def test_forwarded_for_counts_only_from_trusted_proxy_hops(make, live_server, hops, seen):
    """Through real gunicorn: with 0 trusted hops a spoofed X-Forwarded-For is ignored; with 1 the
    address the (loopback) proxy appended is the client."""
    issued = make.token(make.member(make.org(), "editor"))
    server = live_server(workers=1, KEYWARD_TRUSTED_PROXIES=hops)
    assert _last_used_ip(server, issued.secret, "198.51.100.1, 203.0.113.9") == seen


# --------------------------------------------------------------------------- no secret in logs


def _forbidden_values(app, *secrets: str) -> list[str]:
    return [*secrets, Factory.password, "wrong horse battery", app.config["SECRET_KEY"],
            app.config["KEYWARD_TOKEN_PEPPER"], os.environ["SECRET_KEY"], os.environ["KEYWARD_TOKEN_PEPPER"]]


def test_no_secret_in_application_and_sql_logs(app, client, make, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, SQLAlchemy's statements and parameters included
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")
    member = make.member(make.org("business"), "editor")
    key = make.token(member, scopes=["tokens", "documents"], permissions=["read", "write"])
    secrets = [key.secret]

    # API: use, create, regenerate, refused values
    assert client.get("/api/v1/me", headers=key.headers).status_code == 200
    assert client.get("/api/v1/me", headers={"X-API-Key": key.secret}).status_code == 200
    created = client.post("/api/v1/tokens", headers=key.headers,
                          json={"name": "log check", "scopes": ["documents"], "permissions": ["read"]})
    assert created.status_code == 201
    secrets.append(created.get_json()["secret"])
    regenerated = client.post(f"/api/v1/tokens/{created.get_json()['token']['id']}/regenerate", headers=key.headers)
    assert regenerated.status_code == 200
    secrets.append(regenerated.get_json()["secret"])
    assert client.get("/api/v1/me", headers=bearer(secrets[1])).status_code == 401  # the old value
    assert client.get("/api/v1/me", headers=bearer(secrets[2])).status_code == 200
    unknown = make.run(generate_secret)  # well-formed, matches no token
    secrets.append(unknown)
    assert client.get("/api/v1/me", headers=bearer(unknown)).status_code == 401
    assert client.get("/api/v1/me", headers=bearer(unknown[:-1] + "x")).status_code == 401
    assert client.get(f"/api/v1/me?api_key={key.secret}").status_code == 401

    # Portal: a wrong password, sign-in, create, regenerate
    browser = app.test_client()
    assert login(browser, member, "wrong horse battery").status_code == 401
    signed_in = login(browser, member)
    assert signed_in.status_code == 302
    with browser.session_transaction() as session:
        session_key = session["_user_id"]  # the raw server-side session key (only its hash is stored)
    new = browser.get(TOKENS + "/new").get_data(as_text=True)
    shown = browser.post(TOKENS, data={"name": "portal log check", "description": "", "type": "personal",
                                       "permissions": ["read"], "scopes": ["documents"], "expiration": "365",
                                       "expiration_date": "", "ip_allowlist": "", "csrf_token": csrf_from(new)})
    portal_secret = SECRET_SHOWN.search(shown.get_data(as_text=True)).group(1)
    secrets.append(portal_secret)
    confirm = browser.get(f"{TOKENS}/{key.id}/regenerate").get_data(as_text=True)
    again = browser.post(f"{TOKENS}/{key.id}/regenerate", data={"csrf_token": csrf_from(confirm)})
    secrets.append(SECRET_SHOWN.search(again.get_data(as_text=True)).group(1))

    captured = caplog.text
    assert "SELECT" in captured and "INSERT INTO api_tokens" in captured, "SQL logging was not captured"
    forbidden = [*_forbidden_values(app, *secrets), session_key, cookie_value(session_cookie(signed_in))]
    leaked = [value for value in forbidden if value in captured]
    assert not leaked, f"secrets found in the logs: {leaked}"


def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))


def _request(opener, method: str, url: str, *, headers: dict | None = None, json_body: dict | None = None,
             form: dict | None = None) -> tuple[int, str]:
    data = None
    headers = dict(headers or {})
    if json_body is not None:
        data, headers["Content-Type"] = json.dumps(json_body).encode(), "application/json"
    if form is not None:
        data = urllib.parse.urlencode(form, doseq=True).encode()
    try:
        with opener.open(urllib.request.Request(url, data=data, method=method, headers=headers), timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_no_secret_in_gunicorn_access_and_error_logs(make, live_server):
    member = make.member(make.org("business"), "editor")
    key = make.token(member, scopes=["tokens", "documents"], permissions=["read", "write"])
    server = live_server(workers=2, GUNICORN_ACCESS_LOG="-")
    api = _opener()
    secrets = [key.secret]

    assert _request(api, "GET", server.url + "/api/v1/me", headers=key.headers)[0] == 200
    status, body = _request(api, "POST", server.url + "/api/v1/tokens", headers=key.headers,
                            json_body={"name": "log check", "scopes": ["documents"], "permissions": ["read"]})
    assert status == 201
    created = json.loads(body)
    secrets.append(created["secret"])
    status, body = _request(api, "POST", f"{server.url}/api/v1/tokens/{created['token']['id']}/regenerate",
                            headers=key.headers)
    assert status == 200
    secrets.append(json.loads(body)["secret"])
    # Clients get it wrong in ways that put the secret where servers usually log it:
    basic = base64.b64encode(f"{key.secret}:".encode()).decode()
    assert _request(api, "GET", server.url + "/api/v1/me", headers={"Authorization": f"Basic {basic}"})[0] == 401
    assert _request(api, "GET", f"{server.url}/api/v1/me?api_key={key.secret}")[0] == 401
    assert _request(api, "GET", server.url + "/api/v1/me", headers=bearer(secrets[1]))[0] == 401

    # ...and where gunicorn's access log writes the client's own text verbatim: the path, the
    # Referer and the User-Agent. Each is logged with the value masked.
    in_path, in_referer, in_agent = secrets[2], key.secret, secrets[1]
    assert _request(api, "GET", f"{server.url}/api/v1/tokens/{in_path}", headers=key.headers)[0] == 404
    assert _request(api, "GET", server.url + "/healthz",
                    headers={"Referer": f"https://ci.example/job?token={in_referer}",
                             "User-Agent": f"deploy-bot/1.0 (key {in_agent.upper()})"})[0] == 200

    browser = _opener()
    status, page = _request(browser, "GET", server.url + "/login")
    assert status == 200
    status, _ = _request(browser, "POST", server.url + "/login",
                         form={"email": member.email, "password": "wrong horse battery", "csrf_token": csrf_from(page)})
    assert status == 401

    output = server.output()
    assert '"GET /api/v1/me HTTP/1.1" 401' in output, "the access log was not captured:\n" + output
    # The lines that held a secret were captured, masked:
    assert f'"GET /api/v1/tokens/kw_••••{in_path[-4:]} HTTP/1.1" 404' in output, output
    assert f'"https://ci.example/job?token=kw_••••{in_referer[-4:]}"' in output, output
    assert f"deploy-bot/1.0 (key KW_••••{in_agent[-4:].upper()})" in output, output
    leaked = [value for value in _forbidden_values(make.app, *secrets) if value.lower() in output.lower()]
    assert not leaked, f"secrets found in the gunicorn log: {leaked}\n{output}"


def test_gunicorn_warns_once_when_rate_limits_are_counted_per_worker(live_server):
    """memory:// limits with several workers: each counts alone (a limit lets several times through)."""
    warning = "RATELIMIT_STORAGE_URI is memory:// with 2 workers"
    several = live_server(workers=2, RATELIMIT_STORAGE_URI="memory://")
    assert several.output().count(warning) == 1, several.output()
    one = live_server(workers=1, RATELIMIT_STORAGE_URI="memory://")
    assert "RATELIMIT_STORAGE_URI is memory://" not in one.output()
