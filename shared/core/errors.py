"""Service errors: one vocabulary for the UI and the API (the API's error codes)."""

from __future__ import annotations


class ServiceError(Exception):
    status = 400
    code = "invalid_request"

    def __init__(self, message: str, fields: dict[str, str] | None = None, **extra):
        super().__init__(message)
        self.message = message
        self.fields = fields or {}
        self.extra = extra


class InvalidRequest(ServiceError):
    status, code = 400, "invalid_request"


class NotFound(ServiceError):
    status, code = 404, "not_found"

    def __init__(self, message: str = "Not found"):
        super().__init__(message)


class PermissionDenied(ServiceError):
    status, code = 403, "insufficient_permission"


class InsufficientScope(ServiceError):
    status, code = 403, "insufficient_scope"


class PlanRequired(ServiceError):
    status, code = 403, "plan_required"


class TokenLimitReached(ServiceError):
    status, code = 409, "token_limit_reached"


class TokenRevoked(ServiceError):
    """Acting on a revoked token: revocation is final."""

    status, code = 409, "token_revoked"


class TrustedPublisherToken(ServiceError):
    """Regenerating or editing a token minted by a trusted publisher: it lives minutes and is
    replaced by exchanging a new CI identity token, never reshaped."""

    status, code = 409, "trusted_publisher_token"


class AuthError(ServiceError):
    """A request's token was refused."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
