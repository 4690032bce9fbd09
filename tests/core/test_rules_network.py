"""Network rules that had no test of their own: the client address behind proxies, IPv4-mapped peers
against an allowlist, the SSRF guard on 6to4 addresses and on names that do not resolve, Resend
while an endpoint is disabled, and no email to a deactivated account."""

from __future__ import annotations

import socket
from ipaddress import ip_address

import pytest
from sqlalchemy import select, update

from shared.core.extensions import db
from shared.webhooks import ssrf
from tests.conftest import Factory, csrf_from, login
from tests.webhooks.helpers import (
    add_endpoint,
    attempts_of,
    deliveries,
    endpoint_row,
    fake_dns,
    owner_key,
    run_worker,
)

PEER = "10.0.0.1"  # the proxy (or client) that connects to Keyward


@pytest.fixture
def app_config(app_config):
    """Deliveries go to loopback here; the guard's own tests build an app that refuses private addresses."""
    return {**app_config, "KEYWARD_WEBHOOK_ALLOW_PRIVATE": True}


def address_seen(app, forwarded_for: str | None, peer: str = PEER) -> str:
    from shared.core.netaddr import client_address

    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for is not None else {}
    with app.test_request_context("/api/v1/me", headers=headers, environ_base={"REMOTE_ADDR": peer}):
        return client_address()


# --------------------------------------------------------------------------- X-Forwarded-For


@pytest.mark.parametrize("forwarded_for", [None, "", "198.51.100.7", " , 198.51.100.7", "198.51.100.7,,"])
def test_a_forwarded_for_shorter_than_the_trusted_hops_counts_for_nothing(app_with, forwarded_for):
    """Two trusted proxies each append an address: fewer than two means the header did not come
    through them, so the peer is the client."""
    assert address_seen(app_with(KEYWARD_TRUSTED_PROXIES=2), forwarded_for) == PEER


@pytest.mark.parametrize("forwarded_for", ["not-an-ip", "198.51.100.7, 300.1.2.3", "198.51.100.7, 10.0.0.1/8",
                                           "1.1.1.1, <script>", "198.51.100.7, ::ffff:1.2.3.4.5"])
def test_a_malformed_forwarded_address_counts_for_nothing(app_with, forwarded_for):
    assert address_seen(app_with(KEYWARD_TRUSTED_PROXIES=1), forwarded_for) == PEER


def test_the_trusted_hop_is_counted_from_the_right(app_with):
    app = app_with(KEYWARD_TRUSTED_PROXIES=2)
    assert address_seen(app, "6.6.6.6, 198.51.100.7, 10.9.9.9") == "198.51.100.7"
    assert address_seen(app, "6.6.6.6, 2001:DB8::0:1, 10.9.9.9") == "2001:db8::1"  # written canonically
    assert address_seen(app_with(KEYWARD_TRUSTED_PROXIES=0), "198.51.100.7") == PEER


def test_behind_short_or_malformed_forwarding_the_token_sees_the_peer(app_with):
    """End to end: the allowlist and last_used_ip see the peer, and nothing answers 500."""
    app = app_with(KEYWARD_TRUSTED_PROXIES=2)
    make = Factory(app)
    issued = make.token(make.api_member(make.org(), "owner"), ip_allowlist=[PEER])
    client = app.test_client()
    for forwarded_for in ("198.51.100.7", "garbage, also garbage"):
        response = client.get("/api/v1/me", headers={**issued.headers, "X-Forwarded-For": forwarded_for},
                              environ_base={"REMOTE_ADDR": PEER})
        assert response.status_code == 200, (forwarded_for, response.get_json())
    make.flush_usage()  # usage is written by the flusher, off the request path
    assert make.get_token(issued.id).last_used_ip == PEER


# --------------------------------------------------------------------------- IPv4-mapped peers


def test_an_ipv4_mapped_peer_is_matched_as_ipv4_against_the_allowlist(client, make):
    issued = make.token(make.api_member(make.org(), "owner"), ip_allowlist=["192.0.2.0/24"])
    inside = client.get("/api/v1/me", headers=issued.headers, environ_base={"REMOTE_ADDR": "::ffff:192.0.2.9"})
    assert inside.status_code == 200, inside.get_json()
    outside = client.get("/api/v1/me", headers=issued.headers, environ_base={"REMOTE_ADDR": "::ffff:198.51.100.9"})
    assert outside.status_code == 403 and outside.get_json()["error"]["code"] == "ip_not_allowed"


def test_address_allowed_reads_mapped_addresses_and_refuses_garbage():
    from shared.core.netaddr import address_allowed

    assert address_allowed("::ffff:10.1.2.3", ["10.0.0.0/8"])
    assert address_allowed("10.200.0.1", ["10.1.2.3/8"])  # an entry written with host bits is its network
    assert address_allowed("2001:db8::5", ["2001:db8::/32"])
    assert not address_allowed("2001:db8::5", ["10.0.0.0/8"])
    assert not address_allowed("not-an-address", ["0.0.0.0/0"])
    assert not address_allowed("", ["0.0.0.0/0"])


# --------------------------------------------------------------------------- the SSRF guard


@pytest.mark.parametrize(("address", "reason"), [
    ("2002:7f00:1::", "a loopback address"),  # 6to4 of 127.0.0.1
    ("2002:a00:1::1", "a private address"),  # 6to4 of 10.0.0.1
    ("2002:a9fe:a9fe::", "a cloud metadata address"),  # 6to4 of 169.254.169.254
])
def test_a_6to4_address_is_judged_by_the_ipv4_address_it_reaches(address, reason):
    assert ssrf.address_refusal(ip_address(address), allow_private=False) == reason


def test_a_6to4_address_of_a_public_host_passes_and_metadata_never_does():
    assert ssrf.address_refusal(ip_address("2002:5db8:d822::1"), allow_private=False) is None  # 93.184.216.34
    assert ssrf.address_refusal(ip_address("2002:a9fe:a9fe::"), allow_private=True) == "a cloud metadata address"


def test_a_6to4_webhook_url_is_refused(app_with):
    app = app_with(KEYWARD_WEBHOOK_ALLOW_PRIVATE=False)
    _, key = owner_key(Factory(app))
    response = app.test_client().post("/api/v1/webhooks", json={"url": "http://[2002:7f00:1::]:8080/"},
                                      headers=key.headers)
    assert response.status_code == 400
    assert "loopback" in response.get_json()["error"]["fields"]["url"]


def failing_dns(*names: str, answer_empty: bool = False):
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in names:
            return real(host, port, *args, **kwargs)
        if answer_empty:
            return []
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    return getaddrinfo


@pytest.mark.parametrize("answer_empty", [False, True])
def test_a_host_that_does_not_resolve_is_refused_when_saved(app_with, monkeypatch, answer_empty):
    app = app_with(KEYWARD_WEBHOOK_ALLOW_PRIVATE=False)
    _, key = owner_key(Factory(app))
    monkeypatch.setattr(ssrf.socket, "getaddrinfo", failing_dns("gone.example.com", answer_empty=answer_empty))
    response = app.test_client().post("/api/v1/webhooks", json={"url": "https://gone.example.com/hook"},
                                      headers=key.headers)
    assert response.status_code == 400
    assert response.get_json()["error"]["fields"]["url"] == "Could not resolve gone.example.com"


def test_a_host_that_stops_resolving_is_a_failed_attempt_retried_later(app, client, make, monkeypatch, clock):
    _, key = owner_key(make)
    monkeypatch.setattr(ssrf.socket, "getaddrinfo", fake_dns({"hooks.example.com": ["127.0.0.1"]}))
    endpoint_id = add_endpoint(client, key, "http://hooks.example.com:9/in")["webhook"]["id"]
    monkeypatch.setattr(ssrf.socket, "getaddrinfo", failing_dns("hooks.example.com"))
    client.post(f"/api/v1/tokens/{key.id}/deactivate", headers=key.headers)
    run_worker(app)
    [delivery] = deliveries(app, endpoint_id)
    [attempt] = attempts_of(app, delivery.id)
    assert attempt.error == "Could not resolve hooks.example.com" and attempt.status_code is None
    assert delivery.status == "pending" and delivery.attempts == 1 and delivery.next_attempt_at > clock.now()


# --------------------------------------------------------------------------- Resend while disabled


def test_resend_while_the_endpoint_is_disabled_is_refused_and_changes_nothing(app, client, make, clock):
    from shared.models import AuditEvent

    member = make.member(make.org("business"), "owner")
    login(client, member)
    _, key = owner_key(make, member.org)
    hook_id = add_endpoint(client, key, "http://127.0.0.1:9/")["webhook"]["id"]  # nothing listens: refused
    client.post(f"/api/v1/tokens/{key.id}/deactivate", headers=key.headers)
    run_worker(app)
    [before] = deliveries(app, hook_id)
    assert before.attempts == 1
    page = client.get(f"/settings/webhooks/{hook_id}").get_data(as_text=True)
    token = csrf_from(page)
    assert client.post(f"/settings/webhooks/{hook_id}/disable", data={"csrf_token": token}).status_code == 302
    assert not endpoint_row(app, hook_id).is_active

    response = client.post(f"/settings/webhooks/{hook_id}/deliveries/{before.id}/resend",
                           data={"csrf_token": token}, follow_redirects=True)
    assert response.status_code == 200
    assert "Enable the endpoint before resending" in response.get_data(as_text=True)
    [after] = deliveries(app, hook_id)
    assert (after.status, after.attempts, after.next_attempt_at) == (before.status, 1, before.next_attempt_at)
    with app.app_context():
        assert db.session.scalars(select(AuditEvent).where(AuditEvent.action == "webhook.resent")).all() == []


# --------------------------------------------------------------------------- no email to a deactivated user


def test_a_deactivated_user_gets_no_email_and_is_not_retried(app_with, smtp):
    from shared.models import Notification, User
    from shared.notifications import mailer, notices

    app = app_with(KEYWARD_SMTP_URL=smtp.url)
    make = Factory(app)
    org = make.org()
    active, gone = make.api_member(org, "owner"), make.api_member(org, "admin")
    with app.app_context():
        db.session.execute(update(User).where(User.id == gone.user_id).values(is_active=False))
        notices.notify({active.user_id, gone.user_id}, org.id, "webhook_disabled", "Endpoint disabled")
        db.session.commit()
        assert mailer.send_pending() == 1
        assert mailer.send_pending() == 0  # the skipped one is handled, not waiting for a retry
        handled = db.session.scalars(select(Notification.email_sent_at)).all()
    assert [m["To"] for m in smtp.messages] == [active.email]
    assert len(handled) == 2 and None not in handled
