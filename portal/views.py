"""Settings → API Tokens, members, organization and audit pages (thin views)."""

from flask import render_template
from flask_login import login_required

from portal import bp


@bp.get("/settings/api-tokens")
@login_required
def tokens():
    return render_template("auth/home.html", membership=None)
