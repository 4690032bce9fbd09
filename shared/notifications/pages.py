"""The Notifications page, written once for both UIs: the portal and the partner hub.

ONE blueprint, `notifications`, that each UI registers under its own (Flask nested blueprints):
`portal.notifications.index` (the list, newest first), `.read` and `.read_all` (POST), and the same
under `partner_hub`. The UI's guard admits any member of its audience and sets the layout.

A notification belongs to one user in one organization: every view works on the signed-in user's
notifications in the organization being worked in, so another user's id is simply not found (404).

One route, two renderings, as on the token pages: an htmx request gets the fragment it swaps plus
the navigation's unread count (out of band); a plain form POST redirects back to the page.
"""

from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, url_for

from shared.identity.signin import current_membership
from shared.models import Notification
from shared.notifications import notices
from shared.tokens.pages import wants_fragment

# A short label per kind, shown as a badge beside the message.
KIND_LABELS = {
    "expiring_7d": "Expires soon",
    "expiring_1d": "Expires tomorrow",
    "expired": "Expired",
    "exposed": "Leaked",
    "anomaly": "New network",
    "webhook_disabled": "Webhook",
    "canary_used": "Canary",
    "transferred": "Transferred",
    "bulk_revoked": "Revoked",
    "deactivated_unused": "Unused",
}


bp = Blueprint("notifications", __name__)


def _render(template: str, **context) -> str:
    membership = current_membership()
    return render_template(
        template, layout=g.layout, kind_labels=KIND_LABELS,
        unread=notices.unread_count(membership.user_id, membership.organization_id), **context)


def _items() -> list[Notification]:
    membership = current_membership()
    return notices.list_for(membership.user_id, membership.organization_id)


@bp.get("")
def index():
    return _render("notifications/index.html", items=_items())


@bp.post("/<int:notification_id>/read")
def read(notification_id: int):
    membership = current_membership()
    notification = notices.mark_one_read(membership.user_id, membership.organization_id, notification_id)
    if wants_fragment():
        return _render("notifications/_swap.html", fragment="notifications/_item.html", item=notification)
    flash("Marked as read.")
    return redirect(url_for(".index"))


@bp.post("/read")
def read_all():
    membership = current_membership()
    count = notices.mark_read(membership.user_id, membership.organization_id)
    if wants_fragment():
        return _render("notifications/_swap.html", fragment="notifications/_list.html", items=_items())
    flash(f"Marked {count} notification{'' if count == 1 else 's'} as read." if count
          else "Nothing left to mark as read.")
    return redirect(url_for(".index"))
