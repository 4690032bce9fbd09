"""The /api/v1 blueprint object, apart from the routes so that route modules and the package
import it without going round in a circle."""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")
