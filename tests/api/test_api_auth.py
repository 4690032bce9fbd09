"""Authenticating API requests: every authentication check, in order, with its error."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import event

from tests.conftest import bearer


@pytest.fixture
def editor(make):
    return make.member(make.org(), "editor")


def error_code(response) -> str:
    return response.get_json()["error"]["code"]


def test_bearer_and_api_key_headers_both_authenticate(client, make, editor):
    issued = make.token(editor)
    assert client.get("/api/v1/me", headers=bearer(issued.secret)).status_code == 200
    assert client.get("/api/v1/me", headers={"X-API-Key": issued.secret}).status_code == 200
    assert client.get("/api/v1/me", headers={"x-api-key": f"  {issued.secret}  "}).status_code == 200
    assert client.get("/api/v1/me", headers={"Authorization": f"bearer {issued.secret}"}).status_code == 200


def test_me_describes_token_org_and_user(client, make, editor):
    issued = make.token(editor, name="Deploys", scopes=["documents", "projects"], permissions=["read", "write"])
    body = client.get("/api/v1/me", headers=issued.headers).get_json()
    assert body["token"]["id"] == issued.id
    assert body["token"]["name"] == "Deploys"
    assert body["token"]["scopes"] == ["documents", "projects"]
    assert body["organization"]["slug"] == editor.org.slug
    assert body["user"] == {"id": editor.user_id, "email": editor.email, "role": "editor"}
    assert issued.secret not in str(body)


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "Bearer "},
    {"X-API-Key": "kw_not-a-token"},
    {"X-API-Key": "kw_" + "0" * 64},
])
def test_missing_or_malformed_key_is_invalid_api_key(client, headers):
    response = client.get("/api/v1/me", headers=headers)
    assert response.status_code == 401
    assert error_code(response) == "invalid_api_key"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.get_json()["error"]["message"]


def test_non_canonical_forms_are_refused(client, make, editor):
    issued = make.token(editor)
    upper = issued.secret[:3] + issued.secret[3:].upper()
    for value in (upper, issued.secret + "x", "x" + issued.secret, issued.secret.replace("kw_", "KW_")):
        response = client.get("/api/v1/me", headers={"X-API-Key": value})
        assert response.status_code == 401, value
        assert error_code(response) == "invalid_api_key"


def test_unknown_token_with_valid_checksum_is_invalid(client, app, make, editor):
    make.token(editor)
    with app.app_context():
        from shared.tokens.format import generate_secret

        unknown = generate_secret()
    response = client.get("/api/v1/me", headers=bearer(unknown))
    assert response.status_code == 401 and error_code(response) == "invalid_api_key"


def test_checksum_rejection_touches_no_database(client, app, make, editor):
    issued = make.token(editor)
    tampered = issued.secret[:-1] + ("0" if issued.secret[-1] != "0" else "1")
    used = []
    with app.app_context():
        from shared.core.extensions import db

        engines = list(db.engines.values())
    # The lookup runs on the driver's cursor, past SQLAlchemy's statement events: watch every engine's
    # pool instead (no connection taken at all) as well as its statements.
    listeners = [("checkout", lambda *args: used.append("checkout")),
                 ("before_cursor_execute", lambda *args: used.append(args[2]))]
    for engine in engines:
        for name, listener in listeners:
            event.listen(engine, name, listener)
    try:
        assert client.get("/api/v1/me", headers=issued.headers).status_code == 200 and used  # they do see a lookup
        used.clear()
        response = client.get("/api/v1/me", headers=bearer(tampered))
    finally:
        for engine in engines:
            for name, listener in listeners:
                event.remove(engine, name, listener)
    assert response.status_code == 401
    assert used == []


def test_token_in_query_string_is_never_accepted(client, make, editor):
    issued = make.token(editor)
    for name in ("api_key", "token", "access_token", "key"):
        response = client.get(f"/api/v1/me?{name}={issued.secret}")
        assert response.status_code == 401


def test_bearer_and_api_key_disagreeing_is_refused(client, make, editor):
    first, second = make.token(editor), make.token(editor)
    response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {first.secret}",
                                                 "X-API-Key": second.secret})
    assert response.status_code == 401 and error_code(response) == "invalid_api_key"
    agreeing = client.get("/api/v1/me", headers={"Authorization": f"Bearer {first.secret}",
                                                 "X-API-Key": first.secret})
    assert agreeing.status_code == 200


def test_browser_session_never_authenticates_the_api(client, make, editor):
    from tests.conftest import login

    assert login(client, editor).status_code == 302
    response = client.get("/api/v1/me")
    assert response.status_code == 401
    assert "Set-Cookie" not in response.headers


def test_api_response_sets_no_cookie(client, make, editor):
    issued = make.token(editor)
    response = client.get("/api/v1/me", headers=issued.headers)
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers


def test_deactivated_token_is_token_inactive(client, make, editor):
    # The key holds what `other` holds (documents read): a token reactivates only tokens within it.
    issued = make.token(editor, scopes=["tokens", "documents"], permissions=["read", "write"])
    other = make.token(editor)
    assert client.post(f"/api/v1/tokens/{other.id}/deactivate", headers=issued.headers).status_code == 200
    response = client.get("/api/v1/me", headers=other.headers)
    assert response.status_code == 401 and error_code(response) == "token_inactive"
    assert client.post(f"/api/v1/tokens/{other.id}/reactivate", headers=issued.headers).status_code == 200
    assert client.get("/api/v1/me", headers=other.headers).status_code == 200


def test_expired_token_is_token_expired(client, make, editor, clock):
    issued = make.token(editor, expires_in_days=1)
    assert client.get("/api/v1/me", headers=issued.headers).status_code == 200
    clock.advance(days=1, seconds=1)
    response = client.get("/api/v1/me", headers=issued.headers)
    assert response.status_code == 401 and error_code(response) == "token_expired"
    assert make.get_token(issued.id).is_active is True


def test_revoked_token_is_invalid_api_key_and_final(client, make):
    maintainer = make.member(make.org(), "maintainer")
    manager = make.token(maintainer, scopes=["tokens"], permissions=["read", "write", "delete"])
    victim = make.token(maintainer)
    assert client.delete(f"/api/v1/tokens/{victim.id}", headers=manager.headers).status_code == 200
    response = client.get("/api/v1/me", headers=victim.headers)
    assert response.status_code == 401 and error_code(response) == "invalid_api_key"
    again = client.post(f"/api/v1/tokens/{victim.id}/reactivate", headers=manager.headers)
    assert again.status_code == 409 and error_code(again) == "token_revoked"
    regenerate = client.post(f"/api/v1/tokens/{victim.id}/regenerate", headers=manager.headers)
    assert regenerate.status_code == 409
    assert client.get("/api/v1/me", headers=victim.headers).status_code == 401
    assert make.get_token(victim.id).revoked_at is not None


def test_ip_allowlist_uses_real_peer_address(client, make, editor):
    issued = make.token(editor, ip_allowlist=["10.1.2.0/24", "2001:db8::/32"])
    inside = client.get("/api/v1/me", headers=issued.headers, environ_base={"REMOTE_ADDR": "10.1.2.7"})
    assert inside.status_code == 200
    v6 = client.get("/api/v1/me", headers=issued.headers, environ_base={"REMOTE_ADDR": "2001:db8::5"})
    assert v6.status_code == 200
    outside = client.get("/api/v1/me", headers=issued.headers, environ_base={"REMOTE_ADDR": "10.1.3.7"})
    assert outside.status_code == 403 and error_code(outside) == "ip_not_allowed"
    spoofed = client.get("/api/v1/me", headers={**issued.headers, "X-Forwarded-For": "10.1.2.7"},
                         environ_base={"REMOTE_ADDR": "192.0.2.1"})
    assert spoofed.status_code == 403


def test_forwarded_address_trusted_only_from_configured_hops(make, app_with):
    app = app_with(KEYWARD_TRUSTED_PROXIES=1)
    from tests.conftest import Factory

    factory = Factory(app)
    member = factory.member(factory.org(), "editor")
    issued = factory.token(member, ip_allowlist=["203.0.113.9"])
    client = app.test_client()
    # The proxy (peer 10.0.0.1) appends the address it saw; the client wrote the rest.
    via_proxy = client.get("/api/v1/me", headers={**issued.headers, "X-Forwarded-For": "1.1.1.1, 203.0.113.9"},
                           environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert via_proxy.status_code == 200
    assert via_proxy.get_json()["token"]["last_used_ip"] == "203.0.113.9"
    forged = client.get("/api/v1/me", headers={**issued.headers, "X-Forwarded-For": "203.0.113.9, 1.1.1.1"},
                        environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert forged.status_code == 403


def test_removed_member_tokens_stop_on_next_request(client, make, runner, editor):
    issued = make.token(editor)
    assert client.get("/api/v1/me", headers=issued.headers).status_code == 200
    result = runner.invoke(args=["users", "remove", editor.email, "--org", editor.org.slug])
    assert result.exit_code == 0, result.output
    response = client.get("/api/v1/me", headers=issued.headers)
    assert response.status_code == 401 and error_code(response) == "invalid_api_key"


def test_deactivated_user_tokens_stop(client, make, app, editor):
    issued = make.token(editor)

    def deactivate():
        from shared.core.extensions import db
        from shared.models import User

        db.session.get(User, editor.user_id).is_active = False
        db.session.commit()

    make.run(deactivate)
    assert error_code(client.get("/api/v1/me", headers=issued.headers)) == "invalid_api_key"


def test_role_change_takes_effect_on_next_request(client, make, runner):
    org = make.org()
    maintainer = make.member(org, "maintainer")
    issued = make.token(maintainer, scopes=["tokens"], permissions=["read", "write", "delete"])
    target = make.token(maintainer)
    assert client.get("/api/v1/tokens", headers=issued.headers).status_code == 200
    result = runner.invoke(args=["users", "set-role", maintainer.email, "--org", org.slug, "--role", "viewer"])
    assert result.exit_code == 0, result.output
    # viewer: no tokens scope at all any more
    response = client.get("/api/v1/tokens", headers=issued.headers)
    assert response.status_code == 403 and error_code(response) == "insufficient_scope"
    runner.invoke(args=["users", "set-role", maintainer.email, "--org", org.slug, "--role", "editor"])
    # editor: tokens scope again, but no delete permission
    assert client.get("/api/v1/tokens", headers=issued.headers).status_code == 200
    denied = client.delete(f"/api/v1/tokens/{target.id}", headers=issued.headers)
    assert denied.status_code == 403 and error_code(denied) == "insufficient_permission"


def test_plan_none_refuses_requests_with_plan_required(client, make, editor):
    issued = make.token(editor)

    def drop_plan():
        from shared.core.extensions import db
        from shared.models import Organization

        db.session.get(Organization, editor.org.id).plan = "none"
        db.session.commit()

    make.run(drop_plan)
    response = client.get("/api/v1/me", headers=issued.headers)
    assert response.status_code == 403 and error_code(response) == "plan_required"


def test_scope_and_permission_errors_name_what_was_required(client, make, editor):
    issued = make.token(editor, scopes=["documents"], permissions=["read"])
    response = client.get("/api/v1/tokens", headers=issued.headers)
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "insufficient_scope"
    assert response.get_json()["error"]["required"] == {"scope": "tokens", "permission": "read"}
    writer = make.token(editor, scopes=["tokens"], permissions=["read"])
    denied = client.post("/api/v1/tokens", headers=writer.headers, json={"name": "x", "scopes": ["documents"],
                                                                         "permissions": ["read"]})
    assert denied.status_code == 403
    assert denied.get_json()["error"]["code"] == "insufficient_permission"
    assert denied.get_json()["error"]["required"] == {"scope": "tokens", "permission": "write"}


def test_every_api_response_to_a_token_has_rate_limit_headers(client, make, editor):
    issued = make.token(editor)
    first = client.get("/api/v1/me", headers=issued.headers)
    second = client.get("/api/v1/tokens", headers=issued.headers)  # 403, still rate-limited
    for response in (first, second):
        assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= set(response.headers.keys())
    assert int(second.headers["X-RateLimit-Remaining"]) == int(first.headers["X-RateLimit-Remaining"]) - 1
    assert first.headers["X-RateLimit-Limit"] == "600"  # business plan default


def test_usage_is_counted_with_last_used(client, make, editor, clock):
    issued = make.token(editor)
    for _ in range(3):
        client.get("/api/v1/me", headers=issued.headers, environ_base={"REMOTE_ADDR": "198.51.100.4"})
    make.flush_usage()
    token = make.get_token(issued.id)
    assert token.usage_count == 3
    assert token.last_used_at == clock.now()
    assert token.last_used_ip == "198.51.100.4"


def test_refused_requests_are_not_counted(client, make, editor, clock):
    issued = make.token(editor, expires_in_days=1)
    clock.advance(days=2)
    client.get("/api/v1/me", headers=issued.headers)
    make.flush_usage()
    assert make.get_token(issued.id).usage_count == 0


def test_failed_authentication_is_throttled_per_address(make, app_with):
    app = app_with(KEYWARD_AUTH_FAILURE_LIMIT="5/minute")
    client = app.test_client()
    for _ in range(5):
        assert client.get("/api/v1/me", headers=bearer("kw_guess")).status_code == 401
    blocked = client.get("/api/v1/me", headers=bearer("kw_guess"))
    assert blocked.status_code == 429
    assert blocked.get_json()["error"]["code"] == "rate_limited"
    assert int(blocked.headers["Retry-After"]) >= 1
    elsewhere = client.get("/api/v1/me", headers=bearer("kw_guess"), environ_base={"REMOTE_ADDR": "192.0.2.50"})
    assert elsewhere.status_code == 401


def test_token_rate_limit_refuses_with_retry_after(make, app_with):
    from tests.conftest import Factory

    app = app_with(KEYWARD_RATE_LIMITS={"free": "3/minute"})
    factory = Factory(app)
    issued = factory.token(factory.member(factory.org("free"), "editor"))
    client = app.test_client()
    remaining = [client.get("/api/v1/me", headers=issued.headers).headers["X-RateLimit-Remaining"] for _ in range(3)]
    assert remaining == ["2", "1", "0"]
    refused = client.get("/api/v1/me", headers=issued.headers)
    assert refused.status_code == 429
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    factory.flush_usage()
    assert factory.get_token(issued.id).usage_count == 3


def test_a_lookup_connection_the_server_dropped_costs_no_request(client, app, make, editor):
    """The lookup takes connections without a ping; one the server closed is replaced and the query
    run again, so a database restart or an idle timeout never answers 503."""
    from sqlalchemy import text

    from shared.core.extensions import db
    from shared.tokens import authn

    issued = make.token(editor)
    assert client.get("/api/v1/me", headers=issued.headers).status_code == 200
    with app.test_request_context():
        engine = authn._lookup().engine
        if engine.dialect.name != "postgresql":
            pytest.skip("a server that drops connections: PostgreSQL (TEST_DATABASE_URL)")
        lookup = authn._lookup()
        held = lookup.held.take()  # the connection (and statement) the lookup just used, kept for the next one
        backend = held[0].dbapi_connection.info.backend_pid
        lookup.held.give_back(held)
        with db.engine.connect() as other:
            assert other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend}).scalar()
    assert client.get("/api/v1/me", headers=issued.headers).status_code == 200


def test_a_lookup_connection_whose_statements_were_discarded_prepares_it_again(client, app, make, editor):
    """On PostgreSQL the lookup runs a statement prepared on its connection. DISCARD ALL (what a
    connection pooler runs between clients) drops it: the lookup prepares it again, and the request
    is answered as any other."""
    from shared.tokens import authn

    issued = make.token(editor)
    assert client.get("/api/v1/me", headers=issued.headers).status_code == 200
    with app.test_request_context():
        lookup = authn._lookup()
        if lookup.engine.dialect.name != "postgresql":
            pytest.skip("statements prepared on the server: PostgreSQL (TEST_DATABASE_URL)")
        held = lookup.held.take()
        prepared = held[0].dbapi_connection.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0]
        held[0].dbapi_connection.execute("DISCARD ALL")
        lookup.held.give_back(held)
    assert prepared >= 1
    response = client.get("/api/v1/me", headers=issued.headers)
    assert response.status_code == 200
    assert response.get_json()["token"]["id"] == issued.id


@pytest.mark.parametrize("database", ["unreachable", "without tables"])
def test_a_lookup_that_cannot_read_the_database_answers_503_not_500(app_with, tmp_path, caplog, database):
    """A driver error that is no dropped connection (none to open; a statement that fails) is not
    retried: the request is answered 503 at once. Its own SQLite database, whichever the pass."""
    if database == "unreachable":
        url = f"sqlite:///{tmp_path / 'no such folder' / 'keyward.db'}"  # sqlite3 cannot open it
    else:
        url = f"sqlite:///{tmp_path / 'empty.db'}"  # no migrations ran: no api_tokens table
    from shared.tokens.format import _checksum

    client = app_with(SQLALCHEMY_DATABASE_URI=url).test_client()
    well_formed = "kw_" + "ab" * 28 + _checksum("ab" * 28)  # reaches the lookup
    response = client.get("/api/v1/me", headers=bearer(well_formed))
    assert response.status_code == 503, response.get_data(as_text=True)
    assert error_code(response) == "unavailable"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_unknown_api_path_is_json_404(client):
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404 and error_code(response) == "not_found"
