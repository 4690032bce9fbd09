"""The portal without JavaScript (Flask test client, CSRF on): API Tokens, Members, Organization, Audit log.

Every page is used as a browser without JavaScript uses it: forms post and redirect, the
show-once page is rendered by its POST. htmx requests (HX-Request) get only their fragment.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from tests.conftest import bearer, csrf_from, login
from tests.pages import (
    HTMX,
    TOKENS,
    button_labels,
    create_form,
    csrf,
    html,
    row_html,
    shown_secret,
    signed_in,
    token_count,
)

SECRET = re.compile(r"kw_[0-9a-f]{64}")


# --------------------------------------------------------------------------- helpers


def post_create(client, **fields):
    return client.post(TOKENS, data={**create_form(**fields), "csrf_token": csrf(client, TOKENS + "/new")})


def set_org(make, org, **values) -> None:
    from shared.core.extensions import db
    from shared.models import Organization

    def apply():
        row = db.session.get(Organization, org.id)
        for key, value in values.items():
            setattr(row, key, value)
        db.session.commit()

    make.run(apply)


def me_status(client, secret: str) -> int:
    return client.get("/api/v1/me", headers=bearer(secret)).status_code


# --------------------------------------------------------------------------- generate


def test_generate_shows_the_secret_once_and_never_again(client, make, editor):
    signed_in(client, editor)
    response = post_create(client, name="Nightly backup")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    secret = shown_secret(response)
    page = html(response)
    assert "will not be shown again" in page and ">\n      Copy</button>" in page
    assert me_status(client, secret) == 200

    assert secret not in html(client.get(TOKENS))
    assert secret not in str(response.headers)
    with client.session_transaction() as session:
        assert secret not in str(dict(session))
    assert secret not in str([event.details for event in make.audit()])


def test_generate_with_the_defaults_is_least_privilege_for_a_year(client, make, editor, clock):
    signed_in(client, editor)
    new = html(client.get(TOKENS + "/new"))
    assert re.findall(r'name="rights" value="([^"]+)"\s+checked', new) == ["documents read"]
    assert re.search(r'<option value="365" selected>1 year</option>', new)

    response = post_create(client, name="Least")
    assert SECRET.search(html(response))
    token = make.get_token(re.search(r"tok_[0-9a-f]{16}", html(response)).group(0))
    assert token.rights == {"documents": ["read"]} and token.type == "personal"
    assert token.expires_at == clock.now() + timedelta(days=365)


def test_the_page_shows_every_column(client, make, editor, clock):
    issued = make.token(editor, name="Reporting", scopes=["documents", "analytics"], permissions=["read"],
                        expires_at=None)
    make.token(editor, name="Soon", expires_in_days=3)
    signed_in(client, editor)
    page = html(client.get(TOKENS))
    row = row_html(page, issued.id)
    assert "Reporting" in row and f"kw_••••{issued.secret[-4:]}" in row and issued.id in row
    assert "Personal" in row and "documents" in row and "analytics" in row
    # Every moment reads relative, with the exact time on hover and ISO for machines.
    assert 'created <time datetime="2026-11-23T12:00:00Z" title="2026-11-23 12:00 UTC">just now</time>' in row
    assert '<span class="visually-hidden">never</span>' in row  # never expires: "-"
    assert ">Active<" in row and "never" in row  # never used
    assert "Expires soon" in page
    # Newest first.
    assert page.index("Soon") < page.index("Reporting")

    clock.advance(days=2)
    make.run(lambda: _use(issued.id, clock.now() - timedelta(days=1)))
    row = row_html(html(client.get(TOKENS)), issued.id)
    assert re.search(r'<time datetime="2026-11-24T12:00:00Z" title="2026-11-24 12:00 UTC[^"]*">1 day ago</time>', row)
    assert "1,234</span> requests" in row and "56</span> documents" in row


def _use(public_id: str, when: datetime) -> None:
    from shared.core.extensions import db
    from shared.models import ApiToken

    token = db.session.scalars(select(ApiToken).where(ApiToken.public_id == public_id)).one()
    token.last_used_at = when
    token.usage_count = 1234
    token.documents_processed = 56
    db.session.commit()


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"name": ""}, "name", "Name is required"),
    ({"name": "bad\x07name"}, "name", "Name cannot contain control characters"),
    ({"name": "x" * 101}, "name", "at most 100 characters"),
    ({"expiration": "custom", "expiration_date": "2020-01-01"}, "expiration", "Choose a date after today"),
    ({"expiration": "custom", "expiration_date": "soon"}, "expiration", "Enter a date as YYYY-MM-DD"),
    ({"ip_allowlist": "10.0.0.0/33"}, "ip_allowlist", "is not an IP address or CIDR range"),
    ({"rights": []}, "rights", "Choose at least one permission on one scope"),
    ({"rights": ["documents read", "documents delete"]}, "rights", "does not include the delete permission"),
    ({"rights": ["billing read"]}, "rights", "does not include the billing scope"),
    ({"rights": ["documents"]}, "rights", "Choose rights from the grid"),
    # A form of the older shape (lists of scopes and permissions) gets its errors by list.
    ({"rights": [], "scopes": ["documents"], "permissions": []}, "permissions",
     "Choose at least one permission"),
    ({"rights": [], "scopes": ["billing"], "permissions": ["read"]}, "scopes",
     "does not include the billing scope"),
    ({"type": "organization"}, "type", "Your role can only create personal tokens"),
])
def test_bad_input_shows_errors_beside_the_fields_and_writes_nothing(client, make, editor, clock,
                                                                      fields, field, message):
    signed_in(client, editor)
    before = token_count(make), len(make.audit())
    response = post_create(client, **fields)
    assert response.status_code == 422
    page = html(response)
    error = re.search(rf'<p class="field-error" id="new-{field}-error">([^<]*)</p>', page)
    assert error and message in error.group(1).replace("&#39;", "'")
    assert re.search(rf'aria-describedby="[^"]*new-{field}', page) or field == "type"
    assert "data-token-value" not in page
    assert (token_count(make), len(make.audit())) == before


def test_the_form_keeps_what_was_typed(client, editor):
    signed_in(client, editor)
    page = html(post_create(client, name="Keep me", description="Notes", ip_allowlist="10.0.0.0/33",
                            rights=["documents read", "templates write"]))
    assert 'value="Keep me"' in page and ">Notes</textarea>" in page and "10.0.0.0/33</textarea>" in page
    checked = re.findall(r'name="rights" value="([^"]+)"\s+checked', page)
    assert checked == ["documents read", "templates write"]


@pytest.mark.parametrize(("policy", "fields", "field", "message"), [
    ({"policy_max_lifetime_days": 30}, {"expiration": "365"}, "expiration", "at most 30 days"),
    ({"policy_allow_no_expiry": False}, {"expiration": "never"}, "expiration", "requires tokens to expire"),
    ({"policy_allowed_scopes": ["documents"]}, {"rights": ["documents read", "projects read"]}, "rights",
     "does not allow the scope projects"),
    ({"policy_require_allowlist": True}, {}, "ip_allowlist", "requires an IP allowlist"),
])
def test_org_policy_violations_are_field_errors(client, make, org, editor, policy, fields, field, message):
    set_org(make, org, **policy)
    signed_in(client, editor)
    before = token_count(make)
    response = post_create(client, **fields)
    assert response.status_code == 422
    assert re.search(rf'id="new-{field}-error">[^<]*{message}', html(response))
    assert token_count(make) == before


def test_free_plan_limit_is_a_form_error(client, app, make):
    free = make.org("free")
    member = make.member(free, "editor")
    app.config["KEYWARD_FREE_TOKEN_LIMIT"] = 2
    make.token(member)
    make.token(member)
    signed_in(client, member)
    assert "Free plan: you have 2 of 2 active tokens" in html(client.get(TOKENS + "/new"))
    response = post_create(client)
    assert response.status_code == 422
    assert "The free plan allows 2 active tokens per member" in html(response)
    assert token_count(make) == 2


def test_no_plan_means_no_tokens(client, make, org, editor):
    set_org(make, org, plan="none")
    signed_in(client, editor)
    assert "Choose a plan to create API tokens" in html(client.get(TOKENS))
    response = post_create(client)
    assert response.status_code == 422
    assert "Choose a plan to create API tokens" in html(response)
    assert token_count(make) == 0


def test_owner_creates_project_and_organization_tokens(client, make, org, owner):
    project_id = make.project(org, "Website")
    signed_in(client, owner)
    new = html(client.get(TOKENS + "/new"))
    assert '<option value="organization"' in new and "Website" in new

    missing = post_create(client, type="project", project_id="")
    assert missing.status_code == 422 and 'id="new-project_id-error"' in html(missing)
    created = post_create(client, name="Site", type="project", project_id=str(project_id),
                          permissions=["read", "write", "delete"], scopes=["documents", "billing"])
    assert created.status_code == 200
    token = make.get_token(re.search(r"tok_[0-9a-f]{16}", html(created)).group(0))
    assert (token.type, token.project_id) == ("project", project_id)
    assert post_create(client, name="Org wide", type="organization").status_code == 200


# --------------------------------------------------------------------------- row actions


def test_deactivate_and_reactivate_by_plain_post(client, make, editor):
    issued = make.token(editor, name="Relay")
    signed_in(client, editor)
    token = csrf(client)
    response = client.post(f"{TOKENS}/{issued.id}/deactivate", data={"csrf_token": token, "next": TOKENS + "?name=rel"})
    assert response.status_code == 302 and response.headers["Location"] == TOKENS + "?name=rel"
    assert make.get_token(issued.id).is_active is False
    assert client.get("/api/v1/me", headers=issued.headers).get_json()["error"]["code"] == "token_inactive"
    page = html(client.get(TOKENS))
    assert "Deactivated “Relay”" in page
    assert ">Inactive<" in row_html(page, issued.id) and "Reactivate" in row_html(page, issued.id)

    client.post(f"{TOKENS}/{issued.id}/reactivate", data={"csrf_token": token})
    assert make.get_token(issued.id).is_active is True
    assert me_status(client, issued.secret) == 200
    assert [e.action for e in make.audit()][-2:] == ["token.deactivated", "token.reactivated"]


def test_next_never_leaves_the_list(client, make, editor):
    issued = make.token(editor)
    signed_in(client, editor)
    for target in ("https://evil.example/", "//evil.example/settings/api-tokens", "/settings/members"):
        response = client.post(f"{TOKENS}/{issued.id}/deactivate", data={"csrf_token": csrf(client), "next": target})
        assert response.headers["Location"] == TOKENS
        client.post(f"{TOKENS}/{issued.id}/reactivate", data={"csrf_token": csrf(client)})


def test_htmx_actions_get_only_the_row(client, make, editor):
    issued = make.token(editor, name="Relay")
    signed_in(client, editor)
    token = csrf(client)
    response = client.post(f"{TOKENS}/{issued.id}/deactivate", data={"csrf_token": token}, headers=HTMX)
    fragment = html(response)
    assert response.status_code == 200
    assert fragment.lstrip().startswith("<tr id=\"token-") and "<html" not in fragment
    assert fragment.count("<tr") == 1 and "Reactivate" in fragment and ">Inactive<" in fragment

    reactivated = html(client.post(f"{TOKENS}/{issued.id}/reactivate", headers={**HTMX, "X-CSRFToken": token}))
    assert "Deactivate" in reactivated and "<html" not in reactivated

    assert "<html" not in html(client.get(f"{TOKENS}/{issued.id}/row", headers=HTMX))


def test_regenerate_by_plain_post_shows_the_new_value_once(client, make, editor):
    issued = make.token(editor, name="Billing sync")
    signed_in(client, editor)
    confirm = html(client.get(f"{TOKENS}/{issued.id}/regenerate"))
    assert "Regenerate token" in confirm and "Cancel" in confirm
    response = client.post(f"{TOKENS}/{issued.id}/regenerate", data={"csrf_token": csrf_from(confirm)})
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    secret = shown_secret(response)
    assert secret != issued.secret and "New value for “Billing sync”" in html(response)
    assert me_status(client, issued.secret) == 401
    assert me_status(client, secret) == 200
    assert secret not in html(client.get(TOKENS))


def test_regenerate_by_htmx_swaps_the_row_and_adds_the_secret_once(client, make, editor):
    issued = make.token(editor)
    signed_in(client, editor)
    response = client.post(f"{TOKENS}/{issued.id}/regenerate", headers={**HTMX, "X-CSRFToken": csrf(client)})
    fragment = html(response)
    assert response.headers["Cache-Control"] == "no-store"
    assert "<html" not in fragment and fragment.count("<tr") == 1
    # The value goes in the panel above the list (out of band), never in a table row.
    row, panel = fragment.split("</tr>")
    assert "data-token-value" not in row
    assert re.search(r'<div id="value-panel" aria-live="polite" hx-swap-oob="true">\s*'
                     r'<section class="secret-panel"', panel)
    assert 'hx-history="false"' in panel
    assert me_status(client, shown_secret(response)) == 200


def test_revoke_moves_the_token_to_deleted(client, make, editor):
    issued = make.token(editor, name="Legacy importer")
    signed_in(client, editor)
    confirm = html(client.get(f"{TOKENS}/{issued.id}/revoke"))
    assert "Revoke token" in confirm and "Cancel" in confirm
    response = client.post(f"{TOKENS}/{issued.id}/revoke", data={"csrf_token": csrf_from(confirm)})
    assert response.status_code == 302
    assert me_status(client, issued.secret) == 401

    active = html(client.get(TOKENS))
    assert f'id="token-{issued.id}"' not in active and "It is listed under Deleted" in active
    deleted = html(client.get(TOKENS + "?tab=deleted"))
    row = row_html(deleted, issued.id)
    assert ">Revoked<" in row and button_labels(row) == set()
    assert 'aria-current="page">Deleted<' in deleted

    again = client.post(f"{TOKENS}/{issued.id}/reactivate", data={"csrf_token": csrf(client)})
    assert again.status_code == 409 and make.get_token(issued.id).is_active is True


def test_revoke_by_htmx_replaces_the_row_with_a_notice(client, make, editor):
    issued = make.token(editor)
    signed_in(client, editor)
    fragment = html(client.post(f"{TOKENS}/{issued.id}/revoke", headers={**HTMX, "X-CSRFToken": csrf(client)}))
    assert "<html" not in fragment and "listed under Deleted" in fragment and "Revoke" not in button_labels(fragment)


def test_edit_changes_everything_but_the_secret(client, make, editor, clock):
    issued = make.token(editor, name="Docs", permissions=["read", "custom:label"])
    signed_in(client, editor)
    page = html(client.get(f"{TOKENS}/{issued.id}/edit"))
    assert 'value="Docs"' in page and "Keep current (expires in 1 year, 2027-11-23 12:00 UTC)" in page
    assert re.search(r'value="documents custom:label"\s+checked', page)  # a free-form label is kept
    response = client.post(f"{TOKENS}/{issued.id}/edit", data={
        "csrf_token": csrf_from(page), "name": "Docs (prod)", "description": "Reads documents",
        "rights": ["documents read", "documents write", "documents custom:label", "templates read"],
        "expiration": "30", "ip_allowlist": "10.0.0.0/8\n2001:db8::1"})
    assert response.status_code == 302
    token = make.get_token(issued.id)
    assert (token.name, token.description) == ("Docs (prod)", "Reads documents")
    assert token.rights == {"documents": ["read", "write", "custom:label"], "templates": ["read"]}
    assert token.expires_at == clock.now() + timedelta(days=30)
    assert token.ip_allowlist == ["10.0.0.0/8", "2001:db8::1"]
    assert me_status(client, issued.secret) == 403  # allowlist refuses the test client's address
    assert make.audit("token.updated")


def test_edit_keeps_the_expiry_unless_changed(client, make, editor):
    issued = make.token(editor)
    before = make.get_token(issued.id).expires_at
    signed_in(client, editor)
    client.post(f"{TOKENS}/{issued.id}/edit", data={"csrf_token": csrf(client), "name": "Renamed",
                                                    "permissions": "read", "scopes": "documents", "expiration": "keep"})
    assert make.get_token(issued.id).expires_at == before


def test_edit_errors_and_htmx_edit_row(client, make, editor):
    issued = make.token(editor, name="Docs")
    signed_in(client, editor)
    edit_row = html(client.get(f"{TOKENS}/{issued.id}/edit", headers=HTMX))
    assert edit_row.lstrip().startswith("<tr") and "<html" not in edit_row and "Save changes" in edit_row
    token = csrf(client)
    bad = client.post(f"{TOKENS}/{issued.id}/edit", headers=HTMX, data={
        "csrf_token": token, "name": "", "permissions": "read", "scopes": "documents", "expiration": "keep"})
    assert bad.status_code == 422 and "<html" not in html(bad)
    assert f'id="edit-{issued.id}-name-error">Name is required' in html(bad)
    assert make.get_token(issued.id).name == "Docs"
    good = client.post(f"{TOKENS}/{issued.id}/edit", headers=HTMX, data={
        "csrf_token": token, "name": "Docs 2", "permissions": "read", "scopes": "documents", "expiration": "keep"})
    assert good.status_code == 200 and "Docs 2" in html(good) and 'class="token-row' in html(good)


# --------------------------------------------------------------------------- list, filters, pages


def test_filters_by_name_type_status_and_project(client, make, org, owner):
    project_id = make.project(org, "Website")
    alpha = make.token(owner, name="Alpha deploy")
    beta = make.token(owner, name="Beta export", type="organization")
    gamma = make.token(owner, name="Gamma 100%", type="project", project_id=project_id)
    signed_in(client, owner)
    client.post(f"{TOKENS}/{beta.id}/deactivate", data={"csrf_token": csrf(client)})

    def shown(query: str) -> set[str]:
        page = html(client.get(TOKENS + query))
        return {issued.id for issued in (alpha, beta, gamma) if f'id="token-{issued.id}"' in page}

    assert shown("") == {alpha.id, beta.id, gamma.id}
    assert shown("?name=DEPLOY") == {alpha.id}
    assert shown("?name=100%25") == {gamma.id}
    assert shown("?name=%25") == {gamma.id}
    assert shown("?type=organization") == {beta.id}
    assert shown("?status=inactive") == {beta.id}
    assert shown("?status=active") == {alpha.id, gamma.id}
    assert shown(f"?project_id={project_id}") == {gamma.id}
    assert shown("?name=zzz") == set()
    assert "No tokens match these filters" in html(client.get(TOKENS + "?name=zzz"))
    assert shown("?type=bogus&status=bogus&page=x") == {alpha.id, beta.id, gamma.id}
    assert 'value="DEPLOY"' in html(client.get(TOKENS + "?name=DEPLOY"))  # reload keeps the box filled


def test_htmx_filter_gets_only_the_table(client, make, editor):
    make.token(editor, name="Alpha")
    signed_in(client, editor)
    response = client.get(TOKENS + "?name=alp", headers=HTMX)
    fragment = html(response)
    assert fragment.lstrip().startswith('<div id="token-results"') and "<html" not in fragment
    assert "Alpha" in fragment and "HX-Request" in response.headers["Vary"]
    restore = html(client.get(TOKENS + "?name=alp", headers={**HTMX, "HX-History-Restore-Request": "true"}))
    assert "<html" in restore


def test_pagination(client, make, editor):
    for n in range(30):
        make.token(editor, name=f"Token {n:02d}")
    signed_in(client, editor)
    first = html(client.get(TOKENS))
    assert "1–25 of 30 tokens" in first and "Token 29" in first and "Token 04" not in first
    second = html(client.get(TOKENS + "?page=2"))
    assert "26–30 of 30 tokens" in second and "Token 00" in second and "Token 29" not in second
    assert "26–30 of 30" in html(client.get(TOKENS + "?page=99"))


# --------------------------------------------------------------------------- who sees what


def test_a_viewer_gets_403(client, make, org):
    viewer = make.member(org, "viewer")
    response = login(client, viewer)
    assert response.headers["Location"] == "/"
    assert "API Tokens" not in html(client.get("/"))
    for url in (TOKENS, TOKENS + "/new", "/settings/members", "/settings/organization", "/settings/audit"):
        assert client.get(url).status_code == 403, url


def test_staff_land_on_api_tokens_and_the_nav_has_sign_out(client, editor):
    response = login(client, editor)
    assert response.headers["Location"] == TOKENS
    page = html(client.get(TOKENS))
    nav = re.search(r'<nav class="topbar-inner" aria-label="Main">.*?</nav>', page, re.S).group(0)
    assert ">Sign out</button>" in nav and ">API Tokens</a>" in nav
    assert "Members" not in nav  # an editor manages no members


def test_security_manager_sees_all_but_cannot_edit_others(client, make, org, owner, editor):
    partner_id = make.partner(org, "Globex")
    partner_user = make.member(org, "partner_member", partner_id=partner_id)
    security = make.member(org, "security_manager")
    theirs = make.token(editor, name="Editor token")
    partners = make.token(partner_user, name="Partner token")
    mine = make.token(security, name="My token")
    signed_in(client, security)
    page = html(client.get(TOKENS))
    other_row = row_html(page, theirs.id)
    assert button_labels(other_row) == {"Actions for Editor token", "Deactivate", "Revoke"}
    assert {"Edit", "Regenerate", "Deactivate", "Revoke"} <= button_labels(row_html(page, mine.id))
    assert "Partner" in row_html(page, partners.id) and "Partner" not in row_html(page, theirs.id)
    assert "by " in other_row

    token = csrf(client)
    assert client.get(f"{TOKENS}/{theirs.id}/edit").status_code == 403
    edit = {"csrf_token": token, "name": "x", "permissions": "read", "scopes": "documents", "expiration": "keep"}
    assert client.post(f"{TOKENS}/{theirs.id}/edit", data=edit).status_code == 403
    assert client.post(f"{TOKENS}/{theirs.id}/regenerate", data={"csrf_token": token}).status_code == 403
    assert make.get_token(theirs.id).name == "Editor token"
    assert client.post(f"{TOKENS}/{theirs.id}/deactivate", data={"csrf_token": token}).status_code == 302
    assert make.get_token(theirs.id).is_active is False
    assert client.post(f"{TOKENS}/{partners.id}/revoke", data={"csrf_token": token}).status_code == 302
    assert make.get_token(partners.id).revoked_at is not None


def test_members_see_only_their_own_tokens(client, make, org, owner, editor):
    others = make.token(owner, name="Owner token")
    mine = make.token(editor, name="Editor token")
    signed_in(client, editor)
    page = html(client.get(TOKENS))
    assert mine.id in page and others.id not in page and "by " not in row_html(page, mine.id)
    token = csrf(client)
    for action in ("deactivate", "revoke", "regenerate"):
        assert client.post(f"{TOKENS}/{others.id}/{action}", data={"csrf_token": token}).status_code == 404
    assert client.get(f"{TOKENS}/{others.id}/edit").status_code == 404


def test_another_orgs_token_is_not_found(client, make, editor):
    stranger = make.member(make.org(), "owner")
    foreign = make.token(stranger)
    signed_in(client, editor)
    assert client.post(f"{TOKENS}/{foreign.id}/revoke", data={"csrf_token": csrf(client)}).status_code == 404
    assert make.get_token(foreign.id).revoked_at is None


def test_partner_users_use_the_hub_not_the_portal(client, make, org):
    partner_user = make.member(org, "partner_admin", partner_id=make.partner(org))
    signed_in(client, partner_user)
    assert client.get(TOKENS).status_code == 403


def test_org_switcher(client, make, editor):
    second = make.org(name="Second Org")
    make.member(second, "owner", email=editor.email)
    there = make.token(make.member(second, "admin"), name="Over there")
    signed_in(client, editor)
    page = html(client.get(TOKENS))
    assert 'id="org-switcher"' in page and "Second Org" in page and there.id not in page
    response = client.post("/switch-organization", data={"csrf_token": csrf(client), "organization_id": second.id})
    assert response.headers["Location"] == TOKENS
    assert there.id in html(client.get(TOKENS))


def test_sign_out_ends_the_session(client, editor):
    signed_in(client, editor)
    response = client.post("/logout", data={"csrf_token": csrf(client)})
    assert response.status_code == 302
    assert client.get(TOKENS).status_code == 302


def test_the_secret_is_never_logged(client, editor, caplog):
    import logging

    signed_in(client, editor)
    with caplog.at_level("DEBUG"):
        # The capture works: a record of the app's loggers, at the lowest level, is seen below.
        logging.getLogger("keyward.tokens").debug("capture probe %s", editor.email)
        secret = shown_secret(post_create(client))
    assert f"capture probe {editor.email}" in caplog.text
    assert secret not in caplog.text and secret[3:59] not in caplog.text


# --------------------------------------------------------------------------- members


def test_members_change_role_and_remove_are_audited_and_apply_at_once(client, make, org, owner, editor):
    issued = make.token(editor, scopes=["tokens"])
    assert client.get("/api/v1/tokens", headers=issued.headers).status_code == 200
    signed_in(client, owner)
    page = html(client.get("/settings/members"))
    assert editor.email in page and "Change role" in page

    response = client.post(f"/settings/members/{editor.id}/role",
                           data={"csrf_token": csrf_from(page), "role": "viewer"})
    assert response.status_code == 302
    assert "is now viewer" in html(client.get("/settings/members"))
    event = make.audit("member.role_changed")[-1]
    assert (event.details["from"], event.details["to"], event.actor_user_id) == ("editor", "viewer", owner.user_id)
    denied = client.get("/api/v1/tokens", headers=issued.headers)
    assert denied.status_code == 403  # a viewer cannot manage tokens, so neither can their token

    response = client.post(f"/settings/members/{editor.id}/remove",
                           data={"csrf_token": csrf(client, "/settings/members")})
    assert response.status_code == 302
    assert f'id="member-{editor.id}"' not in html(client.get("/settings/members"))
    assert make.audit("member.removed")[-1].actor_user_id == owner.user_id
    assert me_status(client, issued.secret) == 401


def test_invite_member(client, make, owner):
    """The form invites (the full flow is in tests/test_invitations.py): a link, no account yet."""
    signed_in(client, owner)
    token = csrf(client, "/settings/members")
    response = client.post("/settings/members", data={"csrf_token": token, "email": "New@Example.test",
                                                      "role": "maintainer"})
    assert response.status_code == 200
    page = html(response)
    assert "Invitation for new@example.test" in page and "data-invitation-link" in page
    assert "new@example.test" in html(client.get("/settings/members"))
    assert make.audit("member.invited")[-1].details["role"] == "maintainer"

    again = client.post("/settings/members", data={"csrf_token": token, "email": owner.email,
                                                    "role": "editor"})
    assert again.status_code == 422 and "Already a member" in html(again)


def test_admins_cannot_touch_owners_or_themselves(client, make, org, owner):
    admin = make.member(org, "admin")
    signed_in(client, admin)
    token = csrf(client, "/settings/members")
    for url, data in ((f"/settings/members/{owner.id}/role", {"role": "viewer"}),
                      (f"/settings/members/{owner.id}/remove", {}),
                      (f"/settings/members/{admin.id}/role", {"role": "owner"})):
        assert client.post(url, data={"csrf_token": token, **data}).status_code == 403, url
    promote = client.post("/settings/members", data={"csrf_token": token, "email": "boss@example.test",
                                                     "role": "owner"})
    assert promote.status_code == 422
    assert not make.audit("member.role_changed") and not make.audit("member.removed")


def test_members_page_needs_manage_members(client, make, org):
    for role in ("security_manager", "maintainer", "editor"):
        member = make.member(org, role)
        signed_in(client, member)
        assert client.get("/settings/members").status_code == 403, role
        client.post("/logout", data={"csrf_token": csrf(client)})


# --------------------------------------------------------------------------- organization


def test_organization_page_is_owner_only(client, make, org):
    admin = make.member(org, "admin")
    signed_in(client, admin)
    assert client.get("/settings/organization").status_code == 403


def test_owner_sets_plan_and_policy(client, make, org, owner):
    signed_in(client, owner)
    page = html(client.get("/settings/organization"))
    response = client.post("/settings/organization", data={
        "csrf_token": csrf_from(page), "plan": "enterprise", "max_lifetime_days": "90",
        "restrict_scopes": "1", "allowed_scopes": ["documents", "projects"], "require_allowlist": "1"})
    assert response.status_code == 302

    from shared.orgs import organizations

    saved = make.run(lambda: organizations.get_organization(org.slug))
    assert saved.plan == "enterprise" and saved.policy_max_lifetime_days == 90
    assert saved.policy_allow_no_expiry is False and saved.policy_require_allowlist is True
    assert saved.policy_allowed_scopes == ["documents", "projects"]
    assert make.audit("organization.plan_changed")[-1].details == {"from": "business", "to": "enterprise"}
    changes = make.audit("organization.policy_changed")[-1].details["changes"]
    assert changes["max_lifetime_days"] == {"from": None, "to": 90}

    # The new policy applies to the next token at once.
    refused = post_create(client, expiration="365", scopes=["analytics"], ip_allowlist="")
    page = html(refused)
    assert "at most 90 days" in page and "does not allow the scope analytics" in page
    assert "requires an IP allowlist" in page


@pytest.mark.parametrize("lifetime", ["0", "-3", "abc", "5000"])
def test_organization_form_errors(client, make, org, owner, lifetime):
    signed_in(client, owner)
    response = client.post("/settings/organization", data={
        "csrf_token": csrf(client, "/settings/organization"), "plan": "free", "max_lifetime_days": lifetime})
    assert response.status_code == 422 and "Enter a whole number of days" in html(response)
    assert not make.audit("organization.plan_changed")


# --------------------------------------------------------------------------- audit log


def test_audit_log_filters(client, make, org, owner, editor, clock):
    security = make.member(org, "security_manager")
    first = make.token(editor, name="Old one")
    clock.advance(days=3)
    make.token(owner, name="New one")
    signed_in(client, security)

    everything = html(client.get("/settings/audit"))
    assert everything.index("New one") < everything.index("Old one")  # newest first
    only_created = html(client.get("/settings/audit?action=token.created"))
    assert "token.created" in only_created and "member.added</code>" not in only_created
    by_editor = html(client.get(f"/settings/audit?actor={editor.user_id}"))
    assert "Old one" in by_editor and "New one" not in by_editor
    window = html(client.get("/settings/audit?from=2026-11-26&to=2026-11-26"))
    assert "New one" in window and "Old one" not in window
    assert first.id in html(client.get("/settings/audit?to=2026-11-23"))
    fragment = html(client.get("/settings/audit?action=token.created", headers=HTMX))
    assert fragment.lstrip().startswith('<div id="audit-results"') and "<html" not in fragment


def test_audit_log_pages(client, make, org, owner):
    for n in range(60):
        make.token(owner, name=f"T{n}")
    signed_in(client, owner)
    assert "1–50 of" in html(client.get("/settings/audit"))
    assert "51–" in html(client.get("/settings/audit?page=2"))


def test_audit_log_needs_read_audit_log(client, make, org, editor):
    signed_in(client, editor)
    assert client.get("/settings/audit").status_code == 403


def test_audit_log_shows_only_this_org(client, make, owner):
    stranger = make.member(make.org(), "owner")
    make.token(stranger, name="Elsewhere")
    signed_in(client, owner)
    assert "Elsewhere" not in html(client.get("/settings/audit"))


# --------------------------------------------------------------------------- CSRF


def _state_changes(make, org, owner):
    issued = make.token(owner)
    other = make.member(org, "editor")
    t = f"{TOKENS}/{issued.id}"
    return [
        (TOKENS, create_form()),
        (f"{t}/edit", {"name": "x", "permissions": "read", "scopes": "documents", "expiration": "keep"}),
        (f"{t}/deactivate", {}),
        (f"{t}/reactivate", {}),
        (f"{t}/regenerate", {}),
        (f"{t}/revoke", {}),
        ("/settings/members", {"email": "a@example.test", "role": "editor"}),
        (f"/settings/members/{other.id}/role", {"role": "viewer"}),
        (f"/settings/members/{other.id}/remove", {}),
        ("/settings/organization", {"plan": "free"}),
        ("/switch-organization", {"organization_id": str(org.id)}),
        ("/logout", {}),
    ]


def test_every_state_change_needs_the_csrf_token(client, make, org, owner):
    changes = _state_changes(make, org, owner)
    signed_in(client, owner)
    before = len(make.audit()), token_count(make)
    for url, data in changes:
        assert client.post(url, data=data).status_code == 400, url
        assert client.post(url, data={**data, "csrf_token": "forged"}).status_code == 400, url
        assert client.post(url, data=data, headers={**HTMX, "X-CSRFToken": "forged"}).status_code == 400, url
    assert (len(make.audit()), token_count(make)) == before
    assert client.get(TOKENS).status_code == 200  # still signed in: logout was refused too


def test_htmx_sends_the_csrf_token_in_a_header(client, make, owner):
    issued = make.token(owner)
    signed_in(client, owner)
    page = html(client.get(TOKENS))
    header = re.search(r"hx-headers='(\{[^']*\})'", page).group(1)
    import json

    token = json.loads(header)["X-CSRFToken"]
    response = client.post(f"{TOKENS}/{issued.id}/deactivate", headers={**HTMX, "X-CSRFToken": token})
    assert response.status_code == 200
    assert make.get_token(issued.id).is_active is False
    assert client.get("/api/v1/me", headers=issued.headers).get_json()["error"]["code"] == "token_inactive"


def test_htmx_errors_are_plain_text(client, make, editor):
    signed_in(client, editor)
    response = client.post(f"{TOKENS}/tok_missing/deactivate", headers={**HTMX, "X-CSRFToken": csrf(client)})
    assert response.status_code == 404 and response.mimetype == "text/plain" and "<html" not in html(response)


def test_pages_have_no_inline_scripts(client, make, owner):
    make.token(owner)
    signed_in(client, owner)
    for url in (TOKENS, TOKENS + "/new", "/settings/members", "/settings/organization", "/settings/audit", "/login"):
        page = html(client.get(url))
        assert not re.search(r"<script(?![^>]*\bsrc=)", page), url
        assert not re.search(r"\son[a-z]+=", page), url
        assert "htmx-2.0.11.min.js" in page and "//cdn" not in page



def test_status_badges_follow_time(client, make, editor, clock):
    soon = make.token(editor, name="Soon", expires_in_days=10)
    signed_in(client, editor)
    assert ">Active<" in row_html(html(client.get(TOKENS)), soon.id)
    clock.advance(days=4)
    assert ">Expires soon<" in row_html(html(client.get(TOKENS)), soon.id)
    assert soon.id in html(client.get(TOKENS + "?status=expiring"))
    clock.advance(days=7)
    page = html(client.get(TOKENS))
    assert ">Expired<" in row_html(page, soon.id)
    assert soon.id in html(client.get(TOKENS + "?status=expired"))
    assert soon.id not in html(client.get(TOKENS + "?status=active"))
