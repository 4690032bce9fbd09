"""Delivering events to endpoints: at least once, the same event id on every attempt, exponential
backoff, every attempt kept, and an endpoint disabled after five failed events in a row.

Deliveries run concurrently (KEYWARD_WEBHOOK_CONCURRENCY threads) but never two at once for one
endpoint: a claim leases the endpoint as well as the delivery, in the database, so the rule holds
across every worker process. An endpoint that hangs until the timeout then holds up one thread and
its own later deliveries, never another organization's.
"""

from __future__ import annotations

import http.client
import random
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import or_, select, update

from shared.audit import record as audit
from shared.core import clock, metrics, tls
from shared.core.config import DEFAULT_WEBHOOK_CONCURRENCY
from shared.core.db import write_transaction
from shared.core.errors import InvalidRequest
from shared.core.extensions import db
from shared.models import DeliveryStatus, Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from shared.notifications import notices
from shared.webhooks.endpoints import live_endpoints
from shared.webhooks.signing import SIGNATURE_HEADER, event_body, signature
from shared.webhooks.ssrf import RefusedDestination, parse_url, resolve_destination

USER_AGENT = "Keyward-Webhooks/1.0"


TIMEOUT_SECONDS = 5.0  # connect, send and each read


RESPONSE_EXCERPT_BYTES = 200  # of an error answer, in the attempt's error


RESPONSE_LOG_BYTES = 1024  # of every answer, kept with the attempt for the delivery log


ERROR_LENGTH = 300  # WebhookAttempt.error


BACKOFF = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2),
           timedelta(hours=8))


JITTER = 0.2


MAX_ATTEMPTS = 1 + len(BACKOFF)


DISABLE_AFTER = 5  # failed deliveries in a row


# A claimed delivery belongs to its worker this long; longer than one attempt can take, short enough
# that a killed worker's delivery is sent again within a minute or so.
LEASE = timedelta(seconds=4 * TIMEOUT_SECONDS)


CLAIM_TRIES = 5  # endpoints passed over in one claim whose due delivery another worker holds


def add_deliveries(event: Event) -> list[WebhookDelivery]:
    """One pending delivery, due now, per active endpoint of the event's organization that wants
    its type and existed when the event happened; added to the current (dispatching) transaction."""
    now = clock.now()
    endpoints = db.session.scalars(live_endpoints(event.organization_id).where(
        WebhookEndpoint.is_active.is_(True), WebhookEndpoint.created_at <= event.created_at)
        .order_by(WebhookEndpoint.id))
    deliveries = [WebhookDelivery(endpoint_id=endpoint.id, event_id=event.id, status=DeliveryStatus.PENDING, attempts=0,
                                  next_attempt_at=now, created_at=now)
                  for endpoint in endpoints if event.type in endpoint.event_types]
    db.session.add_all(deliveries)
    return deliveries


@dataclass(frozen=True)
class Claim:
    """A delivery taken for one attempt: everything needed to send it, outside any transaction."""

    delivery_id: int
    endpoint_id: int
    lease_until: datetime  # the delivery's and the endpoint's lease
    url: str
    secret: str
    event_id: str
    body: bytes


@dataclass(frozen=True)
class Outcome:
    attempted_at: datetime
    status_code: int | None
    latency_ms: int
    error: str | None
    response_excerpt: str | None = None  # the answer's first RESPONSE_LOG_BYTES, secrets redacted

    @property
    def succeeded(self) -> bool:
        return self.error is None


def _due(now: datetime):
    return (WebhookDelivery.status == DeliveryStatus.PENDING, WebhookDelivery.next_attempt_at <= now)


def _free_endpoint_with_due_delivery(now: datetime, passed_over: list[int]):
    """The endpoint of the oldest due delivery among live endpoints with no delivery in flight
    (no live lease), locked. Only endpoint rows are locked while looking: a claim that locked the
    deliveries it passed over could hide them from the thread about to take them."""
    query = (select(WebhookEndpoint).join(WebhookDelivery, WebhookDelivery.endpoint_id == WebhookEndpoint.id)
             .where(*_due(now), WebhookEndpoint.is_active.is_(True), WebhookEndpoint.deleted_at.is_(None),
                    or_(WebhookEndpoint.delivering_until.is_(None), WebhookEndpoint.delivering_until <= now)))
    if passed_over:
        query = query.where(WebhookEndpoint.id.not_in(passed_over))
    return query.order_by(WebhookDelivery.id).limit(1).with_for_update(skip_locked=True, of=WebhookEndpoint)


def claim_next() -> Claim | None:
    """Take the oldest due delivery whose endpoint has none in flight, for one attempt, or None.

    The endpoint and the delivery are leased together (committed): two workers never take the same
    delivery, nor two deliveries of one endpoint, while the lease runs. On PostgreSQL the endpoint
    row is locked first (SKIP LOCKED), and a row whose lease another claim committed meanwhile is
    checked again at its new version, so that claim's lease is seen; SQLite runs claims one at a
    time under its write lock.
    """
    with write_transaction() as session:
        now = clock.now()
        passed_over: list[int] = []
        for _ in range(CLAIM_TRIES):
            endpoint = session.scalars(_free_endpoint_with_due_delivery(now, passed_over)).first()
            if endpoint is None:
                return None
            delivery = session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id, *_due(now))
                .order_by(WebhookDelivery.id).limit(1).with_for_update(skip_locked=True)).first()
            if delivery is not None:
                break
            passed_over.append(endpoint.id)  # its due delivery is being recorded late by another worker
        else:
            return None
        lease_until = now + LEASE
        delivery.next_attempt_at = endpoint.delivering_until = lease_until
        event = delivery.event
        return Claim(delivery.id, endpoint.id, lease_until, endpoint.url, endpoint.signing_secret, event.public_id,
                     event_body(event))


def concurrency() -> int:
    """Deliveries in flight at once per worker process (KEYWARD_WEBHOOK_CONCURRENCY)."""
    return current_app.config.get("KEYWARD_WEBHOOK_CONCURRENCY") or DEFAULT_WEBHOOK_CONCURRENCY


def attempt(claim: Claim) -> None:
    """Send a claimed delivery and record what happened."""
    record_outcome(claim, send(claim))


def deliver_due(limit: int = 1000, threads: int | None = None) -> int:
    """Attempt every due delivery (up to `limit`) with up to `threads` (KEYWARD_WEBHOOK_CONCURRENCY)
    at once, one per endpoint at a time; returns how many attempts were made, once all are done.

    Each thread claims and sends until no delivery is left that it may take; a thread finding only
    deliveries of endpoints already in flight stops, and the thread holding that endpoint sends
    them one after the other.
    """
    app = current_app._get_current_object()
    threads = max(1, threads or concurrency())
    lock = threading.Lock()
    remaining = [limit]

    def take_one() -> bool:
        with lock:
            remaining[0] -= 1
            return remaining[0] >= 0

    def drain() -> int:
        made = 0
        while take_one() and (claim := claim_next()) is not None:
            attempt(claim)
            made += 1
        return made

    def drain_in_app(_: int) -> int:
        with app.app_context():  # each thread its own session and connection
            return drain()

    if threads == 1:
        return drain()
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="keyward-webhooks") as pool:
        return sum(pool.map(drain_in_app, range(threads)))


def retry_delay(failed_attempts: int) -> timedelta:
    """After the n-th failed attempt: BACKOFF[n-1], ±JITTER so a receiver's outage does not come
    back as one burst."""
    return BACKOFF[failed_attempts - 1] * random.uniform(1 - JITTER, 1 + JITTER)


def record_outcome(claim: Claim, outcome: Outcome) -> None:
    """Keep the attempt and move the delivery on: succeeded, retried later, or failed for good."""
    with write_transaction() as session:
        result = _record(session, claim, outcome)
    metrics.observe_webhook_attempt(result, outcome.latency_ms / 1000)


def _record(session, claim: Claim, outcome: Outcome) -> str:
    delivery = session.scalars(select(WebhookDelivery).where(WebhookDelivery.id == claim.delivery_id)
                               .with_for_update().execution_options(populate_existing=True)).one()
    session.add(WebhookAttempt(delivery_id=delivery.id, attempted_at=outcome.attempted_at,
                               status_code=outcome.status_code, latency_ms=outcome.latency_ms,
                               error=outcome.error, response_excerpt=outcome.response_excerpt))
    # The endpoint is free for its next delivery; a later lease (another worker's, taken after ours
    # ran out) is not ours to end.
    session.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == claim.endpoint_id,
                                                  WebhookEndpoint.delivering_until <= claim.lease_until)
                    .values(delivering_until=None).execution_options(synchronize_session=False))
    if delivery.status != DeliveryStatus.PENDING:  # finished meanwhile (another worker after our lease ran out)
        return "superseded"
    now = clock.now()
    delivery.attempts += 1
    if outcome.succeeded:
        delivery.status, delivery.finished_at, delivery.next_attempt_at = DeliveryStatus.SUCCEEDED, now, None
        session.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == claim.endpoint_id,
                                                      WebhookEndpoint.consecutive_failures != 0)
                        .values(consecutive_failures=0).execution_options(synchronize_session=False))
        return "succeeded"
    if delivery.attempts >= MAX_ATTEMPTS:
        delivery.status, delivery.finished_at, delivery.next_attempt_at = DeliveryStatus.FAILED, now, None
        _count_failed_delivery(session, claim.endpoint_id)
        return "failed"
    delivery.next_attempt_at = now + retry_delay(delivery.attempts)
    return "retrying"


def _count_failed_delivery(session, endpoint_id: int) -> None:
    endpoint = session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
                               .with_for_update().execution_options(populate_existing=True)).one()
    endpoint.consecutive_failures += 1
    if endpoint.consecutive_failures < DISABLE_AFTER or not endpoint.is_active:
        return
    endpoint.is_active = False
    endpoint.disabled_reason = f"Disabled automatically after {DISABLE_AFTER} failed deliveries in a row"
    audit.record(None, endpoint.organization_id, "webhook.auto_disabled", "webhook", endpoint.public_id,
                 {"url": endpoint.url, "consecutive_failures": endpoint.consecutive_failures})
    host = urlsplit(endpoint.url).hostname or endpoint.url
    notices.notify(
        notices.org_user_ids(endpoint.organization_id, notices.MANAGER_ROLES),
        endpoint.organization_id, "webhook_disabled",
        f"Webhook endpoint {endpoint.public_id} ({host}) was disabled after {DISABLE_AFTER} failed deliveries "
        "in a row. Fix the receiver, then enable it on Settings → Webhooks.")


class _PinnedConnection(http.client.HTTPConnection):
    """HTTP to addresses already checked by the SSRF guard (never a new DNS lookup), with the URL's
    host name in the Host header."""

    def __init__(self, host: str, port: int, addresses: list[str], timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.addresses = addresses

    def _open_socket(self) -> socket.socket:
        error: OSError | None = None
        for address in self.addresses:
            try:
                return socket.create_connection((address, self.port), self.timeout)
            except OSError as failure:
                error = failure
        raise error or OSError("no address to connect to")

    def connect(self) -> None:
        self.sock = self._open_socket()


class _PinnedTLSConnection(_PinnedConnection):
    """HTTPS likewise; the certificate is checked against the URL's host name (SNI too)."""

    default_port = http.client.HTTPS_PORT

    def connect(self) -> None:
        self.sock = tls.client_context().wrap_socket(self._open_socket(), server_hostname=self.host)


REDACTED = "[redacted]"  # the endpoint's signing secret, should a receiver echo it in an error


def _clean_error(text: str, secret: str) -> str:
    text = text.replace(secret, REDACTED) if secret else text
    text = notices.redact_secrets(text)
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(text.split())[:ERROR_LENGTH] or "Error"


def _failure_message(error: BaseException) -> str:
    if isinstance(error, RefusedDestination):
        return str(error)
    if isinstance(error, TimeoutError | socket.timeout):
        return f"Timed out after {TIMEOUT_SECONDS:g} s"
    if isinstance(error, ConnectionRefusedError):
        return "Connection refused"
    if isinstance(error, ssl.SSLError | ssl.CertificateError):
        return f"TLS error: {error}"
    if isinstance(error, http.client.HTTPException):
        return f"Invalid HTTP response: {type(error).__name__}"
    return f"{type(error).__name__}: {error}"


def send(claim: Claim) -> Outcome:
    """One POST of the claimed delivery: checked destination, signed, 5 s timeout, no redirects."""
    attempted_at = clock.now()
    started = time.monotonic()
    status: int | None = None
    error: str | None = None
    answer: str | None = None
    try:
        destination = parse_url(claim.url)
        addresses = resolve_destination(destination.host, destination.port)
        kind = _PinnedTLSConnection if destination.scheme == "https" else _PinnedConnection
        connection = kind(destination.host, destination.port, addresses, TIMEOUT_SECONDS)
        try:
            connection.request("POST", destination.target, body=claim.body, headers={
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "Keyward-Event-Id": claim.event_id,
                SIGNATURE_HEADER: signature(claim.secret, int(attempted_at.timestamp()), claim.body),
            })
            response = connection.getresponse()
            status = response.status
            answer = response.read(RESPONSE_LOG_BYTES).decode("utf-8", "replace")
            excerpt = answer[:RESPONSE_EXCERPT_BYTES]
        finally:
            connection.close()
        if 300 <= status < 400:
            error = f"HTTP {status}: redirects are not followed"
        elif not 200 <= status < 300:
            error = f"HTTP {status}" + (f": {excerpt}" if excerpt.strip() else "")
    except InvalidRequest as invalid:  # a stored URL that no longer parses (cannot happen through the UI)
        error = invalid.message
    except Exception as failure:
        error = _failure_message(failure)
    latency_ms = int((time.monotonic() - started) * 1000)
    return Outcome(attempted_at, status, latency_ms, _clean_error(error, claim.secret) if error else None,
                   _clean_answer(answer, claim.secret))


def _clean_answer(text: str | None, secret: str) -> str | None:
    """What the receiver answered, for the log: printable, and never a secret it echoed back."""
    if text is None:
        return None
    text = text.replace(secret, REDACTED) if secret else text
    return "".join(ch if ch.isprintable() or ch in "\n\t" else " " for ch in notices.redact_secrets(text))
