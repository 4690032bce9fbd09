"""Signed webhooks: endpoints, signatures, retries with backoff, the delivery log,
auto-disable, the SSRF guard, and delivery surviving a killed worker.

Deliveries go to a real HTTP receiver on loopback started by each test (so these tests allow
private addresses, except where they test the guard). Backoff runs on the controllable clock:
a test advances it past the next attempt and runs the worker once.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import create_engine, select

from shared.core.extensions import db
from shared.events import outbox
from shared.models import (
    AuditEvent,
    Event,
    Notification,
    WebhookDelivery,
)
from shared.webhooks import delivery as webhook_delivery
from shared.webhooks import endpoints, signing, ssrf
from tests.conftest import ROOT, TEST_DATABASE_URL, Factory, csrf_from, login
from tests.webhooks.helpers import (
    ALL_PERMISSIONS,
    add_endpoint,
    attempts_of,
    deliveries,
    endpoint_row,
    fake_dns,
    owner_key,
    run_worker,
)


def _doc_verifier():
    """The Python snippet of docs/webhooks.md, run as written: the tests verify with what receivers copy."""
    text = (ROOT / "docs" / "webhooks.md").read_text()
    code = re.search(r"### Python\n\n```python\n(.*?)```", text, re.DOTALL).group(1)
    namespace: dict = {}
    exec(compile(code, "docs/webhooks.md", "exec"), namespace)
    return namespace["verify_keyward_signature"]


verify_keyward_signature = _doc_verifier()


# --------------------------------------------------------------------------- the receiver


class Receiver:
    """An HTTP server on 127.0.0.1 that records every request. It answers `statuses` in turn, then
    200; with `hang`, it reads the request and never answers; `secret` makes it check signatures."""

    def __init__(self, statuses=(), *, hang: bool = False, reply: bytes = b"ok", secret: str | None = None,
                 delay: float = 0.0, hold_after: int | None = None):
        self.delay = delay
        # With `hold_after`, requests after that many are held unanswered until `release` is set.
        self.hold_after = hold_after
        self.holding = threading.Event()
        self.requests: list[tuple[dict[str, str], bytes, float]] = []
        self.statuses = list(statuses)
        self.hang = hang
        self.reply = reply
        self.secret = secret
        self.bad_signatures = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        # (arrival, answer) of each answered request, time.monotonic(): when the sender was waiting
        self.spans: list[tuple[float, float]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                arrived = time.monotonic()
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.requests.append((dict(self.headers.items()), body, time.time()))
                    if receiver.secret and not verify_keyward_signature(
                            receiver.secret, self.headers.get("Keyward-Signature", ""), body):
                        receiver.bad_signatures += 1
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    held = receiver.hold_after is not None and len(receiver.requests) > receiver.hold_after
                if held:
                    receiver.holding.set()
                    receiver.release.wait(30)
                    return
                if receiver.hang:
                    receiver.release.wait(30)
                    return
                time.sleep(receiver.delay)
                with receiver.lock:
                    receiver.spans.append((arrived, time.monotonic()))
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", str(len(receiver.reply)))
                self.end_headers()
                self.wfile.write(receiver.reply)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/keyward?source=test"

    def bodies(self) -> list[dict]:
        with self.lock:
            return [json.loads(body) for _, body, _ in self.requests]

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    started: list[Receiver] = []

    def start(*statuses, **options) -> Receiver:
        started.append(Receiver(statuses, **options))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def app_config(app_config):
    """Deliveries go to the loopback receiver: private addresses allowed (the guard's tests say otherwise)."""
    return {**app_config, "KEYWARD_WEBHOOK_ALLOW_PRIVATE": True}


# --------------------------------------------------------------------------- helpers


def rename(client, key, token_id: str, name: str) -> None:
    assert client.patch(f"/api/v1/tokens/{token_id}", json={"name": name}, headers=key.headers).status_code == 200


# --------------------------------------------------------------------------- signatures and bodies


def test_signature_verifies_with_the_shown_secret_and_fails_with_any_other(app, client, make, receiver, clock):
    _, key = owner_key(make)
    hook = receiver()
    created = add_endpoint(client, key, hook.url)
    secret = created["secret"]
    assert re.fullmatch(r"whsec_[0-9a-f]{64}", secret)

    client.post("/api/v1/tokens/" + key.id + "/deactivate", headers=key.headers)
    run_worker(app)

    assert len(hook.requests) == 1
    headers, body, _ = hook.requests[0]
    now = clock.now().timestamp()
    signature = headers["Keyward-Signature"]
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", signature)
    assert verify_keyward_signature(secret, signature, body, now=now)
    assert not verify_keyward_signature(signing.new_signing_secret(), signature, body, now=now)
    assert not verify_keyward_signature(secret[:-1] + ("0" if secret[-1] != "0" else "1"), signature, body, now=now)
    assert not verify_keyward_signature(secret, signature, body + b" ", now=now)
    # The tolerance window: five minutes either way, not more.
    assert verify_keyward_signature(secret, signature, body, now=now + 300)
    assert not verify_keyward_signature(secret, signature, body, now=now + 301)
    assert not verify_keyward_signature(secret, signature, body, now=now - 301)
    assert headers["Content-Type"] == "application/json"
    assert "Keyward" in headers["User-Agent"]
    assert headers["Keyward-Event-Id"] == json.loads(body)["id"]


def test_body_is_the_spec_event_and_never_holds_a_secret(app, client, make, receiver, clock):
    owner, key = owner_key(make)
    hook = receiver()
    signing_secret = add_endpoint(client, key, hook.url)["secret"]
    created = client.post("/api/v1/tokens", json={"name": "ci", "permissions": ["read"], "scopes": ["documents"]},
                          headers=key.headers).get_json()
    regenerated = client.post(f"/api/v1/tokens/{created['token']['id']}/regenerate", json={"grace_period": "1h"},
                              headers=key.headers).get_json()
    run_worker(app)

    raw = b"".join(body for _, body, _ in hook.requests).decode()
    for secret in (key.secret, created["secret"], regenerated["secret"], signing_secret):
        assert secret not in raw
        assert secret[-20:] not in raw
    assert "whsec_" not in raw and "token_hash" not in raw
    bodies = hook.bodies()
    assert [b["type"] for b in bodies] == ["token.created", "token.regenerated"]
    with app.app_context():
        events = list(db.session.scalars(select(Event).order_by(Event.id)))[1:]  # after the key's own
    for body, event in zip(bodies, events, strict=True):
        assert set(body) == {"id", "type", "created_at", "organization_id", "data"}
        assert body["id"] == event.public_id and re.fullmatch(r"evt_[0-9a-f]{24}", body["id"])
        assert body["organization_id"] == owner.org.id
        assert body["created_at"] == "2026-11-23T12:00:00Z"
        assert body["data"]["token"]["id"] == created["token"]["id"]
        assert body["data"]["token"]["masked"].startswith("kw_")


def test_every_lifecycle_event_is_delivered_once_in_order_to_subscribed_endpoints(app, client, make, receiver,
                                                                                    clock):
    _, key = owner_key(make)
    everything, revocations = receiver(), receiver()
    add_endpoint(client, key, everything.url)
    add_endpoint(client, key, revocations.url, ["token.revoked", "token.exposed"])
    created = client.post("/api/v1/tokens", json={"name": "a", "permissions": ["read"], "scopes": ["documents"]},
                          headers=key.headers).get_json()
    token_id = created["token"]["id"]
    rename(client, key, token_id, "b")
    client.post(f"/api/v1/tokens/{token_id}/regenerate", headers=key.headers)
    client.post(f"/api/v1/tokens/{token_id}/deactivate", headers=key.headers)
    client.post(f"/api/v1/tokens/{token_id}/reactivate", headers=key.headers)
    client.delete(f"/api/v1/tokens/{token_id}", headers=key.headers)
    leaked = client.post("/api/v1/tokens", json={"name": "leaked", "permissions": ["read"], "scopes": ["documents"]},
                         headers=key.headers).get_json()
    assert client.post("/api/v1/leaks", json={"tokens": [leaked["secret"]]}).status_code == 202
    run_worker(app)
    run_worker(app)  # nothing is sent twice

    assert [b["type"] for b in everything.bodies()] == [
        "token.created", "token.updated", "token.regenerated", "token.deactivated", "token.reactivated",
        "token.revoked", "token.created", "token.exposed"]
    assert [b["type"] for b in revocations.bodies()] == ["token.revoked", "token.exposed"]
    assert len({b["id"] for b in everything.bodies()}) == 8


def test_a_failing_endpoint_adds_no_delivery_to_another_organization(app, client, make, receiver, clock):
    _, key = owner_key(make)
    _, other_key = owner_key(make)
    mine, theirs = receiver(), receiver()
    add_endpoint(client, key, mine.url)
    add_endpoint(client, other_key, theirs.url)
    client.post(f"/api/v1/tokens/{key.id}/deactivate", headers=key.headers)
    run_worker(app)
    assert len(mine.requests) == 1 and theirs.requests == []


# --------------------------------------------------------------------------- retries


def test_500_twice_then_200_is_exactly_three_attempts_with_the_same_event_id(app, client, make, receiver, clock):
    _, key = owner_key(make)
    hook = receiver(500, 500)
    endpoint_id = add_endpoint(client, key, hook.url)["webhook"]["id"]
    client.post(f"/api/v1/tokens/{key.id}/deactivate", headers=key.headers)

    run_worker(app)
    [delivery] = deliveries(app, endpoint_id)
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    first_wait = delivery.next_attempt_at - clock.now()
    assert timedelta(seconds=48) <= first_wait <= timedelta(seconds=72)  # about 1 minute, with jitter

    run_worker(app)  # not due yet: nothing sent
    assert len(hook.requests) == 1

    clock.advance(seconds=73)
    run_worker(app)
    [delivery] = deliveries(app, endpoint_id)
    assert (delivery.status, delivery.attempts) == ("pending", 2)
    assert timedelta(minutes=4) <= delivery.next_attempt_at - clock.now() <= timedelta(minutes=6)

    clock.advance(minutes=6, seconds=1)
    run_worker(app)
    clock.advance(hours=10)
    run_worker(app)

    [delivery] = deliveries(app, endpoint_id)
    assert (delivery.status, delivery.attempts) == ("succeeded", 3)
    assert len(hook.requests) == 3
    assert len({b["id"] for b in hook.bodies()}) == 1
    assert len({headers["Keyward-Signature"] for headers, _, _ in hook.requests}) == 3  # a fresh t each time
    log = attempts_of(app, delivery.id)
    assert [a.status_code for a in log] == [500, 500, 200]
    assert [a.error for a in log] == ["HTTP 500: ok", "HTTP 500: ok", None]
    assert all(a.latency_ms is not None and a.latency_ms >= 0 for a in log)
    assert endpoint_row(app, endpoint_id).consecutive_failures == 0


def test_retry_schedule_is_1m_5m_30m_2h_8h_with_jitter_then_failed(app, client, make, receiver, clock):
    _, key = owner_key(make)
    hook = receiver(*[503] * 6)
    endpoint_id = add_endpoint(client, key, hook.url)["webhook"]["id"]
    client.post(f"/api/v1/tokens/{key.id}/deactivate", headers=key.headers)
    run_worker(app)
    for expected in webhook_delivery.BACKOFF:
        [delivery] = deliveries(app, endpoint_id)
        wait = delivery.next_attempt_at - clock.now()
        assert expected * 0.8 <= wait <= expected * 1.2
        clock.advance(seconds=wait.total_seconds() + 1)
        run_worker(app)
    [delivery] = deliveries(app, endpoint_id)
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 6, None)
    assert len(hook.requests) == 6
    assert endpoint_row(app, endpoint_id).consecutive_failures == 1


def test_redirects_are_not_followed(app, client, make, receiver, clock):
    _, key = owner_key(make)
    hook = receiver(302)
    endpoint_id = add_endpoint(client, key, hook.url)["webhook"]["id"]
    client.post(f"/api/v1/tokens/{key.id}/deactivate", headers=key.headers)
    run_worker(app)
    [delivery] = deliveries(app, endpoint_id)
    [attempt] = attempts_of(app, delivery.id)
    assert attempt.status_code == 302 and "redirects are not followed" in attempt.error
    assert len(hook.requests) == 1


def test_refused_connection_is_a_failed_attempt(app, client, make, clock):
    _, key = owner_key(make)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint_id = add_endpoint(client, key, f"http://127.0.0.1:{port}/")["webhook"]["id"]
    client.post(f"/api/v1/tokens/{key.id}/deactivate", headers=key.headers)
    run_worker(app)
    [delivery] = deliveries(app, endpoint_id)
    [attempt] = attempts_of(app, delivery.id)
    assert (attempt.status_code, attempt.error, delivery.status) == (None, "Connection refused", "pending")


def test_error_excerpt_never_holds_the_signing_secret(app, client, make, receiver, clock):
    _, key = owner_key(make)
    hook = receiver(500)
    created = add_endpoint(client, key, hook.url)
    hook.reply = f"bad signature for {created['secret']} and {key.secret}".encode()
    client.post(f"/api/v1/tokens/{key.id}/deactivate", headers=key.headers)
    run_worker(app)
    [delivery] = deliveries(app, created["webhook"]["id"])
    [attempt] = attempts_of(app, delivery.id)
    assert attempt.error.startswith("HTTP 500: bad signature for")
    assert created["secret"] not in attempt.error and created["secret"][6:] not in attempt.error
    assert key.secret not in attempt.error


def test_timeout_is_five_seconds_and_recorded(app, client, make, receiver, clock, monkeypatch):
    assert webhook_delivery.TIMEOUT_SECONDS == 5
    monkeypatch.setattr(webhook_delivery, "TIMEOUT_SECONDS", 0.2)
    _, key = owner_key(make)
    hook = receiver(hang=True)
    endpoint_id = add_endpoint(client, key, hook.url)["webhook"]["id"]
    client.post(f"/api/v1/tokens/{key.id}/deactivate", headers=key.headers)
    run_worker(app)
    [delivery] = deliveries(app, endpoint_id)
    [attempt] = attempts_of(app, delivery.id)
    assert (attempt.status_code, attempt.error) == (None, "Timed out after 0.2 s")
    assert 150 <= attempt.latency_ms < 2000


# --------------------------------------------------------------------------- auto-disable


def test_never_answering_receiver_disables_the_endpoint_after_5_events_and_notifies_owners(
        app, client, make, receiver, clock, monkeypatch):
    monkeypatch.setattr(webhook_delivery, "TIMEOUT_SECONDS", 0.2)
    owner, key = owner_key(make)
    admin = make.api_member(owner.org, "admin")
    editor = make.api_member(owner.org, "editor")
    hook = receiver(hang=True)
    endpoint_id = add_endpoint(client, key, hook.url)["webhook"]["id"]
    for n in range(5):
        rename(client, key, key.id, f"renamed {n}")
    run_worker(app)
    for _ in webhook_delivery.BACKOFF:
        assert endpoint_row(app, endpoint_id).is_active
        clock.advance(hours=10)
        run_worker(app)

    endpoint = endpoint_row(app, endpoint_id)
    assert not endpoint.is_active and endpoint.consecutive_failures == 5
    assert "5 failed deliveries in a row" in endpoint.disabled_reason
    assert [d.status for d in deliveries(app, endpoint_id)] == ["failed"] * 5
    assert len(hook.requests) == 5 * webhook_delivery.MAX_ATTEMPTS
    with app.app_context():
        told = {n.user_id for n in db.session.scalars(select(Notification).where(
            Notification.kind == "webhook_disabled"))}
        assert db.session.scalars(select(AuditEvent).where(AuditEvent.action == "webhook.auto_disabled")).one()
    assert told == {owner.user_id, admin.user_id} and editor.user_id not in told

    rename(client, key, key.id, "after")  # a disabled endpoint gets no new deliveries
    run_worker(app)
    assert len(deliveries(app, endpoint_id)) == 5
    assert client.get("/api/v1/webhooks", headers=key.headers).get_json()["items"][0]["status"] == "disabled"


def test_a_success_resets_the_count_of_failed_deliveries(app, client, make, receiver, clock):
    _, key = owner_key(make)
    hook = receiver(*[500] * (4 * webhook_delivery.MAX_ATTEMPTS))  # 4 events fail for good, the 5th succeeds
    endpoint_id = add_endpoint(client, key, hook.url)["webhook"]["id"]
    for n in range(4):
        rename(client, key, key.id, f"renamed {n}")
    run_worker(app)
    for _ in webhook_delivery.BACKOFF:
        clock.advance(hours=10)
        run_worker(app)
    assert endpoint_row(app, endpoint_id).consecutive_failures == 4
    rename(client, key, key.id, "fifth")
    run_worker(app)
    endpoint = endpoint_row(app, endpoint_id)
    assert endpoint.is_active and endpoint.consecutive_failures == 0


# --------------------------------------------------------------------------- the SSRF guard


PRIVATE_URLS = [
    "http://127.0.0.1/hook", "http://localhost:8080/hook", "http://10.1.2.3/", "http://172.16.5.4/",
    "http://192.168.1.10/", "http://169.254.169.254/latest/meta-data/", "http://[::1]/", "http://[fd00:ec2::254]/",
    "http://[fe80::1]/", "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/", "http://100.64.0.1/", "http://224.0.0.1/",
    "http://2130706433/", "http://0x7f.1/", "http://[64:ff9b::a9fe:a9fe]/", "http://240.0.0.1/",
]


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_private_addresses_are_refused(app_with, url):
    app = app_with(KEYWARD_WEBHOOK_ALLOW_PRIVATE=False)
    _, key = owner_key(Factory(app))
    response = app.test_client().post("/api/v1/webhooks", json={"url": url}, headers=key.headers)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_request"
    assert "address" in error["fields"]["url"]


def test_allow_private_admits_loopback_but_never_the_metadata_address(app, client, make):
    _, key = owner_key(make)
    assert client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/"}, headers=key.headers).status_code == 201
    for url in ("http://169.254.169.254/", "http://[fd00:ec2::254]/", "http://0.0.0.0/"):
        assert client.post("/api/v1/webhooks", json={"url": url}, headers=key.headers).status_code == 400


def test_public_address_passes_the_guard(app):
    from ipaddress import ip_address

    for address in ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "8.8.8.8"):
        assert ssrf.address_refusal(ip_address(address), allow_private=False) is None


def test_a_name_resolving_to_a_private_address_is_refused(app_with, monkeypatch):
    app = app_with(KEYWARD_WEBHOOK_ALLOW_PRIVATE=False)
    _, key = owner_key(Factory(app))
    answers = {"hooks.example.com": ["93.184.216.34", "10.0.0.7"]}
    monkeypatch.setattr(ssrf.socket, "getaddrinfo", fake_dns(answers))
    response = app.test_client().post("/api/v1/webhooks", json={"url": "https://hooks.example.com/k"},
                                      headers=key.headers)
    assert response.status_code == 400
    assert "resolves to 10.0.0.7" in response.get_json()["error"]["fields"]["url"]


def test_the_guard_runs_again_at_delivery_time_after_dns_changes(app_with, receiver, clock, monkeypatch):
    """DNS rebinding: public when saved, loopback when sent. No connection is made; the attempt says why."""
    app = app_with(KEYWARD_WEBHOOK_ALLOW_PRIVATE=False)
    _, key = owner_key(Factory(app))
    client = app.test_client()
    hook = receiver()
    port = hook.server.server_address[1]
    answers = {"hooks.example.com": ["93.184.216.34"]}
    monkeypatch.setattr(ssrf.socket, "getaddrinfo", fake_dns(answers))
    endpoint_id = add_endpoint(client, key, f"http://hooks.example.com:{port}/")["webhook"]["id"]
    answers["hooks.example.com"] = ["127.0.0.1"]
    client.post(f"/api/v1/tokens/{key.id}/deactivate", headers=key.headers)
    run_worker(app)
    [delivery] = deliveries(app, endpoint_id)
    [attempt] = attempts_of(app, delivery.id)
    assert "resolves to 127.0.0.1, which is a loopback address" in attempt.error
    assert hook.requests == []


def test_delivery_connects_to_the_checked_address_with_the_url_host_name(app, client, make, receiver, clock,
                                                                        monkeypatch):
    _, key = owner_key(make)
    hook = receiver()
    port = hook.server.server_address[1]
    monkeypatch.setattr(ssrf.socket, "getaddrinfo", fake_dns({"hooks.example.com": ["127.0.0.1"]}))
    add_endpoint(client, key, f"http://hooks.example.com:{port}/in")
    client.post(f"/api/v1/tokens/{key.id}/deactivate", headers=key.headers)
    run_worker(app)
    [(headers, _, _)] = hook.requests
    assert headers["Host"] == f"hooks.example.com:{port}"


@pytest.mark.parametrize(("url", "message"), [
    ("ftp://example.com/", "http:// or https://"), ("example.com/hook", "http:// or https://"),
    ("https://user:pw@example.com/", "credentials"), ("http://[::1/", "not a valid URL"),
    ("http://example.com:99999/", "port"), ("https:///path", "host"), ("http://exa mple.com/", "spaces"),
    ("http://no-such-host.invalid/", "Could not resolve"),
])
def test_invalid_urls_are_refused_with_the_reason(app, client, make, url, message):
    _, key = owner_key(make)
    response = client.post("/api/v1/webhooks", json={"url": url}, headers=key.headers)
    assert response.status_code == 400
    assert message in response.get_json()["error"]["fields"]["url"]


# --------------------------------------------------------------------------- the API and roles


def test_owner_and_admin_manage_webhooks_through_the_api(app, client, make):
    owner, key = owner_key(make)
    _, admin_key = owner_key(make, owner.org, "admin")
    created = client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/a", "event_types": ["token.revoked"]},
                          headers=admin_key.headers)
    assert created.status_code == 201
    assert created.headers["Cache-Control"] == "no-store"
    body = created.get_json()
    webhook = body["webhook"]
    assert re.fullmatch(r"wh_[0-9a-f]{16}", webhook["id"])
    assert webhook["event_types"] == ["token.revoked"] and webhook["status"] == "active"
    assert "secret" not in webhook and "signing_secret" not in webhook

    listed = client.get("/api/v1/webhooks", headers=key.headers).get_json()
    assert [item["id"] for item in listed["items"]] == [webhook["id"]]
    assert listed["total"] == 1 and body["secret"] not in json.dumps(listed)

    default = add_endpoint(client, key, "http://127.0.0.1:9/b")["webhook"]
    assert default["event_types"] == list(outbox.TYPES)

    deleted = client.delete(f"/api/v1/webhooks/{webhook['id']}", headers=key.headers)
    assert deleted.status_code == 200
    assert [i["id"] for i in client.get("/api/v1/webhooks", headers=key.headers).get_json()["items"]] == \
        [default["id"]]
    assert client.delete(f"/api/v1/webhooks/{webhook['id']}", headers=key.headers).status_code == 404
    actions = [e.action for e in make.audit() if e.action.startswith("webhook.")]
    assert actions == ["webhook.created", "webhook.created", "webhook.deleted"]


@pytest.mark.parametrize("role", ["security_manager", "maintainer", "editor"])
def test_other_roles_get_insufficient_permission(app, client, make, role):
    owner, key = owner_key(make)
    hook_id = add_endpoint(client, key, "http://127.0.0.1:9/")["webhook"]["id"]
    member = make.api_member(owner.org, role)
    other = make.token(member, scopes=["tokens"], permissions=["read", "write", "delete"]
                       if role != "editor" else ["read", "write"], expires_at=None)
    calls = [client.get("/api/v1/webhooks", headers=other.headers),
             client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/"}, headers=other.headers)]
    if role != "editor":
        calls.append(client.delete(f"/api/v1/webhooks/{hook_id}", headers=other.headers))
    for response in calls:
        assert response.status_code == 403
        assert response.get_json()["error"]["code"] == "insufficient_permission"


def test_scope_tokens_is_required(app, client, make):
    owner = make.api_member(make.org(), "owner")
    key = make.token(owner, scopes=["documents"], permissions=ALL_PERMISSIONS)
    response = client.get("/api/v1/webhooks", headers=key.headers)
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "insufficient_scope"


def test_another_organizations_webhook_is_not_found(app, client, make):
    _, key = owner_key(make)
    _, other_key = owner_key(make)
    theirs = add_endpoint(client, other_key, "http://127.0.0.1:9/")["webhook"]["id"]
    for webhook_id in (theirs, "wh_0000000000000000", "nonsense", "1"):
        response = client.delete(f"/api/v1/webhooks/{webhook_id}", headers=key.headers)
        assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"
    assert client.get("/api/v1/webhooks", headers=key.headers).get_json()["items"] == []
    assert len(client.get("/api/v1/webhooks", headers=other_key.headers).get_json()["items"]) == 1


def test_bad_event_types_and_bodies_are_400(app, client, make):
    _, key = owner_key(make)
    for body in ({"url": "http://127.0.0.1:9/", "event_types": ["token.nope"]},
                 {"url": "http://127.0.0.1:9/", "event_types": []}, {"event_types": ["token.created"]},
                 {"url": 5}, {"url": "http://127.0.0.1:9/", "extra": 1}):
        response = client.post("/api/v1/webhooks", json=body, headers=key.headers)
        assert response.status_code == 400, body
        assert response.get_json()["error"]["code"] == "invalid_request"


def test_at_most_max_endpoints_per_organization(app, client, make, monkeypatch):
    monkeypatch.setattr(endpoints, "MAX_ENDPOINTS", 2)
    _, key = owner_key(make)
    add_endpoint(client, key, "http://127.0.0.1:9/1")
    add_endpoint(client, key, "http://127.0.0.1:9/2")
    response = client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/3"}, headers=key.headers)
    assert response.status_code == 400 and "at most 2" in response.get_json()["error"]["message"]


def test_webhook_endpoints_are_in_the_openapi_document(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/webhooks"])
    assert "delete" in paths["/api/v1/webhooks/{webhook_id}"]


# --------------------------------------------------------------------------- the portal pages


def signed_in(client, make, role="owner", org=None):
    member = make.member(org or make.org("business"), role)
    login(client, member)
    return member


def test_settings_webhooks_add_shows_the_secret_once(app, client, make, receiver, clock):
    owner = signed_in(client, make)
    page = client.get("/settings/webhooks")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and ">Webhooks</a>" in html and "No webhook endpoints yet" in html
    for kind in outbox.TYPES:
        assert f'value="{kind}" checked' in html
    hook = receiver()
    response = client.post("/settings/webhooks", data={
        "url": hook.url, "event_types": ["token.created", "token.revoked"], "csrf_token": csrf_from(html)})
    shown = response.get_data(as_text=True)
    assert response.status_code == 200 and "no-store" in response.headers["Cache-Control"]
    secret = re.search(r"data-secret-value>(whsec_[0-9a-f]{64})<", shown).group(1)
    assert "Copy" in shown and "will not be shown again" in shown

    again = client.get("/settings/webhooks").get_data(as_text=True)
    assert secret not in again and "data-secret-value" not in again
    assert hook.url.replace("&", "&amp;") in again or hook.url in again
    assert "token.created" in again and "token.revoked" in again

    # The secret shown is the one that signs.
    key = make.token(make.member(owner.org, "admin"))
    run_worker(app)
    [(headers, body, _)] = hook.requests
    assert verify_keyward_signature(secret, headers["Keyward-Signature"], body, now=clock.now().timestamp())
    assert json.loads(body)["data"]["token"]["id"] == key.id


def test_settings_webhooks_form_errors_rerender(app, client, make):
    signed_in(client, make)
    html = client.get("/settings/webhooks").get_data(as_text=True)
    response = client.post("/settings/webhooks", data={"url": "ftp://x", "csrf_token": csrf_from(html)})
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Use an http:// or https:// URL" in page and "Choose at least one event" in page
    assert 'value="ftp://x"' in page


def test_settings_webhooks_disable_enable_delete(app, client, make):
    owner = signed_in(client, make)
    _, key = owner_key(make, owner.org)
    hook_id = add_endpoint(client, key, "http://127.0.0.1:9/")["webhook"]["id"]
    csrf = csrf_from(client.get("/settings/webhooks").get_data(as_text=True))

    response = client.post(f"/settings/webhooks/{hook_id}/disable", data={"csrf_token": csrf}, follow_redirects=True)
    assert "Disabled" in response.get_data(as_text=True) and not endpoint_row(app, hook_id).is_active
    assert f"Disabled by {owner.email}" in response.get_data(as_text=True)
    response = client.post(f"/settings/webhooks/{hook_id}/enable", data={"csrf_token": csrf}, follow_redirects=True)
    assert endpoint_row(app, hook_id).is_active and ">Disable</button>" in response.get_data(as_text=True)
    page = client.post(f"/settings/webhooks/{hook_id}/delete", data={"csrf_token": csrf}, follow_redirects=True)
    assert endpoint_row(app, hook_id).deleted_at is not None
    assert hook_id not in page.get_data(as_text=True)
    assert client.get(f"/settings/webhooks/{hook_id}").status_code == 404
    actions = [e.action for e in make.audit() if e.action.startswith("webhook.")]
    assert actions == ["webhook.created", "webhook.disabled", "webhook.enabled", "webhook.deleted"]


def test_delivery_log_shows_every_attempt_and_resend_sends_the_same_event(app, client, make, receiver, clock):
    owner = signed_in(client, make)
    _, key = owner_key(make, owner.org)
    hook = receiver(500)
    hook_id = add_endpoint(client, key, hook.url)["webhook"]["id"]
    client.post(f"/api/v1/tokens/{key.id}/deactivate", headers=key.headers)
    run_worker(app)
    clock.advance(minutes=2)
    run_worker(app)

    log = client.get(f"/settings/webhooks/{hook_id}")
    html = log.get_data(as_text=True)
    event_id = hook.bodies()[0]["id"]
    assert log.status_code == 200 and event_id in html and "token.deactivated" in html
    assert "HTTP 500" in html and "HTTP 200" in html and " ms" in html and "Delivered" in html
    [delivery] = deliveries(app, hook_id)

    response = client.post(f"/settings/webhooks/{hook_id}/deliveries/{delivery.id}/resend",
                           data={"csrf_token": csrf_from(html)}, follow_redirects=True)
    assert response.status_code == 200 and f"Resending {event_id}" in response.get_data(as_text=True)
    run_worker(app)
    assert [b["id"] for b in hook.bodies()] == [event_id] * 3
    assert [a.status_code for a in attempts_of(app, delivery.id)] == [500, 200, 200]
    assert deliveries(app, hook_id)[0].status == "succeeded"


def test_resend_of_another_endpoints_delivery_is_not_found(app, client, make, receiver, clock):
    owner = signed_in(client, make)
    _, key = owner_key(make, owner.org)
    first = add_endpoint(client, key, receiver().url)["webhook"]["id"]
    second = add_endpoint(client, key, receiver().url)["webhook"]["id"]
    client.post(f"/api/v1/tokens/{key.id}/deactivate", headers=key.headers)
    run_worker(app)
    delivery = deliveries(app, first)[0]
    csrf = csrf_from(client.get("/settings/webhooks").get_data(as_text=True))
    assert client.post(f"/settings/webhooks/{second}/deliveries/{delivery.id}/resend",
                       data={"csrf_token": csrf}).status_code == 404


@pytest.mark.parametrize("role", ["security_manager", "maintainer", "editor"])
def test_settings_webhooks_is_for_owners_and_admins_only(app, client, make, role):
    signed_in(client, make, role)
    assert client.get("/settings/webhooks").status_code == 403
    assert "/settings/webhooks" not in client.get("/settings/api-tokens").get_data(as_text=True)


def test_admin_sees_the_webhooks_page(app, client, make):
    signed_in(client, make, "admin")
    response = client.get("/settings/webhooks")
    assert response.status_code == 200 and 'aria-current="page">Webhooks</a>' in response.get_data(as_text=True)


def test_other_organizations_endpoint_pages_are_not_found(app, client, make):
    signed_in(client, make)
    _, other_key = owner_key(make)
    theirs = add_endpoint(client, other_key, "http://127.0.0.1:9/")["webhook"]["id"]
    assert client.get(f"/settings/webhooks/{theirs}").status_code == 404
    csrf = csrf_from(client.get("/settings/webhooks").get_data(as_text=True))
    for action in ("disable", "enable", "delete"):
        assert client.post(f"/settings/webhooks/{theirs}/{action}", data={"csrf_token": csrf}).status_code == 404
    assert endpoint_row(app, theirs).is_active


# --------------------------------------------------------------------------- one slow endpoint delays only itself


def wait_until(condition, seconds: float) -> bool:
    """Poll `condition` until it holds or `seconds` pass (the test's own deadline, no fixed wait)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def org_with_endpoint(make, client, url):
    """A new organization, its owner's key and one endpoint (all event types) at `url`."""
    _, key = owner_key(make)
    return key, add_endpoint(client, key, url)["webhook"]["id"]


def attempted(app, endpoint_id: str) -> int:
    return sum(len(attempts_of(app, d.id)) for d in deliveries(app, endpoint_id))


def overlapping(spans: list[tuple[float, float]]) -> bool:
    ordered = sorted(spans)
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(ordered))


def test_a_hanging_endpoint_does_not_delay_another_organizations_delivery(app, client, make, receiver, clock,
                                                                          monkeypatch):
    monkeypatch.setattr(webhook_delivery, "TIMEOUT_SECONDS", 4)
    slow, prompt = receiver(hang=True), receiver()
    slow_key, slow_endpoint = org_with_endpoint(make, client, slow.url)
    prompt_key, prompt_endpoint = org_with_endpoint(make, client, prompt.url)
    rename(client, slow_key, slow_key.id, "first")  # the older delivery: claimed first
    rename(client, prompt_key, prompt_key.id, "second")
    with app.app_context():
        outbox.dispatch_pending(webhook_delivery.add_deliveries)
    made = []

    def worker_once():
        with app.app_context():
            made.append(webhook_delivery.deliver_due())

    thread = threading.Thread(target=worker_once)
    thread.start()
    try:
        # Delivered while the hanging receiver still holds its request, long before its 4 s timeout.
        assert wait_until(lambda: len(prompt.requests) == 1 and len(slow.requests) == 1, 2)
        assert attempted(app, slow_endpoint) == 0
        assert wait_until(lambda: attempted(app, prompt_endpoint) == 1, 2)
        assert attempted(app, slow_endpoint) == 0
    finally:
        slow.release.set()
        thread.join(30)
    assert made == [2]
    assert [d.status for d in deliveries(app, prompt_endpoint)] == ["succeeded"]
    assert [d.status for d in deliveries(app, slow_endpoint)] == ["pending"]  # failed once, retried later


def test_under_the_consumer_dispatch_never_waits_for_a_hanging_endpoint(app, client, make, receiver, clock,
                                                                       monkeypatch):
    """The running worker: dispatch jobs wake the delivery threads and return; a hanging receiver
    holds one thread while later events for other endpoints are delivered."""
    from shared.webhooks.pool import DeliveryPool
    from shared.worker.queue import queue_for

    monkeypatch.setattr(webhook_delivery, "TIMEOUT_SECONDS", 4)
    slow, prompt = receiver(hang=True), receiver()
    slow_key, slow_endpoint = org_with_endpoint(make, client, slow.url)
    prompt_key, prompt_endpoint = org_with_endpoint(make, client, prompt.url)
    queue = queue_for(app)
    queue.delivery_pool = DeliveryPool(app, 4).start()
    try:
        rename(client, slow_key, slow_key.id, "slow 1")
        rename(client, slow_key, slow_key.id, "slow 2")
        run_worker(app)  # runs the dispatch job and a sweep: returns without waiting for any receiver
        assert wait_until(lambda: len(slow.requests) == 1, 2)
        for sent in range(1, 4):
            rename(client, prompt_key, prompt_key.id, f"prompt {sent}")
            run_worker(app)
            assert wait_until(lambda sent=sent: attempted(app, prompt_endpoint) == sent, 2), sent
        # Still the first attempt in flight: one at a time for the hanging endpoint, the next waits.
        assert len(slow.requests) == 1 and attempted(app, slow_endpoint) == 0
    finally:
        slow.release.set()
        queue.delivery_pool.stop()
        queue.delivery_pool = None
    assert [d.status for d in deliveries(app, prompt_endpoint)] == ["succeeded"] * 3


def test_deliveries_run_concurrently_but_one_at_a_time_per_endpoint_in_order(app, client, make, receiver, clock):
    hooks = [receiver(delay=0.2) for _ in range(3)]
    keys = [org_with_endpoint(make, client, hook.url)[0] for hook in hooks]
    for n in range(3):
        for key in keys:
            rename(client, key, key.id, f"change {n}")
    with app.app_context():
        outbox.dispatch_pending(webhook_delivery.add_deliveries)
        assert webhook_delivery.deliver_due(threads=8) == 9
    for hook in hooks:
        assert len(hook.spans) == 3 and not overlapping(hook.spans)
        assert [b["data"]["token"]["name"] for b in hook.bodies()] == ["change 0", "change 1", "change 2"]
    assert overlapping([span for hook in hooks for span in hook.spans])  # endpoints were served at once


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="row locks: PostgreSQL only (SQLite claims one at a time)")
def test_a_claim_passing_over_a_busy_endpoint_hides_none_of_its_deliveries(app, client, make, receiver, clock,
                                                                          monkeypatch):
    """While one worker records an attempt (holding the endpoint's row), another worker's claim
    finds nothing to take; it must not lock the endpoint's other deliveries meanwhile, or the first
    worker's next claim would skip them too and both would stop with deliveries left."""
    from contextlib import contextmanager

    from sqlalchemy import text

    hook = receiver()
    key, endpoint_id = org_with_endpoint(make, client, hook.url)
    for n in range(3):
        rename(client, key, key.id, f"change {n}")
    with app.app_context():
        outbox.dispatch_pending(webhook_delivery.add_deliveries)
    endpoint = endpoint_row(app, endpoint_id).id
    looking, go_on = threading.Event(), threading.Event()
    real_transaction = webhook_delivery.write_transaction

    @contextmanager
    def held_open():  # the passing-over claim's transaction, kept open until the test has looked
        with real_transaction() as session:
            yield session
            looking.set()
            go_on.wait(10)

    engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    try:
        with engine.connect() as recording, engine.connect() as observer:
            recording.execute(text("SELECT id FROM webhook_endpoints WHERE id = :e FOR UPDATE"), {"e": endpoint})
            monkeypatch.setattr(webhook_delivery, "write_transaction", held_open)
            found = []

            def other_worker():
                with app.app_context():
                    found.append(webhook_delivery.claim_next())

            thread = threading.Thread(target=other_worker)
            thread.start()
            assert looking.wait(10)
            visible = observer.execute(text(
                "SELECT id FROM webhook_deliveries WHERE endpoint_id = :e FOR UPDATE SKIP LOCKED"), {"e": endpoint})
            assert len(visible.all()) == 3
            observer.rollback()
            go_on.set()
            thread.join(10)
            recording.rollback()
    finally:
        go_on.set()
        engine.dispose()
    assert found == [None]


def test_two_workers_never_send_two_deliveries_of_one_endpoint_at_once(app, client, make, receiver, clock):
    """Two worker processes' pools at once (threads with their own sessions and connections, as two
    processes have): the database lease keeps each endpoint to one delivery in flight."""
    hooks = [receiver(delay=0.05) for _ in range(2)]
    keys = [org_with_endpoint(make, client, hook.url)[0] for hook in hooks]
    for n in range(6):
        for key in keys:
            rename(client, key, key.id, f"change {n}")
    with app.app_context():
        outbox.dispatch_pending(webhook_delivery.add_deliveries)
    made = []

    def worker():
        with app.app_context():
            made.append(webhook_delivery.deliver_due(threads=4))

    workers = [threading.Thread(target=worker) for _ in range(2)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(60)
    assert sum(made) == 12
    for hook in hooks:
        assert len(hook.requests) == 6 and not overlapping(hook.spans)
        assert len({b["id"] for b in hook.bodies()}) == 6


def test_an_endpoint_in_flight_is_skipped_until_its_delivery_is_recorded_or_its_lease_ends(
        app, client, make, receiver, clock):
    first_hook, second_hook = receiver(), receiver()
    first_key, first_endpoint = org_with_endpoint(make, client, first_hook.url)
    second_key, second_endpoint = org_with_endpoint(make, client, second_hook.url)
    for n in range(3):
        rename(client, first_key, first_key.id, f"change {n}")
    rename(client, second_key, second_key.id, "other")
    with app.app_context():
        outbox.dispatch_pending(webhook_delivery.add_deliveries)
        first_ids = [d.id for d in deliveries(app, first_endpoint)]
        claim = webhook_delivery.claim_next()
        assert claim.delivery_id == first_ids[0]
        other = webhook_delivery.claim_next()
        assert other.endpoint_id == endpoint_row(app, second_endpoint).id
        assert webhook_delivery.claim_next() is None  # the first endpoint's next delivery waits
        webhook_delivery.attempt(other)
        assert webhook_delivery.claim_next() is None
        webhook_delivery.attempt(claim)
        claim = webhook_delivery.claim_next()
        assert claim.delivery_id == first_ids[1]

        # A worker that died holding the endpoint: after the lease, the delivery is taken again...
        clock.advance(seconds=webhook_delivery.LEASE.total_seconds() + 1)
        retaken = webhook_delivery.claim_next()
        assert retaken.delivery_id == first_ids[1]
        # ...and the first taker's late outcome does not end the new lease.
        webhook_delivery.attempt(claim)
        assert webhook_delivery.claim_next() is None
        webhook_delivery.attempt(retaken)
        assert webhook_delivery.claim_next().delivery_id == first_ids[2]


def test_attempts_are_counted_by_result_with_their_latency(app, client, make, receiver, clock):
    from prometheus_client import REGISTRY

    def count(name: str, result: str) -> float:
        return REGISTRY.get_sample_value(name, {"result": result}) or 0.0

    before = {(name, result): count(name, result) for name in ("keyward_webhook_deliveries_total",
                                                               "keyward_webhook_delivery_seconds_count")
              for result in ("succeeded", "retrying")}
    _, key = owner_key(make)
    hook = receiver(500)
    add_endpoint(client, key, hook.url)
    rename(client, key, key.id, "counted")
    run_worker(app)
    clock.advance(minutes=2)
    run_worker(app)
    for name in ("keyward_webhook_deliveries_total", "keyward_webhook_delivery_seconds_count"):
        assert count(name, "retrying") - before[(name, "retrying")] == 1
        assert count(name, "succeeded") - before[(name, "succeeded")] == 1


def test_the_worker_serves_its_own_metrics_when_asked(app, app_config, client, make, receiver, tmp_path):
    """Deliveries, reminders and emails are counted in the worker process: `flask worker` with
    KEYWARD_WORKER_METRICS_BIND serves them, behind the same bearer token as the web app's."""
    import urllib.error
    import urllib.request

    from tests.conftest import free_port

    _, key = owner_key(make)
    hook = receiver()
    add_endpoint(client, key, hook.url)
    token, bind = "worker-metrics-token-0123456789", f"127.0.0.1:{free_port()}"
    env = {**os.environ, "DATABASE_URL": app_config["SQLALCHEMY_DATABASE_URI"],
           "KEYWARD_QUEUE_URL": app_config["KEYWARD_QUEUE_URL"], "KEYWARD_WEBHOOK_ALLOW_PRIVATE": "1",
           "KEYWARD_METRICS_TOKEN": token, "KEYWARD_WORKER_METRICS_BIND": bind}
    log = tmp_path / "worker.log"
    with open(log, "wb") as output:
        worker = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "worker"], cwd=ROOT, env=env,
                                  stdout=output, stderr=subprocess.STDOUT)

    def get(headers: dict) -> tuple[int, str]:
        request = urllib.request.Request(f"http://{bind}/metrics", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError:
            return 0, ""

    def succeeded() -> float:
        from prometheus_client.parser import text_string_to_metric_families

        status, text = get({"Authorization": f"Bearer {token}"})
        return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
                   if sample.name == "keyward_webhook_deliveries_total"
                   and sample.labels == {"result": "succeeded"}) if status == 200 else -1

    try:
        assert wait_until(lambda: get({})[0] == 401, 30), log.read_text()
        assert get({"Authorization": "Bearer not-the-token-0123456789"})[0] == 401
        rename(client, key, key.id, "counted by the worker")
        assert wait_until(lambda: succeeded() == 1, 30), log.read_text()
        assert len(hook.requests) == 1
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)


# --------------------------------------------------------------------------- losing the worker


def test_200_changes_with_the_worker_killed_midway_all_arrive_correctly_signed(app, app_config, client, make,
                                                                             receiver, tmp_path):
    """The real `flask --app wsgi worker`, SIGKILLed halfway through 200 token changes while a request
    is in flight (the receiver answers 20, then holds the 21st), then started again: every event
    arrives at least once, every signature verifies. However fast the worker, it is killed with
    work left."""
    _, key = owner_key(make)
    hook = receiver(hold_after=20)
    hook.secret = add_endpoint(client, key, hook.url)["secret"]
    env = {**os.environ, "DATABASE_URL": app_config["SQLALCHEMY_DATABASE_URI"],
           "KEYWARD_QUEUE_URL": app_config["KEYWARD_QUEUE_URL"], "KEYWARD_WEBHOOK_ALLOW_PRIVATE": "1"}

    def start_worker(n: int) -> subprocess.Popen:
        with open(tmp_path / f"worker-{n}.log", "wb") as log:  # the child keeps its own descriptor
            return subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "worker"], cwd=ROOT, env=env,
                                    stdout=log, stderr=subprocess.STDOUT)

    def received_ids() -> set[str]:
        return {b["id"] for b in hook.bodies()}

    def wait_for(condition, seconds: float, poke: bool = False) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if condition():
                return True
            if poke:  # more traffic would do the same: a dispatch job that finds the due deliveries
                with app.app_context():
                    from shared.worker.queue import queue_for

                    queue_for(app).poke()
            time.sleep(0.5)
        return condition()

    worker = start_worker(1)
    try:
        for n in range(100):
            rename(client, key, key.id, f"change {n}")
        assert wait_for(hook.holding.is_set, 60), (tmp_path / "worker-1.log").read_text()
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        assert len(hook.requests) == 21  # 20 answered and one cut short: the restarted worker has work left
        with hook.lock:
            hook.hold_after = None
        hook.release.set()
        worker = start_worker(2)
        for n in range(100, 200):
            rename(client, key, key.id, f"change {n}")
        with app.app_context():
            expected = set(db.session.scalars(select(Event.public_id).where(Event.type == "token.updated")))
        assert len(expected) == 200

        def all_succeeded() -> bool:
            with app.app_context():
                statuses = list(db.session.scalars(select(WebhookDelivery.status)))
                db.session.rollback()
            return len(statuses) == 200 and set(statuses) == {"succeeded"}

        assert wait_for(lambda: received_ids() >= expected and all_succeeded(), 120, poke=True), \
            (len(received_ids() & expected), (tmp_path / "worker-2.log").read_text()[-2000:])
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    assert hook.bad_signatures == 0
    assert received_ids() == expected
    order = [b["id"] for b in hook.bodies()]
    assert len(order) >= 200  # at least once; a delivery cut by the kill may come twice



# --------------------------------------------------------------------------- test events and what was sent and answered


def test_send_test_event_delivers_a_signed_ping_to_that_endpoint_only(app, client, make, receiver, clock):
    owner = signed_in(client, make)
    _, key = owner_key(make, owner.org)
    hook, other = receiver(secret=None), receiver()
    created = add_endpoint(client, key, hook.url)
    hook_id, secret = created["webhook"]["id"], created["secret"]
    add_endpoint(client, key, other.url)
    page = client.get("/settings/webhooks").get_data(as_text=True)
    assert ">Send test event<" in page and page.count(">Add endpoint</button>") == 1  # and "New endpoint" opens it

    response = client.post(f"/settings/webhooks/{hook_id}/test", data={"csrf_token": csrf_from(page)})
    assert response.status_code == 302 and response.headers["Location"] == f"/settings/webhooks/{hook_id}"
    run_worker(app)
    [(headers, body, _)] = hook.requests
    assert verify_keyward_signature(secret, headers["Keyward-Signature"], body, now=clock.now().timestamp())
    sent = json.loads(body)
    assert sent["type"] == "ping" and sent["data"] == {"webhook": {"id": hook_id, "url": hook.url}}
    assert other.requests == []  # nobody else hears a test
    assert [e.action for e in make.audit("webhook.tested")] == ["webhook.tested"]


def test_the_log_shows_each_attempts_request_body_and_the_answers_first_kilobyte(app, client, make, receiver,
                                                                                  clock):
    owner = signed_in(client, make)
    _, key = owner_key(make, owner.org)
    hook = receiver(500, reply=b'{"error": "not today"}' + b"x" * 2000)
    hook_id = add_endpoint(client, key, hook.url)["webhook"]["id"]
    client.post(f"/api/v1/tokens/{key.id}/deactivate", headers=key.headers)
    run_worker(app)
    [delivery] = deliveries(app, hook_id)
    [attempt] = attempts_of(app, delivery.id)
    assert attempt.status_code == 500 and len(attempt.response_excerpt) == 1024
    assert attempt.response_excerpt.startswith('{"error": "not today"}')

    log = client.get(f"/settings/webhooks/{hook_id}").get_data(as_text=True)
    body = re.search(r'<summary>Request body</summary>\s*<pre class="log-body">(.*?)</pre>', log, re.DOTALL).group(1)
    assert json.loads(html_unescape(body)) == json.loads(hook.requests[0][1])
    answer = re.search(r'<summary>Response \(first kilobyte\)</summary>\s*<pre class="log-body">(.*?)</pre>', log,
                       re.DOTALL).group(1)
    assert html_unescape(answer) == attempt.response_excerpt and "HTTP 500" in log


def test_a_disabled_endpoint_gets_no_test_event(app, client, make, receiver):
    owner = signed_in(client, make)
    _, key = owner_key(make, owner.org)
    hook = receiver()
    hook_id = add_endpoint(client, key, hook.url)["webhook"]["id"]
    csrf = csrf_from(client.get("/settings/webhooks").get_data(as_text=True))
    client.post(f"/settings/webhooks/{hook_id}/disable", data={"csrf_token": csrf})
    response = client.post(f"/settings/webhooks/{hook_id}/test", data={"csrf_token": csrf}, follow_redirects=True)
    assert "Enable the endpoint before sending a test event" in response.get_data(as_text=True)
    run_worker(app)
    assert hook.requests == [] and deliveries(app, hook_id) == []


def html_unescape(text: str) -> str:
    import html

    return html.unescape(text)
