from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from api import data, errors, openapi, publishers, security_tools, views, webhooks  # noqa: F401  (routes register on import)
