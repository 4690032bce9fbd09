"""Signing a webhook body: `Keyward-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "t.body")>`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets

from shared.core.dates import iso
from shared.models import Event

SECRET_PREFIX = "whsec_"


SIGNATURE_HEADER = "Keyward-Signature"


def new_signing_secret() -> str:
    return SECRET_PREFIX + secrets.token_hex(32)


def event_body(event: Event) -> bytes:
    """The event's JSON body, the same bytes on every attempt. `data` holds no secret (events.emit)."""
    return json.dumps({"id": event.public_id, "type": event.type, "created_at": iso(event.created_at),
                       "organization_id": event.organization_id, "data": event.data},
                      separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The Keyward-Signature header value: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"
