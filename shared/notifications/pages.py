"""The Notifications page, written once for both UIs (SPEC 11): the portal and the partner hub.

    register_notification_pages(bp, "/settings/notifications", layout="portal/layout.html", guard=...)

gives the endpoints `<bp>.notifications` (the list, newest first), `<bp>.notification_read` and
`<bp>.notifications_read_all` (POST). A notification belongs to one user in one organization: every
view works on the signed-in user's notifications in the organization being worked in, so another
user's id is simply not found (404).

One route, two renderings, as on the token pages: an htmx request gets the fragment it swaps plus
the navigation's unread count (out of band); a plain form POST redirects back to the page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import Blueprint, flash, redirect, render_template, url_for

from shared.core.page_routes import mount_routes
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


@dataclass(frozen=True)
class NotificationUrls:
    blueprint: str

    def index(self) -> str:
        return url_for(f"{self.blueprint}.notifications")

    def read(self, notification: Notification) -> str:
        return url_for(f"{self.blueprint}.notification_read", notification_id=notification.id)

    def read_all(self) -> str:
        return url_for(f"{self.blueprint}.notifications_read_all")


@dataclass(frozen=True)
class NotificationPages:
    blueprint: str
    layout: str

    @property
    def urls(self) -> NotificationUrls:
        return NotificationUrls(self.blueprint)

    def _render(self, template: str, **context) -> str:
        membership = current_membership()
        return render_template(
            template, layout=self.layout, urls=self.urls, kind_labels=KIND_LABELS,
            unread=notices.unread_count(membership.user_id, membership.organization_id), **context)

    def _items(self) -> list[Notification]:
        membership = current_membership()
        return notices.list_for(membership.user_id, membership.organization_id)

    def index(self):
        return self._render("notifications/index.html", items=self._items())

    def read(self, notification_id: int):
        membership = current_membership()
        notification = notices.mark_one_read(membership.user_id, membership.organization_id,
                                                   notification_id)
        if wants_fragment():
            return self._render("notifications/_swap.html", fragment="notifications/_item.html", item=notification)
        flash("Marked as read.")
        return redirect(self.urls.index())

    def read_all(self):
        membership = current_membership()
        count = notices.mark_read(membership.user_id, membership.organization_id)
        if wants_fragment():
            return self._render("notifications/_swap.html", fragment="notifications/_list.html", items=self._items())
        flash(f"Marked {count} notification{'' if count == 1 else 's'} as read." if count
              else "Nothing left to mark as read.")
        return redirect(self.urls.index())


# (rule under the prefix, endpoint, method, NotificationPages method)
ROUTES = (
    ("", "notifications", "GET", "index"),
    ("/<int:notification_id>/read", "notification_read", "POST", "read"),
    ("/read", "notifications_read_all", "POST", "read_all"),
)


def register_notification_pages(bp: Blueprint, url_prefix: str, *, layout: str,
                                guard: Callable[[Callable], Callable]) -> NotificationPages:
    """Mount the Notifications page on `bp` under `url_prefix`; `guard` decorates every view."""
    pages = NotificationPages(blueprint=bp.name, layout=layout)
    mount_routes(bp, url_prefix, ROUTES, pages, guard)
    return pages
