from flask import Blueprint

bp = Blueprint("portal", __name__, template_folder="templates")

from portal import publishers, views, webhooks  # noqa: F401  (routes register on import)
