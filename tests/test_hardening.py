"""Hostile input answers a clear 4xx, never a 500 or a crash mid-stream: oversized and deeply nested
bodies, out-of-range dates and numbers in filters, control characters in `next`; and a leak
report's URL never carries the full token into the audit log, its export or the token's history."""

from __future__ import annotations

import http.client
import json
import re

import pytest

from tests.conftest import bearer, csrf_from, login

MIB = 1024 * 1024
TOKENS = "/settings/api-tokens"


def html(response) -> str:
    return response.get_data(as_text=True)


@pytest.fixture
def org(make):
    return make.org("business", name="Acme")


@pytest.fixture
def owner(make, org):
    return make.member(org, "owner")


@pytest.fixture
def owner_key(make, owner):
    return make.token(owner, scopes=["tokens", "documents"], permissions=["read", "write", "delete"],
                      expires_at=None)


# --------------------------------------------------------------------------- request bodies


def test_an_oversized_api_body_is_refused_with_413_before_it_is_read(client):
    body = b'{"tokens": ["' + b"a" * (2 * MIB) + b'"]}'
    response = client.post("/api/v1/leaks", data=body, content_type="application/json")
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"


def test_an_oversized_form_is_refused_with_an_error_page(client, owner):
    login(client, owner)
    response = client.post(TOKENS, data={"name": "x" * (2 * MIB)})
    assert response.status_code == 413
    assert response.mimetype == "text/html" and "too large" in html(response).lower()


def test_the_body_limit_is_configurable(app_with):
    app = app_with(KEYWARD_MAX_BODY_BYTES=1000)
    response = app.test_client().post("/api/v1/leaks", json={"tokens": ["x" * 2000]})
    assert response.status_code == 413


def test_a_chunked_body_without_length_is_limited_too(live_server):
    """Through real gunicorn: no Content-Length, so the limit must hold while the body is read."""
    server = live_server(workers=1, KEYWARD_MAX_BODY_BYTES="100000")
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.putrequest("POST", "/api/v1/leaks")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    chunk = b"[" * 50_000
    try:
        for _ in range(6):
            connection.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        connection.send(b"0\r\n\r\n")
    except OSError:
        pass  # the server may answer and close before the whole body is sent
    response = connection.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"]["code"] == "payload_too_large"
    connection.close()


@pytest.mark.parametrize("path", ["/api/v1/leaks", "/api/v1/tokens"])
def test_deeply_nested_json_is_a_400(client, owner_key, path):
    body = "[" * 100_000 + "]" * 100_000
    response = client.post(path, data=body, content_type="application/json", headers=owner_key.headers)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_request"


# --------------------------------------------------------------------------- filters


@pytest.mark.parametrize("query", ["to=9999-12-31", "from=9999-12-31&to=9999-12-31", "from=0001-01-01",
                                   f"actor={10**30}", "actor=-5", f"page={10**30}"])
def test_audit_filters_out_of_range_are_not_a_500(client, owner, query):
    login(client, owner)
    assert client.get(f"/settings/audit?{query}").status_code == 200
    export = client.get(f"/settings/audit/export?format=jsonl&{query}")
    assert export.status_code == 200
    lines = html(export).splitlines()
    assert all(json.loads(line)["action"] for line in lines)


def test_the_audit_page_keeps_a_far_future_day_as_an_inclusive_bound(client, make, owner):
    make.token(owner, name="listed")
    login(client, owner)
    assert "token.created" in html(client.get("/settings/audit?from=2000-01-01&to=9999-12-31"))


def test_audit_export_cli_with_the_last_possible_day_completes(runner, make, org, owner):
    make.token(owner, name="exported")
    result = runner.invoke(args=["audit", "export", "--org", org.slug, "--format", "jsonl",
                                 "--to", "9999-12-31"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["action"] for line in result.output.splitlines()].count("token.created") == 1


@pytest.mark.parametrize("query", [f"project_id={10**30}", f"page={10**30}", "project_id=-1"])
def test_token_list_filters_out_of_range_are_not_a_500(client, owner, query):
    login(client, owner)
    assert client.get(f"{TOKENS}?{query}").status_code == 200


def test_ids_beyond_any_row_in_urls_match_no_page(client, owner):
    login(client, owner)
    page = client.get("/settings/members")
    token = csrf_from(html(page))
    huge = 10**30
    for path in (f"/settings/members/{huge}/role", f"/settings/members/{huge}/remove",
                 f"/settings/partners/{huge}/remove", f"/settings/notifications/{huge}/read"):
        # 405 where a GET page has the same path: the router says so before it reads the id.
        assert client.post(path, data={"csrf_token": token, "role": "viewer"}).status_code in (404, 405), path
    assert client.get(f"/settings/members/{huge}/remove").status_code == 404


def test_an_out_of_range_partner_or_transfer_id_in_a_form_is_refused(client, make, org, owner):
    leaver = make.member(org, "admin")
    login(client, owner)
    token = csrf_from(html(client.get("/settings/members")))
    invited = client.post("/settings/members", data={"csrf_token": token, "email": "p@example.test",
                                                     "role": "partner_member", "partner_id": str(10**30)})
    assert invited.status_code == 422
    removed = client.post(f"/settings/members/{leaver.id}/remove",
                          data={"csrf_token": token, "transfer_to": str(10**30)})
    assert removed.status_code in (302, 404)


# --------------------------------------------------------------------------- redirects


@pytest.mark.parametrize("suffix", ["\r\nSet-Cookie: x=1", "%0d%0aSet-Cookie:%20x=1", "\nX: y"])
def test_control_characters_in_next_never_reach_a_header(client, make, owner, suffix):
    issued = make.token(owner, name="to deactivate")
    login(client, owner)
    token = csrf_from(html(client.get(TOKENS)))
    response = client.post(f"{TOKENS}/{issued.id}/deactivate",
                           data={"csrf_token": token, "next": f"{TOKENS}?name=a{suffix}"})
    assert response.status_code == 302
    assert "\r" not in response.headers["Location"] and "\n" not in response.headers["Location"]
    assert "Set-Cookie" not in response.headers["Location"] or "%" in response.headers["Location"]


def test_control_characters_in_the_sign_in_next_are_dropped(client, owner):
    page = client.get("/login")
    response = client.post("/login?next=/settings/members%0d%0aX:%20y", data={
        "email": owner.email, "password": owner.password, "csrf_token": csrf_from(html(page))})
    assert response.status_code == 302
    assert "\n" not in response.headers["Location"] and "X:" not in response.headers["Location"]


# --------------------------------------------------------------------------- leak report URLs


def test_a_leak_reports_url_is_stored_with_the_token_masked(client, make, org, owner):
    leaked = make.token(owner, name="leaked")
    url = f"https://paste.example/raw/1?key={leaked.secret}&upper={leaked.secret.upper()}"
    assert client.post("/api/v1/leaks", json={"tokens": [leaked.secret], "url": url}).status_code == 202

    [event] = make.audit("token.revoked")
    masked = f"kw_••••{leaked.secret[-4:]}"
    assert event.details["url"] == (f"https://paste.example/raw/1?key={masked}"
                                    f"&upper=KW_••••{leaked.secret[-4:].upper()}")
    login(client, owner)
    secret_shape = re.compile(re.escape(leaked.secret[3:]), re.IGNORECASE)
    export = html(client.get("/settings/audit/export?format=jsonl"))
    history = html(client.get(f"{TOKENS}/{leaked.id}"))
    audit_page = html(client.get("/settings/audit"))
    for text in (export, history, audit_page):
        assert masked in text
        assert not secret_shape.search(text)
    assert client.get("/api/v1/me", headers=bearer(leaked.secret)).status_code == 401
