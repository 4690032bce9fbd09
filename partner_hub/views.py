"""The partner hub: partner users manage their own personal tokens (thin views).

The API Tokens pages are the portal's, written once in shared/token_pages.py and rendered from
the shared partials in shared/templates/tokens/; this module only mounts them under
/hub/api-tokens with the hub's layout and a guard that admits partner users alone. What a
partner user may see and do (their own tokens, personal type, their partner's documents) is
decided in shared/ from their role and partner, never here.
"""

from __future__ import annotations

from flask import redirect, url_for

from partner_hub import bp
from shared.identity.roles import Capability
from shared.identity.signin import member_page
from shared.notifications.pages import register_notification_pages
from shared.tokens.incident_pages import register_security_pages
from shared.tokens.pages import register_token_pages

LAYOUT = "hub/layout.html"
partner_page = member_page(Capability.MANAGE_OWN_TOKENS, partner=True)

register_token_pages(bp, "/api-tokens", layout=LAYOUT, guard=partner_page)
register_security_pages(bp, "/api-tokens", layout=LAYOUT, guard=partner_page)  # Narrow (own tokens)
register_notification_pages(bp, "/notifications", layout=LAYOUT, guard=member_page(None, partner=True))


@bp.get("/")
@partner_page
def home():
    return redirect(url_for("partner_hub.tokens"))
