"""Signed webhooks (SPEC 11): endpoints, signing, delivery with retries, the SSRF guard.

How an event reaches an endpoint:

1. A token change writes its event row in its own transaction (shared.events.emit, the outbox).
2. The worker's dispatch hands each new event to `add_deliveries`, inside the transaction that
   marks it dispatched: one `WebhookDelivery` per active endpoint of the organization subscribed to
   its type, due now. No network call happens in that transaction.
3. `deliver_due` (run by every dispatch job and by the minute sweep) claims one due delivery at a
   time (a short lease, committed), POSTs it, and records the attempt with its outcome in a second
   transaction. A worker killed in between leaves a lease that runs out, after which the delivery is
   sent again: delivery is at least once, always with the same event id.

A failed attempt (non-2xx, redirect, timeout, refused connection, a refused address) is retried
after about 1 min, 5 min, 30 min, 2 h and 8 h (±20 % jitter); after the sixth failed attempt the
delivery has failed. DISABLE_AFTER deliveries failing in a row (a success resets the count) disable
the endpoint and notify its organization's owners and admins.

Destinations are checked twice against the SSRF guard: when the endpoint is saved and on every
attempt, after resolving the host name; the connection then goes to the address that was checked,
so a DNS answer cannot change between the check and the connection.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import random
import re
import secrets
import socket
import ssl
import time
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.orm import joinedload

from shared import audit, clock, events, notifications
from shared.audit import Actor
from shared.db import write_transaction
from shared.errors import InvalidRequest, NotFound
from shared.extensions import db
from shared.models import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from shared.organizations import require
from shared.roles import Capability
from shared.timefmt import iso

NOT_ALLOWED = "Your role cannot manage webhooks"
SECRET_PREFIX = "whsec_"
PUBLIC_ID = re.compile(r"wh_[0-9a-f]{16}")
MAX_URL_LENGTH = 2000
MAX_ENDPOINTS = 20  # live endpoints per organization
USER_AGENT = "Keyward-Webhooks/1.0"
SIGNATURE_HEADER = "Keyward-Signature"
SIGNATURE_TOLERANCE_SECONDS = 300  # what receivers should accept (docs/webhooks.md)
TIMEOUT_SECONDS = 5.0  # connect, send and each read
RESPONSE_EXCERPT_BYTES = 200
ERROR_LENGTH = 300  # WebhookAttempt.error
BACKOFF = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2),
           timedelta(hours=8))
JITTER = 0.2
MAX_ATTEMPTS = 1 + len(BACKOFF)
DISABLE_AFTER = 5  # failed deliveries in a row
# A claimed delivery belongs to its worker this long; longer than one attempt can take, short enough
# that a killed worker's delivery is sent again within a minute or so.
LEASE = timedelta(seconds=4 * TIMEOUT_SECONDS)
PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"
# Cloud instance metadata services: never a destination, whatever KEYWARD_WEBHOOK_ALLOW_PRIVATE says.
METADATA_ADDRESSES = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})
NAT64 = ipaddress.ip_network("64:ff9b::/96")


# --------------------------------------------------------------------------- the SSRF guard


class RefusedDestination(Exception):
    """The URL's host is, or resolves to, an address webhooks must not reach (or does not resolve)."""


def _embedded_ipv4(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64): it is what gets reached."""
    if address.version != 6:
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_private: bool) -> str | None:
    """Why webhooks may not reach this address, or None when they may."""
    address = _embedded_ipv4(address) or address
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if allow_private:
        return None
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_private:
        return "a private address"
    if address.is_reserved or not address.is_global:
        return "a reserved address"
    return None


def allow_private() -> bool:
    return bool(current_app.config.get("KEYWARD_WEBHOOK_ALLOW_PRIVATE"))


def resolve_destination(host: str, port: int) -> list[str]:
    """The addresses to connect to for host:port, every one of them checked.

    A host with any refused address is refused as a whole: a name answering both a public and a
    private address must not reach the private one on a lucky connection.

    :raise RefusedDestination:
    """
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        candidates = [literal]
    else:
        try:
            answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError, ValueError):
            raise RefusedDestination(f"Could not resolve {host}") from None
        candidates = []
        for *_, sockaddr in answers:
            address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
            if address not in candidates:
                candidates.append(address)
    if not candidates:
        raise RefusedDestination(f"Could not resolve {host}")
    private_ok = allow_private()
    for address in candidates:
        reason = address_refusal(address, private_ok)
        if reason:
            shown = host if literal is not None else f"{host} resolves to {address}, which"
            raise RefusedDestination(f"{shown} is {reason}; webhooks only go to public addresses")
    return [str(address) for address in candidates]


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class Destination:
    url: str
    scheme: str
    host: str
    port: int
    target: str  # path and query, as sent in the request line


def parse_url(value: object) -> Destination:
    """A well-formed http(s) URL without credentials, split for sending (no DNS here).

    :raise InvalidRequest: with the reason under `url`
    """
    def refuse(message: str) -> InvalidRequest:
        return InvalidRequest(message, fields={"url": message})

    if not isinstance(value, str) or not value.strip():
        raise refuse("Enter the URL that receives the events")
    url = value.strip()
    if len(url) > MAX_URL_LENGTH:
        raise refuse(f"At most {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or unicodedata.category(ch) in {"Cc", "Cs"} for ch in url):
        raise refuse("A URL cannot contain spaces or control characters")
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        raise refuse("This is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise refuse("Use an http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise refuse("Leave credentials out of the URL; verify Keyward's signature instead")
    try:
        port = parts.port
    except ValueError:
        raise refuse("The port must be a number from 1 to 65535") from None
    host = parts.hostname
    if not host:
        raise refuse("The URL needs a host name")
    if port == 0:
        raise refuse("The port must be a number from 1 to 65535")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Destination(url, scheme, host, port or (443 if scheme == "https" else 80), target)


def check_url(value: object) -> Destination:
    """parse_url, then the SSRF guard on what the host resolves to now.

    :raise InvalidRequest:
    """
    destination = parse_url(value)
    try:
        resolve_destination(destination.host, destination.port)
    except RefusedDestination as refused:
        raise InvalidRequest(str(refused), fields={"url": str(refused)}) from None
    return destination


def clean_event_types(value: object) -> list[str]:
    """Known event types, each once, in the documented order; at least one.

    :raise InvalidRequest:
    """
    if not isinstance(value, list | tuple) or not value:
        raise InvalidRequest("Choose at least one event", fields={"event_types": "Choose at least one event"})
    unknown = [str(item)[:50] for item in value if item not in events.TYPES]
    if unknown:
        message = f"Unknown event type: {', '.join(unknown[:5])}"
        raise InvalidRequest(message, fields={"event_types": message})
    return [kind for kind in events.TYPES if kind in value]


# --------------------------------------------------------------------------- endpoints


def new_signing_secret() -> str:
    return SECRET_PREFIX + secrets.token_hex(32)


def endpoint_summary(endpoint: WebhookEndpoint) -> dict:
    """The API's webhook object. Never the signing secret."""
    return {
        "id": endpoint.public_id,
        "url": endpoint.url,
        "event_types": list(endpoint.event_types),
        "status": "active" if endpoint.is_active else "disabled",
        "is_active": endpoint.is_active,
        "disabled_reason": endpoint.disabled_reason,
        "consecutive_failures": endpoint.consecutive_failures,
        "created_at": iso(endpoint.created_at),
    }


def _live_endpoints(organization_id: int):
    return select(WebhookEndpoint).where(WebhookEndpoint.organization_id == organization_id,
                                         WebhookEndpoint.deleted_at.is_(None))


def list_endpoints(actor: Actor) -> list[WebhookEndpoint]:
    """The organization's endpoints, newest first."""
    require(actor, Capability.MANAGE_WEBHOOKS, NOT_ALLOWED)
    return list(db.session.scalars(_live_endpoints(actor.organization_id).order_by(WebhookEndpoint.id.desc())))


def get_endpoint_for(actor: Actor, public_id: str) -> WebhookEndpoint:
    """One of the actor's organization's endpoints.

    :raise PermissionDenied: unless the actor may manage webhooks
    :raise NotFound: for unknown, deleted and other organizations' ids alike
    """
    require(actor, Capability.MANAGE_WEBHOOKS, NOT_ALLOWED)
    if not isinstance(public_id, str) or not PUBLIC_ID.fullmatch(public_id):
        raise NotFound("No such webhook endpoint")
    endpoint = db.session.scalars(_live_endpoints(actor.organization_id)
                                  .where(WebhookEndpoint.public_id == public_id)).first()
    if endpoint is None:
        raise NotFound("No such webhook endpoint")
    return endpoint


def create_endpoint(actor: Actor, url: object, event_types: object) -> tuple[WebhookEndpoint, str]:
    """A new endpoint; returns it with its signing secret, which is shown this once."""
    require(actor, Capability.MANAGE_WEBHOOKS, NOT_ALLOWED)
    fields: dict[str, str] = {}
    try:
        destination = check_url(url)
    except InvalidRequest as error:
        fields.update(error.fields)
    try:
        kinds = clean_event_types(event_types)
    except InvalidRequest as error:
        fields.update(error.fields)
    if fields:
        raise InvalidRequest(next(iter(fields.values())), fields=fields)
    secret = new_signing_secret()
    with write_transaction() as session:
        live = session.scalar(select(func.count(WebhookEndpoint.id)).where(
            WebhookEndpoint.organization_id == actor.organization_id, WebhookEndpoint.deleted_at.is_(None)))
        if live >= MAX_ENDPOINTS:
            raise InvalidRequest(f"An organization has at most {MAX_ENDPOINTS} webhook endpoints; delete one first")
        endpoint = WebhookEndpoint(
            public_id="wh_" + secrets.token_hex(8), organization_id=actor.organization_id, url=destination.url,
            event_types=kinds, signing_secret=secret, is_active=True, consecutive_failures=0,
            created_by_user_id=actor.user_id, created_at=clock.now())
        session.add(endpoint)
        session.flush()
        audit.record(actor, actor.organization_id, "webhook.created", "webhook", endpoint.public_id,
                     {"url": endpoint.url, "event_types": kinds})
    return endpoint, secret


def set_endpoint_active(actor: Actor, endpoint: WebhookEndpoint, active: bool) -> WebhookEndpoint:
    """Disable (nothing is sent; pending deliveries wait) or enable again (the failure count restarts
    and waiting deliveries go out)."""
    require(actor, Capability.MANAGE_WEBHOOKS, NOT_ALLOWED)
    with write_transaction() as session:
        endpoint.is_active = active
        endpoint.disabled_reason = None if active else f"Disabled by {actor.membership.user.email}"
        if active:
            endpoint.consecutive_failures = 0
            events.mark_outbox()  # send whatever waited for it
        session.add(endpoint)
        audit.record(actor, endpoint.organization_id, "webhook.enabled" if active else "webhook.disabled",
                     "webhook", endpoint.public_id, {"url": endpoint.url})
    return endpoint


def delete_endpoint(actor: Actor, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """Stop sending for good; the row and its log stay for audit, out of every list."""
    require(actor, Capability.MANAGE_WEBHOOKS, NOT_ALLOWED)
    with write_transaction() as session:
        endpoint.deleted_at = clock.now()
        endpoint.is_active = False
        session.add(endpoint)
        audit.record(actor, endpoint.organization_id, "webhook.deleted", "webhook", endpoint.public_id,
                     {"url": endpoint.url})
    return endpoint


# --------------------------------------------------------------------------- the delivery log


@dataclass(frozen=True)
class LogEntry:
    delivery: WebhookDelivery
    attempts: list[WebhookAttempt]  # newest first


def delivery_log(actor: Actor, endpoint: WebhookEndpoint, limit: int = 50) -> list[LogEntry]:
    """The endpoint's latest deliveries, newest first, each with every attempt."""
    require(actor, Capability.MANAGE_WEBHOOKS, NOT_ALLOWED)
    deliveries = list(db.session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
        .options(joinedload(WebhookDelivery.event)).order_by(WebhookDelivery.id.desc()).limit(limit)))
    attempts: dict[int, list[WebhookAttempt]] = {delivery.id: [] for delivery in deliveries}
    if deliveries:
        for attempt in db.session.scalars(select(WebhookAttempt).where(
                WebhookAttempt.delivery_id.in_(list(attempts))).order_by(WebhookAttempt.id.desc())):
            attempts[attempt.delivery_id].append(attempt)
    return [LogEntry(delivery, attempts[delivery.id]) for delivery in deliveries]


def resend(actor: Actor, endpoint: WebhookEndpoint, delivery_id: int) -> WebhookDelivery:
    """Send a delivery again now, with a fresh retry schedule (same event id; every earlier attempt
    stays in the log).

    :raise NotFound: for a delivery of another endpoint
    :raise InvalidRequest: while the endpoint is disabled
    """
    require(actor, Capability.MANAGE_WEBHOOKS, NOT_ALLOWED)
    delivery = db.session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.endpoint_id != endpoint.id:
        raise NotFound("No such delivery")
    if not endpoint.is_active:
        raise InvalidRequest("Enable the endpoint before resending")
    with write_transaction() as session:
        delivery.status, delivery.attempts, delivery.finished_at = PENDING, 0, None
        delivery.next_attempt_at = clock.now()
        session.add(delivery)
        audit.record(actor, endpoint.organization_id, "webhook.resent", "webhook", endpoint.public_id,
                     {"event_id": delivery.event.public_id})
        events.mark_outbox()  # the queue sends it right after this commit
    return delivery


# --------------------------------------------------------------------------- signing


def event_body(event: Event) -> bytes:
    """The JSON body of SPEC 11, the same bytes on every attempt. `data` holds no secret (events.emit)."""
    return json.dumps({"id": event.public_id, "type": event.type, "created_at": iso(event.created_at),
                       "organization_id": event.organization_id, "data": event.data},
                      separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The Keyward-Signature header value: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


# --------------------------------------------------------------------------- deliveries


def add_deliveries(event: Event) -> list[WebhookDelivery]:
    """One pending delivery, due now, per active endpoint of the event's organization that wants
    its type and existed when the event happened; added to the current (dispatching) transaction."""
    now = clock.now()
    endpoints = db.session.scalars(_live_endpoints(event.organization_id).where(
        WebhookEndpoint.is_active.is_(True), WebhookEndpoint.created_at <= event.created_at)
        .order_by(WebhookEndpoint.id))
    deliveries = [WebhookDelivery(endpoint_id=endpoint.id, event_id=event.id, status=PENDING, attempts=0,
                                  next_attempt_at=now, created_at=now)
                  for endpoint in endpoints if event.type in endpoint.event_types]
    db.session.add_all(deliveries)
    return deliveries


@dataclass(frozen=True)
class Claim:
    """A delivery taken for one attempt: everything needed to send it, outside any transaction."""

    delivery_id: int
    endpoint_id: int
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

    @property
    def succeeded(self) -> bool:
        return self.error is None


def _due_query(now: datetime):
    return (select(WebhookDelivery).join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .where(WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= now,
                   WebhookEndpoint.is_active.is_(True), WebhookEndpoint.deleted_at.is_(None)))


def claim_next() -> Claim | None:
    """Take the oldest due delivery for one attempt (a lease, committed), or None.

    Rows are locked with SKIP LOCKED on PostgreSQL and under the write lock on SQLite, so two
    workers never take the same delivery while its lease runs.
    """
    with write_transaction() as session:
        now = clock.now()
        delivery = session.scalars(_due_query(now).order_by(WebhookDelivery.id).limit(1)
                                   .with_for_update(skip_locked=True, of=WebhookDelivery)).first()
        if delivery is None:
            return None
        delivery.next_attempt_at = now + LEASE
        endpoint, event = delivery.endpoint, delivery.event
        return Claim(delivery.id, endpoint.id, endpoint.url, endpoint.signing_secret, event.public_id,
                     event_body(event))


def deliver_due(limit: int = 1000) -> int:
    """Attempt every due delivery (up to `limit`), one at a time; how many attempts were made."""
    made = 0
    while made < limit and (claim := claim_next()) is not None:
        record_outcome(claim, send(claim))
        made += 1
    return made


def retry_delay(failed_attempts: int) -> timedelta:
    """After the n-th failed attempt: BACKOFF[n-1], ±JITTER so a receiver's outage does not come
    back as one burst."""
    return BACKOFF[failed_attempts - 1] * random.uniform(1 - JITTER, 1 + JITTER)


def record_outcome(claim: Claim, outcome: Outcome) -> None:
    """Keep the attempt and move the delivery on: succeeded, retried later, or failed for good."""
    with write_transaction() as session:
        delivery = session.scalars(select(WebhookDelivery).where(WebhookDelivery.id == claim.delivery_id)
                                   .with_for_update().execution_options(populate_existing=True)).one()
        session.add(WebhookAttempt(delivery_id=delivery.id, attempted_at=outcome.attempted_at,
                                   status_code=outcome.status_code, latency_ms=outcome.latency_ms,
                                   error=outcome.error))
        if delivery.status != PENDING:  # finished meanwhile (another worker after our lease ran out)
            return
        now = clock.now()
        delivery.attempts += 1
        if outcome.succeeded:
            delivery.status, delivery.finished_at, delivery.next_attempt_at = SUCCEEDED, now, None
            session.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == claim.endpoint_id,
                                                          WebhookEndpoint.consecutive_failures != 0)
                            .values(consecutive_failures=0).execution_options(synchronize_session=False))
        elif delivery.attempts >= MAX_ATTEMPTS:
            delivery.status, delivery.finished_at, delivery.next_attempt_at = FAILED, now, None
            _count_failed_delivery(session, claim.endpoint_id)
        else:
            delivery.next_attempt_at = now + retry_delay(delivery.attempts)


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
    notifications.notify(
        notifications.org_user_ids(endpoint.organization_id, notifications.MANAGER_ROLES),
        endpoint.organization_id, "webhook_disabled",
        f"Webhook endpoint {endpoint.public_id} ({host}) was disabled after {DISABLE_AFTER} failed deliveries "
        "in a row. Fix the receiver, then enable it on Settings → Webhooks.")


# --------------------------------------------------------------------------- sending


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
        context = ssl.create_default_context()
        self.sock = context.wrap_socket(self._open_socket(), server_hostname=self.host)


def _clean_error(text: str, secret: str) -> str:
    text = text.replace(secret, notifications.REDACTED) if secret else text
    text = notifications.redact_secrets(text)
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
            excerpt = response.read(RESPONSE_EXCERPT_BYTES).decode("utf-8", "replace")
        finally:
            connection.close()
        if 300 <= status < 400:
            error = f"HTTP {status}: redirects are not followed"
        elif not 200 <= status < 300:
            error = f"HTTP {status}" + (f": {excerpt}" if excerpt.strip() else "")
    except InvalidRequest as invalid:  # a stored URL that no longer parses (cannot happen through the UI)
        error = invalid.message
    except Exception as failure:  # noqa: BLE001 - every failure is an attempt's outcome, never a crash
        error = _failure_message(failure)
    latency_ms = int((time.monotonic() - started) * 1000)
    return Outcome(attempted_at, status, latency_ms, _clean_error(error, claim.secret) if error else None)

