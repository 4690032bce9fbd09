"""The partner hub: partner users manage their own personal tokens (thin views).

The API Tokens pages are the portal's, written once as blueprints in shared/ and rendered from
the shared partials in shared/templates/tokens/; this module only registers them under the hub
(`partner_hub.tokens.index` at /hub/api-tokens), whose guard admits partner users alone and sets
the hub's layout. What a
partner user may see and do (their own tokens, personal type, their partner's documents) is
decided in shared/ from their role and partner, never here.
"""

from __future__ import annotations

from flask import g, redirect, url_for

from partner_hub.blueprint import bp
from shared.identity.roles import Capability
from shared.identity.signin import member_page, refuse_page
from shared.notifications import pages as notification_pages
from shared.tokens import incident_pages
from shared.tokens import pages as token_pages

LAYOUT = "hub/layout.html"
partner_page = member_page(Capability.MANAGE_OWN_TOKENS, partner=True)


@bp.before_request
def partners_only():
    """Every hub page: a signed-in partner user (each page asks for its capability)."""
    g.layout = LAYOUT
    return refuse_page(None, partner=True)


bp.register_blueprint(token_pages.bp, url_prefix="/api-tokens")
bp.register_blueprint(incident_pages.bp, url_prefix="/api-tokens")  # Narrow (own tokens)
bp.register_blueprint(notification_pages.bp, url_prefix="/notifications")


@bp.get("/")
@partner_page
def home():
    return redirect(url_for(".tokens.index"))
