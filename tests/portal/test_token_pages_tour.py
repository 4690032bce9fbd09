"""What a new user meets on the token pages, without JavaScript and with htmx (Flask test client,
CSRF on): one actions menu per row and one confirmation dialog per page, the value above the list,
the detail page's actions, a session that ended, the rights explained, the create form, dangerous
organization changes, one way to show a moment, and links from notices to their token."""

from __future__ import annotations

import re

from tests.conftest import csrf_from
from tests.pages import (
    HTMX,
    TOKENS,
    create_form,
    csrf,
    html,
    row_html,
    shown_secret,
    signed_in,
    token_count,
)

HUB = "/hub/api-tokens"


def buttons_in_order(fragment: str) -> list[str]:
    return [re.sub(r"<[^>]+>|\s+", " ", label).strip()
            for label in re.findall(r"<button[^>]*>(.*?)</button>", fragment, re.DOTALL)]


# --------------------------------------------------------------------------- the list


def test_each_row_has_one_actions_menu_with_revoke_last_and_set_apart(client, make, owner):
    issued = make.token(owner, name="CI deploys")
    signed_in(client, owner)
    page = html(client.get(TOKENS))
    row = row_html(page, issued.id)
    assert buttons_in_order(row) == ["Actions for CI deploys", "Edit", "Deactivate", "Regenerate", "Revoke"]
    assert re.search(rf'<button type="button"[^>]*popovertarget="actions-{issued.id}"', row)
    assert re.search(r'<hr class="menu-separator">\s*<form[^>]*>\s*<input[^>]*>\s*'
                     r'<button type="submit" class="menu-item is-danger">Revoke</button>', row)
    # One dialog for the page, fetched when needed, instead of one per row.
    assert "<dialog" not in page and page.count('id="token-dialog"') == 1


def test_a_confirmation_is_the_pages_dialog_with_htmx_and_a_page_without(client, make, owner):
    issued = make.token(owner, name="Legacy importer")
    signed_in(client, owner)
    dialog = html(client.get(f"{TOKENS}/{issued.id}/revoke", query_string={"next": TOKENS}, headers=HTMX))
    assert "<html" not in dialog and re.search(r'<dialog class="dialog" id="confirm-revoke"[^>]*data-reopen', dialog)
    assert "Revoke “Legacy importer”?" in dialog
    assert f'hx-post="{TOKENS}/{issued.id}/revoke" hx-target="#token-{issued.id}" hx-swap="outerHTML"' in dialog
    assert buttons_in_order(dialog) == ["Cancel", "Revoke token"]
    page = html(client.get(f"{TOKENS}/{issued.id}/revoke"))
    assert "<html" in page and "<dialog" not in page and "Revoke token" in page


def test_revoke_by_htmx_names_the_token_takes_the_focus_and_keeps_the_count_true(client, make, owner):
    make.token(owner, name="Keep me")
    issued = make.token(owner, name="Legacy importer")
    signed_in(client, owner)
    assert "1–2 of 2 tokens" in html(client.get(TOKENS))
    fragment = html(client.post(f"{TOKENS}/{issued.id}/revoke", data={"next": TOKENS},
                                headers={**HTMX, "X-CSRFToken": csrf(client)}))
    notice = re.search(rf'<tr class="notice-row" id="token-{issued.id}" tabindex="-1" data-autofocus>.*?</tr>',
                       fragment, re.DOTALL)
    assert notice and "“Legacy importer” stopped working" in notice.group(0)
    assert re.search(r'<p class="muted" id="token-count" hx-swap-oob="true">1–1 of 1 token</p>', fragment)


def test_the_list_explains_the_two_ids(client, make, owner):
    make.token(owner, name="CI deploys")
    signed_in(client, owner)
    page = html(client.get(TOKENS))
    assert "is the end of a token’s value, to recognize it" in page and "is its id, which names it in the API" in page


def test_the_shown_value_comes_with_a_usage_example_that_works_as_written(client, make, editor):
    signed_in(client, editor)
    page = client.get(TOKENS + "/new")
    response = client.post(TOKENS, data={**create_form(name="Example"), "csrf_token": csrf_from(html(page))})
    secret = shown_secret(response)
    assert f'curl -H "Authorization: Bearer {secret}" http://localhost/api/v1/me' in html(response)
    assert re.search(r'<section class="secret-panel"[^>]*tabindex="-1" autofocus data-autofocus', html(response))


# --------------------------------------------------------------------------- the detail page


def actor_of(member):
    """The member as the services see them (inside make.run)."""
    from shared.audit.record import Actor
    from shared.core.extensions import db
    from shared.models import Membership

    return Actor(membership=db.session.get(Membership, member.id))


def test_the_detail_page_offers_the_lists_actions_and_returns_to_itself(client, make, owner):
    from shared.tokens import access, lifecycle

    issued = make.token(owner, name="Reporting")
    make.run(lambda: lifecycle.regenerate_token(actor_of(owner), access.get_token_for(actor_of(owner), issued.id),
                                                "24h"))
    signed_in(client, owner)
    detail = f"{TOKENS}/{issued.id}"
    page = html(client.get(detail))
    actions = re.search(r'<div class="action-bar" id="token-actions">.*?</div>', page, re.DOTALL).group(0)
    assert buttons_in_order(actions) == ["Edit", "Deactivate", "Regenerate", "End grace period", "Revoke"]
    assert actions.count(f'name="next" value="{detail}"') == 5

    response = client.post(f"{detail}/deactivate", data={"next": detail, "csrf_token": csrf_from(page)})
    assert response.status_code == 302 and response.headers["Location"] == detail
    assert "Deactivated “Reporting”" in html(client.get(detail))
    assert client.post(f"{detail}/revoke", data={"next": "https://elsewhere.test/", "csrf_token": csrf_from(page)}
                       ).headers["Location"] == TOKENS  # never elsewhere


def test_the_detail_pages_rights_say_what_it_can_first_and_each_reason_once(client, make, org):
    editor = make.member(org, "editor")
    issued = make.token(editor, name="Narrow", scopes=["documents"], permissions=["read"])
    signed_in(client, editor)
    page = html(client.get(f"{TOKENS}/{issued.id}"))
    assert page.index("It can<") < page.index("It cannot, and why")
    reasons = re.findall(r'<span class="rights-reason">([^<]*)</span>', page)
    assert len(reasons) == len(set(reasons)) and len(reasons) <= 7  # grouped: not a cell each (23 refused)
    assert "The token does not have the billing scope" in [r.replace("&#39;", "'") for r in reasons]


# --------------------------------------------------------------------------- a session that ended


def test_a_signed_out_htmx_request_is_sent_to_sign_in_and_back(client, make, editor):
    filtered = f"{TOKENS}?name=deploy"
    response = client.get(filtered, headers={**HTMX, "HX-Current-URL": f"http://localhost{filtered}"})
    assert response.status_code == 401 and response.get_data() == b""  # no sign-in page in the results
    assert response.headers["HX-Redirect"] == "/login?next=/settings/api-tokens?name%3Ddeploy"

    page = client.get(response.headers["HX-Redirect"])
    assert "Please sign in to continue." in html(page)
    signed = client.post(response.headers["HX-Redirect"], data={
        "email": editor.email, "password": editor.password, "csrf_token": csrf_from(html(page))})
    assert signed.status_code == 302 and signed.headers["Location"] == filtered


def test_a_post_after_the_session_ended_asks_to_sign_in_instead_of_a_csrf_error(app, make, editor):
    issued = make.token(editor, name="Legacy importer")
    browser = app.test_client()
    signed_in(browser, editor)
    token = csrf(browser)
    browser.delete_cookie("session")  # the cookie expired: no session, so no CSRF session token
    response = browser.post(f"{TOKENS}/{issued.id}/revoke", data={"next": TOKENS},
                            headers={**HTMX, "X-CSRFToken": token, "HX-Current-URL": f"http://localhost{TOKENS}"})
    assert response.status_code == 401 and response.headers["HX-Redirect"] == f"/login?next={TOKENS}"
    assert "CSRF" not in html(response)
    plain = browser.post(f"{TOKENS}/{issued.id}/revoke", data={"next": f"{TOKENS}?tab=deleted"})
    assert plain.status_code == 302 and plain.headers["Location"] == "/login?next=/settings/api-tokens?tab%3Ddeleted"
    assert make.get_token(issued.id).revoked_at is None


def test_a_signed_out_elsewhere_htmx_post_is_sent_to_sign_in(app, make, editor):
    issued = make.token(editor, name="Legacy importer")
    first, second = app.test_client(), app.test_client()
    signed_in(first, editor)
    token = csrf(first)
    signed_in(second, editor)
    with first.session_transaction() as session:
        key = session["_user_id"]
    from shared.identity import sessions

    make.run(lambda: sessions.end_session(key))  # e.g. a new password ended every session
    response = first.post(f"{TOKENS}/{issued.id}/deactivate", data={"next": TOKENS},
                          headers={**HTMX, "X-CSRFToken": token, "HX-Current-URL": f"http://localhost{TOKENS}"})
    assert response.status_code == 401 and response.headers["HX-Redirect"] == f"/login?next={TOKENS}"
    assert make.get_token(issued.id).is_active


def test_a_stale_sign_in_form_is_shown_again(client, editor):
    response = client.post("/login", data={"email": editor.email, "password": editor.password})
    assert response.status_code == 400 and "The sign-in form expired. Sign in again." in html(response)
    assert f'value="{editor.email}"' in html(response)


# --------------------------------------------------------------------------- the create form


def test_the_canary_is_under_advanced(client, make, owner):
    signed_in(client, owner)
    page = html(client.get(TOKENS + "/new"))
    advanced = re.search(r'<details class="advanced" >\s*<summary>Advanced</summary>.*?</details>', page, re.DOTALL)
    assert advanced and "Canary (alerts when used, grants nothing)" in advanced.group(0)
    assert page.index("IP allowlist") < page.index("<summary>Advanced</summary>")


def test_the_create_form_posted_again_makes_no_second_token(client, make, editor):
    signed_in(client, editor)
    page = html(client.get(TOKENS + "/new"))
    key = re.search(r'name="form_key" value="([^"]+)"', page).group(1)
    data = {**create_form(name="Nightly backup"), "form_key": key, "csrf_token": csrf_from(page)}
    first = client.post(TOKENS, data=data)
    secret = shown_secret(first)
    again = client.post(TOKENS, data=data)  # the reload of the page that showed the value
    shown = html(again)
    assert again.status_code == 200 and "data-token-value" not in shown and secret not in shown
    assert "“Nightly backup” was already created by this form." in shown
    assert token_count(make) == 1
    other = html(client.get(TOKENS + "/new"))
    assert re.search(r'name="form_key" value="([^"]+)"', other).group(1) != key  # a new form, a new key


def test_a_regenerate_form_posted_again_regenerates_once(client, make, editor):
    issued = make.token(editor, name="Billing sync")
    signed_in(client, editor)
    confirm = html(client.get(f"{TOKENS}/{issued.id}/regenerate"))
    data = {"csrf_token": csrf_from(confirm), "grace_period": "none",
            "form_key": re.search(r'name="form_key" value="([^"]+)"', confirm).group(1)}
    secret = shown_secret(client.post(f"{TOKENS}/{issued.id}/regenerate", data=data))
    again = html(client.post(f"{TOKENS}/{issued.id}/regenerate", data=data))
    assert "data-token-value" not in again and "“Billing sync” was already regenerated by this form." in again
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    assert len(make.audit("token.regenerated")) == 1


# --------------------------------------------------------------------------- dangerous changes


def test_choosing_no_plan_says_what_stops_and_saves_only_when_confirmed(client, make, org, owner, editor, clock):
    for name in ("a", "b", "c"):
        make.token(editor, name=name)
    make.token(editor, name="expired", expires_in_days=1)
    revoked = make.token(editor, name="revoked")
    signed_in(client, owner)
    client.post(f"{TOKENS}/{revoked.id}/revoke", data={"csrf_token": csrf(client)})
    clock.advance(days=2)
    page = html(client.get("/settings/organization"))
    form = {"plan": "none", "allow_no_expiry": "1", "csrf_token": csrf_from(page)}

    asked = client.post("/settings/organization", data=form)
    shown = html(asked)
    assert asked.status_code == 200 and "3 active tokens stop working now." in shown
    assert "Stop 3 tokens and save" in shown and make.run(lambda: _plan(org)) == "business"
    assert 'name="confirm_stop" value="3"' in shown

    saved = client.post("/settings/organization", data={**form, "confirm_stop": "3"})
    assert saved.status_code == 302 and make.run(lambda: _plan(org)) == "none"
    said = html(client.get("/settings/organization"))
    assert "The plan is now No plan: 3 tokens stopped working" in said
    assert "New and edited tokens follow it from now on" not in said


def test_a_policy_change_says_whom_it_applies_to(client, make, org, owner):
    signed_in(client, owner)
    page = html(client.get("/settings/organization"))
    client.post("/settings/organization", data={"plan": "business", "allow_no_expiry": "1",
                                                 "require_allowlist": "1", "csrf_token": csrf_from(page)})
    assert "Saved the token policy: tokens created or edited from now on follow it." in html(
        client.get("/settings/organization"))


def _plan(org) -> str:
    from shared.core.extensions import db
    from shared.models import Organization

    return db.session.get(Organization, org.id).plan


def test_bulk_revoke_of_more_than_ten_asks_to_type_the_number(client, make, org, owner):
    issued = [make.token(owner, name=f"t{n}") for n in range(11)]
    signed_in(client, owner)
    preview = html(client.get(f"{TOKENS}/bulk-revoke", query_string={"all": "1"}))
    assert "Type 11 to confirm" in preview
    form = {"csrf_token": csrf_from(preview), "confirm": "1", "all": "1",
            "previewed": re.findall(r'name="previewed" value="([^"]+)"', preview)}
    refused = client.post(f"{TOKENS}/bulk-revoke", data={**form, "confirm_count": "10"})
    assert refused.status_code == 302 and "all=1" in refused.headers["Location"]
    assert "Nothing was revoked: type 11 to revoke these 11 tokens." in html(client.get(refused.headers["Location"]))
    assert all(make.get_token(t.id).revoked_at is None for t in issued)
    done = client.post(f"{TOKENS}/bulk-revoke", data={**form, "confirm_count": "11"})
    assert done.status_code == 302 and all(make.get_token(t.id).revoked_at is not None for t in issued)


def test_bulk_revoke_of_ten_needs_no_typing(client, make, owner):
    [make.token(owner, name=f"t{n}") for n in range(10)]
    signed_in(client, owner)
    preview = html(client.get(f"{TOKENS}/bulk-revoke", query_string={"all": "1"}))
    assert "Type 10 to confirm" not in preview and "Revoke 10 tokens" in preview


# --------------------------------------------------------------------------- moments and links


ISO_IN_TEXT = re.compile(r">[^<]*\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


def test_moments_read_relative_with_the_exact_time_on_hover_and_never_raw_iso(client, make, owner, clock):
    issued = make.token(owner, name="Docs")
    signed_in(client, owner)
    page = html(client.get(f"{TOKENS}/{issued.id}/edit"))
    client.post(f"{TOKENS}/{issued.id}/edit", data={
        "csrf_token": csrf_from(page), "name": "Docs", "permissions": ["read"], "scopes": ["documents"],
        "expiration": "30", "ip_allowlist": ""})
    clock.advance(hours=2)
    for url in (f"{TOKENS}/{issued.id}", "/settings/audit", TOKENS):
        shown = html(client.get(url))
        assert not ISO_IN_TEXT.search(shown), url
        assert re.search(r'<time datetime="2026-11-23T12:00:00Z" title="2026-11-23 12:00 UTC">2 hours ago</time>',
                         shown), url
    history = html(client.get(f"{TOKENS}/{issued.id}"))
    # The edit's "expires at" change reads as two moments, not as JSON.
    assert re.search(r'expires at: <time datetime="2027-11-23T12:00:00Z"[^>]*>in 12 months</time> → '
                     r'<time datetime="2026-12-23T12:00:00Z"[^>]*>in 29 days</time>', history)


def notify(make, member, issued, message: str) -> None:
    from shared.core.extensions import db
    from shared.notifications import notices

    token_id = make.get_token(issued.id).id

    def add():
        notices.notify([member.user_id], member.org.id, "expiring_7d", message, token_id)
        db.session.commit()

    make.run(add)


def test_audit_targets_and_notices_link_to_their_token(client, make, org, owner):
    issued = make.token(owner, name="Deploy bot")
    notify(make, owner, issued, "Token “Deploy bot” expires soon")
    signed_in(client, owner)
    detail = f'href="{TOKENS}/{issued.id}"'
    assert detail in html(client.get("/settings/audit"))
    notices_page = html(client.get("/settings/notifications"))
    assert f'<a href="{TOKENS}/{issued.id}">View the token “Deploy bot”</a>' in notices_page


def test_a_partners_notice_links_to_the_token_in_the_hub(client, make, org):
    partner = make.member(org, "partner_admin", partner_id=make.partner(org, "Globex"))
    issued = make.token(partner, name="Globex sync")
    notify(make, partner, issued, "Token “Globex sync” expires soon")
    signed_in(client, partner)
    assert f'<a href="{HUB}/{issued.id}">View the token' in html(client.get("/hub/notifications"))


# --------------------------------------------------------------------------- a newcomer's first minute


def test_the_favicon_is_served(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response.mimetype == "image/vnd.microsoft.icon"
    assert response.get_data()[:4] == b"\x00\x00\x01\x00"  # an ICO file
    response.close()


def test_the_demo_prints_the_sign_in_address_with_the_port(runner):
    result = runner.invoke(args=["demo", "--port", "5100"])
    assert result.exit_code == 0 and "Sign in at http://127.0.0.1:5100/login with:" in result.output


def test_generate_token_opens_the_form_without_a_stray_question_mark(client, make, editor):
    signed_in(client, editor)
    page = html(client.get(TOKENS))
    assert f'<a class="btn btn-primary" role="button" href="{TOKENS}/new">' in page
    assert f'action="{TOKENS}/new"' not in page


def test_dates_in_the_created_value_panel_are_moments(client, make, editor):
    signed_in(client, editor)
    response = client.post(TOKENS, data={**create_form(name="Soon", expiration="30"),
                                         "csrf_token": csrf(client, TOKENS + "/new")})
    assert re.search(r"It expires <time datetime=\"[^\"]+\" title=\"[^\"]+\">in (29|30) days</time>\.", html(response))

