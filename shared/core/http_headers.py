"""Security headers on every response (docs/operations.md, "Security model").

- Content-Security-Policy: only our own scripts, styles and images. The templates carry no
  inline script, style or event handler, and htmx runs without eval or injected styles (see the
  htmx-config meta tag in base.html), so nothing needs 'unsafe-inline'. `frame-ancestors 'none'`
  (and X-Frame-Options for older browsers) forbids framing: no clickjacking of Revoke buttons.
- Referrer-Policy same-origin, not no-referrer: Flask-WTF's CSRF check on HTTPS compares the
  Referer with our own origin, so our own requests must keep sending it; other sites get nothing
  (URLs carry no secrets anyway).
- Cache-Control no-store on everything but static files: API answers and pages are per user, and
  some show a secret once; no browser or shared cache may keep them. A view that set its own
  Cache-Control keeps it.
- JSON answers (/api/) get the set OWASP's REST Security Cheat Sheet gives for APIs: a policy that
  allows nothing (`default-src 'none'; frame-ancestors 'none'`), nosniff, X-Frame-Options, no-store
  and HSTS. Referrer-Policy and Cross-Origin-Opener-Policy only mean something to an HTML page, and
  every header costs every API request its share of the hot path (bench/README.md).
- Strict-Transport-Security in production only (KEYWARD_ENV=production serves behind HTTPS);
  a development server on http://127.0.0.1 must not pin HTTPS for localhost.

Client addresses behind proxies are not handled here: shared/netaddr.py believes
X-Forwarded-For only for KEYWARD_TRUSTED_PROXIES hops.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import chain

from flask import Flask, Response
from werkzeug.datastructures import Headers

from shared.core import current

CSP_DIRECTIVES = (
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "object-src 'none'",
)
CONTENT_SECURITY_POLICY = "; ".join(CSP_DIRECTIVES)

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
API_CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'"
API_HEADERS = {
    "Content-Security-Policy": API_CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
HSTS = {"Strict-Transport-Security": "max-age=31536000"}
NO_STORE = "no-store"
PER_REQUEST_EXTENSION = "keyward.response_headers"


def header_names(response: Response) -> set[str]:
    """The names of the headers the response carries, lower-cased. One pass: `name in
    response.headers` searches them anew each time, and raises inside Werkzeug when absent, which
    cost every API response about a tenth of its time (bench/micro.py)."""
    return {name.lower() for name, _ in response.headers}


class KeywardHeaders(Headers):
    """Werkzeug's headers (every response of ours has them, shared/app.py's KeywardResponse), which
    also take headers Keyward itself made as they are: Werkzeug checks each value it is given for a
    newline, one call after another per header, which cost an API request about 3 % of its
    instructions (bench/instructions.py) for values that cannot hold one."""

    def extend_made(self, headers: list[tuple[str, str]]) -> None:
        """Headers made by Keyward's own code (names and values it chose or computed; a request id
        taken from a proxy is checked for its characters first): no newline in any."""
        self._list.extend(headers)


def add_absent(response: Response, headers: Iterable[tuple[str, str]], present: set[str]) -> None:
    """Add each header whose name is not `present` (header_names): one a view set itself is kept.
    Each must be made by Keyward itself (see KeywardHeaders.extend_made)."""
    # Werkzeug's own extend for a response of another class (given whole to Flask by an extension).
    extend = getattr(response.headers, "extend_made", response.headers.extend)
    extend([(name, value) for name, value in headers if name.lower() not in present])


def add_per_request(app: Flask, provide: Callable[[], Iterable[tuple[str, str]]]) -> None:
    """Headers another module puts on every response, made per request (the request id, the rate
    limit's state): added in the same single pass as the security headers."""
    app.extensions.setdefault(PER_REQUEST_EXTENSION, []).append(provide)


def init_security(app: Flask, api_prefix: str) -> None:
    hsts = HSTS if app.config.get("KEYWARD_ENV") == "production" else {}
    page_headers, api_headers = list({**HEADERS, **hsts}.items()), list({**API_HEADERS, **hsts}.items())
    static_prefix = (app.static_url_path or "/static") + "/"
    per_request = app.extensions.setdefault(PER_REQUEST_EXTENSION, [])

    @app.after_request
    def response_headers(response: Response) -> Response:
        present = header_names(response)
        path = current.request().path
        fixed = api_headers if path.startswith(api_prefix) else page_headers
        add_absent(response, chain(fixed, *(provide() for provide in per_request)), present)
        if "cache-control" not in present and not path.startswith(static_prefix):
            response.headers.add("Cache-Control", NO_STORE)
        return response
