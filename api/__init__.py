"""/api/v1: the JSON API integrations call with their tokens."""

from api import data, errors, openapi, publishers, security_tools, views, webhooks  # noqa: F401  (routes register on import)
from api.blueprint import bp

__all__ = ["bp"]
