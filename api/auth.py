"""Token authentication for /api/v1: every authentication check, in order, then the endpoint's scope."""

from __future__ import annotations

from functools import wraps

from flask import g, request
from sqlalchemy.orm import joinedload

from shared.audit.record import Actor
from shared.core import current, ratelimits
from shared.core.errors import AuthError, ServiceError
from shared.core.extensions import db
from shared.core.netaddr import client_address
from shared.models import ApiToken, Membership
from shared.tokens import authn, rights, usage_tally
from shared.tokens.credentials import extract_credentials


def token_required(scope: str | None = None):
    """Authenticate the request's token; `scope` (if any) is then required with the method's permission."""

    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            address = client_address()
            accounting = usage_tally.accounting()
            served = current.request()
            method, headers = served.method, served.headers
            # An address that failed too often is refused before anything else. With Redis the
            # count's own round trip reads its failures (one round trip per request, not two), so
            # an answer given before the count reads them first (below).
            counting_checks_failures = accounting.refuses_failing
            if not counting_checks_failures:
                ratelimits.refuse_if_failing("auth", address)
            credentials = extract_credentials(headers.get("Authorization"), headers.get("X-API-Key"))
            try:
                token = authn.authenticate(credentials, address, path=served.path,
                                           user_agent=headers.get("User-Agent"))
                decision = rights.decide(token, scope, method) if scope is not None else None
                # A refused request still counts (a refusal comes after the rate limit), but not as a use of a right.
                right = (scope, method) if decision is not None and decision.allowed else None
                # The rate limit, then the tally of an accepted request: no database write.
                state = current.g()
                state.rate_state, state.authenticated_token = accounting.count_request(
                    token, address, right, "auth")
            except ServiceError as error:
                if counting_checks_failures and not isinstance(error, ratelimits.RateLimited):
                    ratelimits.refuse_if_failing("auth", address)
                if isinstance(error, AuthError) and error.code == "invalid_api_key":
                    ratelimits.count_failure("auth", address)
                raise
            if decision is not None:
                rights.require(decision, scope, method)
            return view(*args, **kwargs)

        return wrapper

    return decorator


def authenticated_token() -> authn.AuthenticatedToken:
    """The calling token as authentication read it (enough for its summary and rights)."""
    return current.g().authenticated_token


def current_token() -> ApiToken:
    """The calling token as an ORM object with its creator, loaded once per request on first use."""
    if "api_token" not in g:
        g.api_token = db.session.get(ApiToken, g.authenticated_token.id, options=[
            joinedload(ApiToken.creator).joinedload(Membership.user),
            joinedload(ApiToken.creator).joinedload(Membership.partner),
            joinedload(ApiToken.organization),
        ])
    return g.api_token


def current_actor() -> Actor:
    """The calling token, acting as its creator's membership."""
    token = current_token()
    return Actor(membership=token.creator, token=token, ip=client_address(),
                 user_agent=request.headers.get("User-Agent"))
