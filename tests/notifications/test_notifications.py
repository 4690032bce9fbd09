"""Notifications: who is told, the Notifications page in the portal and the hub, the
unread count in the navigation, mark one or all as read; never a secret in a notification."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from tests.conftest import csrf_from, login

PORTAL = "/settings/notifications"
HUB = "/hub/notifications"
HTMX = {"HX-Request": "true"}


# --------------------------------------------------------------------------- helpers


def notify(make, member, kind: str = "expired", message: str = "Token “x” has expired", org=None) -> int:
    """One notification for `member` (in `org`, default the member's), committed; its id."""
    from sqlalchemy import func, select

    from shared.core.extensions import db
    from shared.models import Notification
    from shared.notifications import notices

    def apply():
        notices.notify([member.user_id], (org or member.org).id, kind, message)
        db.session.commit()
        return db.session.scalar(select(func.max(Notification.id)).where(Notification.user_id == member.user_id))

    return make.run(apply)


def recipients(make, public_id: str, **options) -> set[int]:
    from shared.core.extensions import db
    from shared.models import ApiToken
    from shared.notifications import notices

    return make.run(lambda: notices.token_recipients(
        db.session.scalars(select(ApiToken).where(ApiToken.public_id == public_id)).one(), **options))


def notifications_of(make, member) -> list:
    from shared.core.extensions import db
    from shared.models import Notification

    return make.run(lambda: list(db.session.scalars(
        select(Notification).where(Notification.user_id == member.user_id).order_by(Notification.id))))


def unread_badge(html: str) -> int:
    """The unread count shown in the navigation (0 when there is no badge)."""
    match = re.search(r'data-unread-count="(\d+)"', html)
    return int(match.group(1)) if match else 0


@pytest.fixture
def staff(make):
    org = make.org()
    return {
        "org": org,
        "owner": make.member(org, "owner"),
        "admin": make.api_member(org, "admin"),
        "security": make.api_member(org, "security_manager"),
        "editor": make.member(org, "editor"),
    }


# --------------------------------------------------------------------------- who is told


def test_personal_token_notices_go_to_the_creator_only(make, staff):
    token = make.token(staff["editor"])
    assert recipients(make, token.id) == {staff["editor"].user_id}


def test_organization_token_notices_go_to_the_creator_owners_and_admins(make, staff):
    token = make.token(staff["admin"], type="organization")
    assert recipients(make, token.id) == {staff["admin"].user_id, staff["owner"].user_id}
    second_admin = make.api_member(staff["org"], "admin")
    assert recipients(make, token.id) == {staff["admin"].user_id, staff["owner"].user_id, second_admin.user_id}


def test_project_token_notices_go_to_the_creator_owners_and_admins(make, staff):
    project = make.project(staff["org"])
    token = make.token(staff["owner"], type="project", project_id=project)
    assert recipients(make, token.id) == {staff["owner"].user_id, staff["admin"].user_id}


def test_serious_notices_about_personal_tokens_also_reach_owners_and_admins(make, staff):
    token = make.token(staff["editor"])
    assert recipients(make, token.id, always_managers=True) == {
        staff["editor"].user_id, staff["owner"].user_id, staff["admin"].user_id}


def test_removed_managers_are_not_told(make, staff):
    from shared.identity import accounts
    from shared.orgs import organizations

    token = make.token(staff["admin"], type="organization")
    make.run(lambda: accounts.remove_member(accounts.get_membership(
        organizations.get_organization(staff["org"].slug), staff["owner"].email)))
    assert recipients(make, token.id) == {staff["admin"].user_id}


def test_notify_about_token_writes_one_row_per_recipient_with_the_kind_and_token(make, staff):
    from shared.core.extensions import db
    from shared.models import ApiToken
    from shared.notifications import notices

    token = make.token(staff["admin"], type="organization", name="Deploy bot")

    def apply():
        row = db.session.scalars(select(ApiToken).where(ApiToken.public_id == token.id)).one()
        notices.notify_about_token("expiring_1d", row)
        db.session.commit()
        return row.id

    token_row_id = make.run(apply)
    for member in (staff["admin"], staff["owner"]):
        [row] = notifications_of(make, member)
        assert (row.kind, row.token_id, row.message) == ("expiring_1d", token_row_id, "Token “Deploy bot” expires tomorrow")
    assert notifications_of(make, staff["editor"]) == []


def test_every_kind_of_spec_11_is_known(make):
    from shared.notifications.notices import KINDS

    assert {"expiring_7d", "expiring_1d", "expired", "exposed", "anomaly", "webhook_disabled"} <= set(KINDS)


def test_an_unknown_kind_is_refused(make, staff):
    with pytest.raises(ValueError):
        notify(make, staff["editor"], kind="gossip")


def test_a_notification_never_holds_a_secret(make, staff):
    """A detail copied from outside (a leak report's URL) may carry the token value: it is masked."""
    from shared.core.extensions import db
    from shared.models import ApiToken
    from shared.notifications import notices

    token = make.token(staff["editor"])
    url = f"https://paste.example/raw/abc?config=API_KEY%3D{token.secret}&upper={token.secret.upper()}"

    def apply():
        row = db.session.scalars(select(ApiToken).where(ApiToken.public_id == token.id)).one()
        notices.notify_about_token("exposed", row, always_managers=True, detail=url)
        db.session.commit()

    make.run(apply)
    for member in (staff["editor"], staff["owner"], staff["admin"]):
        [row] = notifications_of(make, member)
        body = token.secret.removeprefix("kw_")
        assert body not in row.message and body.upper() not in row.message
        # Masked as tokens are shown: the prefix, •••• and the last 4 characters.
        assert f"https://paste.example/raw/abc?config=API_KEY%3Dkw_••••{token.secret[-4:]}" in row.message
    # A commit hash in a URL (40 hex) is left alone: only a token value's 64 are redacted.
    sha = "0123456789abcdef" * 2 + "01234567"
    assert notices.redact_secrets(f"https://git.example/commit/{sha}") == f"https://git.example/commit/{sha}"


# --------------------------------------------------------------------------- the page


def test_page_lists_the_users_notifications_newest_first_unread_highlighted(make, client, staff):
    editor = staff["editor"]
    first = notify(make, editor, message="First notice")
    second = notify(make, editor, message="Second notice")
    notify(make, staff["owner"], message="The owner's notice")
    login(client, editor)
    page = client.get(PORTAL).get_data(as_text=True)
    assert page.index("Second notice") < page.index("First notice")
    assert "The owner's notice" not in page
    assert f'id="notification-{second}"' in page and f'id="notification-{first}"' in page
    assert len(re.findall(r'class="notification is-unread"', page)) == 2
    assert page.count(">Mark as read</button>") == 2
    assert ">Mark all as read</button>" in page


def test_navigation_shows_the_unread_count_on_every_page(make, client, staff):
    editor = staff["editor"]
    login(client, editor)
    tokens_page = client.get("/settings/api-tokens").get_data(as_text=True)
    assert 'id="nav-notifications"' in tokens_page and unread_badge(tokens_page) == 0
    notify(make, editor)
    notify(make, editor)
    tokens_page = client.get("/settings/api-tokens").get_data(as_text=True)
    assert unread_badge(tokens_page) == 2
    assert f'href="{PORTAL}"' in tokens_page
    assert "2<span class=\"visually-hidden\"> unread</span>" in tokens_page


def test_mark_one_as_read_without_javascript(make, client, staff):
    editor = staff["editor"]
    first = notify(make, editor, message="First notice")
    notify(make, editor, message="Second notice")
    login(client, editor)
    page = client.get(PORTAL).get_data(as_text=True)
    response = client.post(f"{PORTAL}/{first}/read", data={"csrf_token": csrf_from(page)})
    assert response.status_code == 302 and response.headers["Location"] == PORTAL
    page = client.get(PORTAL).get_data(as_text=True)
    assert "Marked as read." in page
    assert unread_badge(page) == 1
    assert f'<li class="notification" id="notification-{first}">' in page
    read = {row.id: row.read_at for row in notifications_of(make, editor)}
    assert read[first] is not None and sum(1 for v in read.values() if v is None) == 1


def test_mark_one_as_read_with_htmx_swaps_the_item_and_the_count(make, client, staff):
    editor = staff["editor"]
    first = notify(make, editor)
    notify(make, editor)
    login(client, editor)
    token = csrf_from(client.get(PORTAL).get_data(as_text=True))
    response = client.post(f"{PORTAL}/{first}/read", headers={**HTMX, "X-CSRFToken": token})
    fragment = response.get_data(as_text=True)
    assert response.status_code == 200
    assert fragment.lstrip().startswith(f'<li class="notification" id="notification-{first}">')
    assert "Mark as read" not in fragment.split("</li>")[0]
    assert 'id="nav-notifications"' in fragment and 'hx-swap-oob="true"' in fragment
    assert unread_badge(fragment) == 1
    assert "<html" not in fragment


def test_mark_all_as_read(make, client, staff):
    editor = staff["editor"]
    for _ in range(3):
        notify(make, editor)
    other = notify(make, staff["owner"])
    login(client, editor)
    page = client.get(PORTAL).get_data(as_text=True)
    response = client.post(f"{PORTAL}/read", data={"csrf_token": csrf_from(page)}, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "Marked 3 notifications as read." in page
    assert unread_badge(page) == 0 and "is-unread" not in page and "Mark all as read" not in page
    assert all(row.read_at is not None for row in notifications_of(make, editor))
    assert [row.read_at for row in notifications_of(make, staff["owner"]) if row.id == other] == [None]


def test_mark_all_as_read_with_htmx_returns_the_list_and_the_count(make, client, staff):
    editor = staff["editor"]
    notify(make, editor)
    login(client, editor)
    token = csrf_from(client.get(PORTAL).get_data(as_text=True))
    fragment = client.post(f"{PORTAL}/read", headers={**HTMX, "X-CSRFToken": token}).get_data(as_text=True)
    assert fragment.lstrip().startswith('<div id="notification-list">')
    assert 'id="notifications-toolbar" hx-swap-oob="true"' in fragment
    assert unread_badge(fragment) == 0 and "is-unread" not in fragment


def test_another_users_notification_cannot_be_marked(make, client, staff):
    owners = notify(make, staff["owner"])
    login(client, staff["editor"])
    token = csrf_from(client.get(PORTAL).get_data(as_text=True))
    assert client.post(f"{PORTAL}/{owners}/read", data={"csrf_token": token}).status_code == 404
    assert client.post(f"{PORTAL}/999999/read", data={"csrf_token": token}).status_code == 404
    assert [row.read_at for row in notifications_of(make, staff["owner"])] == [None]


def test_notifications_belong_to_the_organization_being_worked_in(make, client, staff):
    """The same person in two organizations sees each organization's notifications there only."""
    editor = staff["editor"]
    other_org = make.org()
    make.member(other_org, "editor", email=editor.email)
    elsewhere = notify(make, editor, message="Notice from the other org", org=other_org)
    notify(make, editor, message="Notice from this org")
    login(client, editor)
    page = client.get(PORTAL).get_data(as_text=True)
    assert "Notice from this org" in page and "Notice from the other org" not in page
    assert unread_badge(page) == 1
    token = csrf_from(page)
    assert client.post(f"{PORTAL}/{elsewhere}/read", data={"csrf_token": token}).status_code == 404
    client.post("/switch-organization", data={"organization_id": other_org.id, "csrf_token": token})
    page = client.get(PORTAL).get_data(as_text=True)
    assert "Notice from the other org" in page and "Notice from this org" not in page


def test_marking_needs_the_csrf_token(make, client, staff):
    first = notify(make, staff["editor"])
    login(client, staff["editor"])
    assert client.post(f"{PORTAL}/{first}/read").status_code == 400
    assert client.post(f"{PORTAL}/read", headers=HTMX).status_code == 400
    assert [row.read_at for row in notifications_of(make, staff["editor"])] == [None]


def test_every_staff_role_has_the_page_even_a_viewer(make, client, staff):
    viewer = make.member(staff["org"], "viewer")
    notify(make, viewer, message="For the viewer")
    login(client, viewer)
    home = client.get("/").get_data(as_text=True)
    assert unread_badge(home) == 1
    assert "For the viewer" in client.get(PORTAL).get_data(as_text=True)


def test_empty_page(make, client, staff):
    login(client, staff["editor"])
    page = client.get(PORTAL).get_data(as_text=True)
    assert "No notifications" in page and "Mark all as read" not in page


def test_the_page_needs_a_sign_in(client):
    response = client.get(PORTAL)
    assert response.status_code == 302 and "/login" in response.headers["Location"]


# --------------------------------------------------------------------------- the hub


def test_partner_users_have_the_hub_page(make, client, staff):
    partner = make.partner(staff["org"])
    paula = make.member(staff["org"], "partner_admin", partner_id=partner)
    notify(make, paula, message="Partner notice")
    login(client, paula)
    hub_tokens = client.get("/hub/api-tokens").get_data(as_text=True)
    assert unread_badge(hub_tokens) == 1 and f'href="{HUB}"' in hub_tokens
    page = client.get(HUB)
    assert page.status_code == 200 and "Partner notice" in page.get_data(as_text=True)
    assert client.get(PORTAL).status_code == 403
    [row] = notifications_of(make, paula)
    response = client.post(f"{HUB}/{row.id}/read", data={"csrf_token": csrf_from(page.get_data(as_text=True))})
    assert response.status_code == 302 and response.headers["Location"] == HUB
    assert notifications_of(make, paula)[0].read_at is not None


def test_staff_get_403_on_the_hub_page(make, client, staff):
    login(client, staff["editor"])
    assert client.get(HUB).status_code == 403
