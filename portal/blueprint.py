"""The portal's blueprint object, apart from its routes so that route modules import it without a cycle."""

from flask import Blueprint

bp = Blueprint("portal", __name__, template_folder="templates")
