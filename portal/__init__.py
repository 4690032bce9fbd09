"""The staff portal: Settings pages for organization members."""

from portal import publishers, views, webhooks  # noqa: F401  (routes register on import)
from portal.blueprint import bp

__all__ = ["bp"]
