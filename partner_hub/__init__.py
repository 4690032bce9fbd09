from flask import Blueprint

bp = Blueprint("partner_hub", __name__, url_prefix="/hub", template_folder="templates")

from partner_hub import views  # noqa: E402,F401  (routes register on import)
