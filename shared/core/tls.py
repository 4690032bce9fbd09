"""TLS for Keyward's outgoing connections (webhook deliveries, SMTP): certificates always verified.

KEYWARD_CA_BUNDLE names a PEM file of certificate authorities trusted in addition to the system's,
for receivers and mail servers behind a private CA (and for tests, which trust their own CA this
way). Unset, the system's store alone decides.
"""

from __future__ import annotations

import ssl

from flask import current_app


def client_context() -> ssl.SSLContext:
    """A client context that verifies the peer's certificate and host name."""
    context = ssl.create_default_context()
    bundle = current_app.config.get("KEYWARD_CA_BUNDLE")
    if bundle:
        context.load_verify_locations(cafile=bundle)
    return context
