"""Outgoing TLS, against real local servers with certificates from trustme: HTTPS webhook deliveries
and SMTP with STARTTLS and login. Certificates are always verified; the tests trust their own CA
through KEYWARD_CA_BUNDLE (extra CAs beside the system's), never by turning verification off."""

from __future__ import annotations

import logging
import ssl
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trustme
from sqlalchemy import select

from shared.core.extensions import db
from shared.webhooks import ssrf
from tests.conftest import Factory
from tests.mail import SmtpServer
from tests.webhooks.helpers import add_endpoint, attempts_of, deliveries, fake_dns, owner_key, run_worker

HOST = "hooks.example.test"


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture
def ca_bundle(ca, tmp_path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


class TLSReceiver:
    """An HTTPS server on 127.0.0.1 serving `cert`; records the bodies it was sent."""

    def __init__(self, cert: trustme.LeafCert):
        self.bodies: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                receiver.bodies.append(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.server.server_address[1]}/hooks"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def tls_receiver(monkeypatch):
    monkeypatch.setattr(ssrf.socket, "getaddrinfo", fake_dns({HOST: ["127.0.0.1"]}))
    started: list[TLSReceiver] = []

    def start(cert) -> TLSReceiver:
        started.append(TLSReceiver(cert))
        return started[-1]

    yield start
    for receiver in started:
        receiver.stop()


def deliver_one(app, receiver: TLSReceiver):
    """Register the receiver, cause one event, run the worker: the delivery's one attempt."""
    make = Factory(app)
    client = app.test_client()
    _, key = owner_key(make)
    endpoint_id = add_endpoint(client, key, receiver.url)["webhook"]["id"]
    client.post(f"/api/v1/tokens/{key.id}/deactivate", headers=key.headers)
    run_worker(app)
    [delivery] = deliveries(app, endpoint_id)
    [attempt] = attempts_of(app, delivery.id)
    return delivery, attempt


def test_https_delivery_verifies_a_certificate_from_the_trusted_ca(app_with, ca, ca_bundle, tls_receiver):
    receiver = tls_receiver(ca.issue_cert(HOST))
    app = app_with(KEYWARD_WEBHOOK_ALLOW_PRIVATE=True, KEYWARD_CA_BUNDLE=ca_bundle)
    delivery, attempt = deliver_one(app, receiver)
    assert (attempt.status_code, attempt.error) == (200, None)
    assert delivery.status == "succeeded" and len(receiver.bodies) == 1


@pytest.mark.parametrize(("case", "message"), [
    ("expired", "certificate has expired"),
    ("wrong host", "Hostname mismatch"),
    ("unknown CA", "unable to get local issuer certificate"),
])
def test_https_delivery_refuses_a_bad_certificate(app_with, ca, ca_bundle, tls_receiver, case, message):
    if case == "expired":
        now = datetime.now(UTC)
        cert = ca.issue_cert(HOST, not_before=now - timedelta(days=30), not_after=now - timedelta(days=1))
    elif case == "wrong host":
        cert = ca.issue_cert("other.example.test")
    else:
        cert = trustme.CA().issue_cert(HOST)  # a CA nobody configured
    receiver = tls_receiver(cert)
    app = app_with(KEYWARD_WEBHOOK_ALLOW_PRIVATE=True, KEYWARD_CA_BUNDLE=ca_bundle)
    delivery, attempt = deliver_one(app, receiver)
    assert attempt.status_code is None
    assert attempt.error.startswith("TLS error:") and message in attempt.error, attempt.error
    assert delivery.status == "pending" and delivery.attempts == 1  # retried later, like any failure
    assert receiver.bodies == []


def test_without_the_ca_bundle_the_test_ca_is_not_trusted(app_with, ca, tls_receiver):
    """Verification is on by default: the system store alone does not know the test CA."""
    receiver = tls_receiver(ca.issue_cert(HOST))
    app = app_with(KEYWARD_WEBHOOK_ALLOW_PRIVATE=True, KEYWARD_CA_BUNDLE=None)
    _, attempt = deliver_one(app, receiver)
    assert attempt.error.startswith("TLS error:") and "certificate verify failed" in attempt.error


# --------------------------------------------------------------------------- SMTP with STARTTLS and login


class LoginSmtpServer(SmtpServer):
    """aiosmtpd offering STARTTLS with `cert` and requiring a login, which it accepts only over TLS."""

    def __init__(self, cert: trustme.LeafCert, username: str, password: str):
        super().__init__()
        self.cert, self.username, self.password = cert, username, password
        self.logins: list[tuple[str, bool]] = []  # (user name, over TLS)

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult

        ok = (auth_data.login.decode(), auth_data.password.decode()) == (self.username, self.password)
        if ok:
            self.logins.append((self.username, session.ssl is not None))
        return AuthResult(success=ok)

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.cert.configure_cert(context)
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, tls_context=context,
                                     require_starttls=True, authenticator=self.authenticate,
                                     auth_required=True, auth_require_tls=True)
        self.controller.start()


@pytest.fixture
def smtp_tls(ca):
    servers: list[LoginSmtpServer] = []

    def start(cert=None) -> LoginSmtpServer:
        servers.append(LoginSmtpServer(cert or ca.issue_cert("127.0.0.1"), "mailer", "p@ss word"))
        servers[-1].start()
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def notify_one(app) -> Factory:
    from shared.notifications import notices

    make = Factory(app)
    org = make.org()
    owner = make.api_member(org, "owner")
    with app.app_context():
        notices.notify({owner.user_id}, org.id, "webhook_disabled", "Endpoint disabled")
        db.session.commit()
    return owner


def test_email_goes_over_starttls_with_a_login(app_with, ca_bundle, smtp_tls):
    from shared.notifications import mailer

    server = smtp_tls()
    app = app_with(KEYWARD_SMTP_URL=f"smtp://mailer:p%40ss%20word@127.0.0.1:{server.port}",
                   KEYWARD_CA_BUNDLE=ca_bundle)
    owner = notify_one(app)
    with app.app_context():
        assert mailer.send_pending() == 1
    assert server.logins == [("mailer", True)]  # the password went inside TLS
    assert [m["To"] for m in server.messages] == [owner.email]


@pytest.mark.parametrize("case", ["wrong host", "unknown CA"])
def test_email_is_not_sent_to_a_server_whose_certificate_fails(app_with, ca, ca_bundle, smtp_tls, caplog, case):
    from shared.models import Notification
    from shared.notifications import mailer

    cert = ca.issue_cert("mail.example.test") if case == "wrong host" else trustme.CA().issue_cert("127.0.0.1")
    server = smtp_tls(cert)
    app = app_with(KEYWARD_SMTP_URL=f"smtp://mailer:p%40ss%20word@127.0.0.1:{server.port}",
                   KEYWARD_CA_BUNDLE=ca_bundle)
    notify_one(app)
    with caplog.at_level(logging.WARNING, logger="keyward.mailer"), app.app_context():
        assert mailer.send_pending() == 0
        unsent = db.session.scalars(select(Notification.id).where(Notification.email_sent_at.is_(None))).all()
    assert server.logins == [] and server.messages == []  # no password, no mail to an unverified server
    assert len(unsent) == 1  # given back for the next run
    assert "SSLCertVerificationError" in caplog.text and "p@ss word" not in caplog.text


def test_no_password_goes_to_a_server_that_does_not_offer_starttls(app_with, caplog):
    """A server without STARTTLS (or a man in the middle stripping it) never sees the password."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    from shared.models import Notification
    from shared.notifications import mailer

    seen: list[bytes] = []

    def authenticate(server, session, envelope, mechanism, auth_data):
        seen.append(auth_data.password)
        return AuthResult(success=True)

    plain = SmtpServer()
    plain.controller = Controller(plain, hostname="127.0.0.1", port=plain.port, authenticator=authenticate,
                                  auth_require_tls=False)
    plain.controller.start()
    try:
        app = app_with(KEYWARD_SMTP_URL=f"smtp://mailer:p%40ss%20word@127.0.0.1:{plain.port}")
        notify_one(app)
        with caplog.at_level(logging.WARNING, logger="keyward.mailer"), app.app_context():
            assert mailer.send_pending() == 0
            unsent = db.session.scalars(select(Notification.id).where(Notification.email_sent_at.is_(None))).all()
    finally:
        plain.stop()
    assert seen == [] and plain.messages == []
    assert len(unsent) == 1 and "SMTPNotSupportedError" in caplog.text
