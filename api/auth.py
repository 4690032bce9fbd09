"""Token authentication for /api/v1: every check of SPEC 5, in order, then the endpoint's scope."""

from __future__ import annotations

from functools import wraps

from flask import g, request

from shared import ratelimits, tokens
from shared.audit import Actor
from shared.errors import AuthError
from shared.netaddr import client_address


def token_required(scope: str | None = None):
    """Authenticate the request's token; `scope` (if any) is then required with the method's permission."""

    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            address = client_address()
            ratelimits.refuse_if_failing("auth", address)
            credentials = tokens.extract_credentials(request.headers.get("Authorization"),
                                                     request.headers.get("X-API-Key"))
            try:
                token = tokens.authenticate(credentials, address)
            except AuthError as error:
                if error.code == "invalid_api_key":
                    ratelimits.count_failure("auth", address)
                raise
            g.rate_state = ratelimits.hit_token(token.id, token.organization.plan)
            tokens.record_use(token, address)
            g.api_token = token
            if scope is not None:
                tokens.require(token, scope, request.method)
            return view(*args, **kwargs)

        return wrapper

    return decorator


def current_actor() -> Actor:
    """The calling token, acting as its creator's membership."""
    token = g.api_token
    return Actor(membership=token.creator, token=token, ip=client_address(),
                 user_agent=request.headers.get("User-Agent"))
