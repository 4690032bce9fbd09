"""The partner hub's blueprint object, apart from its routes so that route modules import it without a cycle."""

from flask import Blueprint

bp = Blueprint("partner_hub", __name__, url_prefix="/hub", template_folder="templates")
