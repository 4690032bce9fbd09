"""The partner hub: the token pages for people of a partner company."""

from partner_hub import views  # noqa: F401  (routes register on import)
from partner_hub.blueprint import bp

__all__ = ["bp"]
