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
- Strict-Transport-Security in production only (KEYWARD_ENV=production serves behind HTTPS);
  a development server on http://127.0.0.1 must not pin HTTPS for localhost.

Client addresses behind proxies are not handled here: shared/netaddr.py believes
X-Forwarded-For only for KEYWARD_TRUSTED_PROXIES hops.
"""

from __future__ import annotations

from flask import Flask, Response, request

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
PRODUCTION_HEADERS = {**HEADERS, "Strict-Transport-Security": "max-age=31536000"}
NO_STORE = "no-store"


def init_security(app: Flask) -> None:
    headers = PRODUCTION_HEADERS if app.config.get("KEYWARD_ENV") == "production" else HEADERS
    static_prefix = (app.static_url_path or "/static") + "/"

    @app.after_request
    def security_headers(response: Response) -> Response:
        for name, value in headers.items():
            if name not in response.headers:
                response.headers.add(name, value)  # absent: added, not searched for again and replaced
        if "Cache-Control" not in response.headers and not request.path.startswith(static_prefix):
            response.headers["Cache-Control"] = NO_STORE
        return response
