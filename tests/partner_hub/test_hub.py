"""The partner hub and partners, without JavaScript (Flask test client, CSRF on).

Partner users sign in to /hub and manage only their own personal tokens with the portal's token
pages; staff pages are closed to them and the hub to staff. Owners and admins manage partners on
the portal's Partners page (and operators with the CLI). Partner tokens see only their partner's
documents on every data endpoint, and stop at once when their user or their partner is removed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest

from tests.conftest import Member, bearer, csrf_from, login
from tests.pages import button_labels, html, row_html, shown_secret

HUB = "/hub/api-tokens"
PORTAL_TOKENS = "/settings/api-tokens"
PARTNERS = "/settings/partners"
HTMX = {"HX-Request": "true"}
PARTNER_SCOPES = ["documents", "projects", "templates", "analytics", "tokens"]


# --------------------------------------------------------------------------- the world


@dataclass
class World:
    org: object
    other_org: object
    globex: int
    initech: int
    owner: Member
    editor: Member
    paula: Member  # partner_admin of Globex
    pat: Member  # partner_member of Globex
    ian: Member  # partner_admin of Initech
    docs: dict[str, int]
    website: int


def add_documents(make, org, specs: list[tuple[str, int | None, int | None]]) -> dict[str, int]:
    """Documents (title, partner id, project id) written straight to the database."""
    from shared.core.extensions import db
    from shared.models import Document

    def apply():
        rows = {title: Document(organization_id=org.id, title=title, partner_id=partner_id, project_id=project_id)
                for title, partner_id, project_id in specs}
        db.session.add_all(rows.values())
        db.session.commit()
        return {title: row.id for title, row in rows.items()}

    return make.run(apply)


def add_template(make, org, name: str) -> None:
    from shared.core.extensions import db
    from shared.models import Template

    def apply():
        db.session.add(Template(organization_id=org.id, name=name, body=""))
        db.session.commit()

    make.run(apply)


@pytest.fixture
def world(make) -> World:
    org = make.org("business", name="Acme")
    other_org = make.org("business", name="Elsewhere")
    website = make.project(org, "Website")
    make.project(other_org, "Their site")
    globex = make.partner(org, "Globex")
    initech = make.partner(org, "Initech")
    docs = add_documents(make, org, [
        ("Staff plan", None, website), ("Staff memo", None, None),
        ("Globex brief", globex, website), ("Globex notes", globex, None),
        ("Initech brief", initech, website),
    ])
    docs.update(add_documents(make, other_org, [("Foreign doc", None, None)]))
    add_template(make, org, "Invoice")
    add_template(make, other_org, "Foreign template")
    return World(
        org=org, other_org=other_org, globex=globex, initech=initech,
        owner=make.member(org, "owner", email="olivia@acme.test"),
        editor=make.member(org, "editor", email="eddie@acme.test"),
        paula=make.member(org, "partner_admin", partner_id=globex, email="paula@globex.test"),
        pat=make.member(org, "partner_member", partner_id=globex, email="pat@globex.test"),
        ian=make.member(org, "partner_admin", partner_id=initech, email="ian@initech.test"),
        docs=docs, website=website,
    )


# --------------------------------------------------------------------------- helpers


def signed_in(client, member):
    response = login(client, member)
    assert response.status_code == 302, html(response)
    return response


def csrf(client, url: str = HUB) -> str:
    return csrf_from(html(client.get(url)))


def create_in_hub(client, **fields):
    data = {"name": "Partner sync", "description": "", "type": "personal", "permissions": ["read"],
            "scopes": ["documents"], "expiration": "365", "expiration_date": "", "ip_allowlist": ""}
    data.update(fields)
    return client.post(HUB, data={**data, "csrf_token": csrf(client, HUB + "/new")})


def nav_of(page: str) -> str:
    return re.search(r'<nav class="topbar-inner" aria-label="Main">.*?</nav>', page, re.S).group(0)


def api(client, secret: str, path: str, method: str = "GET", **kwargs):
    return client.open("/api/v1" + path, method=method, headers=bearer(secret), **kwargs)


def me_status(client, secret: str) -> int:
    return api(client, secret, "/me").status_code


def error_code(response) -> str:
    return response.get_json()["error"]["code"]


def titles(response) -> set[str]:
    return {item["title"] for item in response.get_json()["items"]}


# --------------------------------------------------------------------------- routing and access


def test_partner_user_signs_in_to_the_hub(client, world):
    response = signed_in(client, world.paula)
    assert response.headers["Location"] == HUB
    page = html(client.get(HUB))
    nav = nav_of(page)
    assert f'href="{HUB}"' in nav and ">API Tokens</a>" in nav and ">Sign out</button>" in nav
    assert "Partner hub · Globex" in nav
    assert "Members" not in nav and "Partners" not in nav and "Audit log" not in nav
    assert "<h1>API tokens</h1>" in page
    # A link to the form (no stray "?"), named as the button people look for.
    assert re.search(rf'<a class="btn btn-primary" role="button" href="{HUB}/new">\s*<svg[^>]*>.*?</svg>'
                     r'\s*Generate token</a>', page, re.S)
    assert client.get("/hub/").headers["Location"] == HUB
    assert client.get("/").headers["Location"] == HUB


def test_staff_still_land_in_the_portal(client, world):
    assert signed_in(client, world.editor).headers["Location"] == PORTAL_TOKENS


@pytest.mark.parametrize("who", ["paula", "pat"])
def test_staff_pages_are_closed_to_partner_users(client, world, who):
    signed_in(client, getattr(world, who))
    for url in (PORTAL_TOKENS, PORTAL_TOKENS + "/new", "/settings/members", PARTNERS, "/settings/organization",
                "/settings/audit"):
        assert client.get(url).status_code == 403, url
    response = client.post(PORTAL_TOKENS, data={"csrf_token": csrf(client), "name": "sneaky",
                                                "permissions": "read", "scopes": "documents", "expiration": "365"})
    assert response.status_code == 403


@pytest.mark.parametrize("role", ["owner", "admin", "security_manager", "editor", "viewer"])
def test_hub_pages_are_closed_to_staff(client, make, world, role):
    staff = make.member(world.org, role)
    mine = make.token(world.paula)
    signed_in(client, staff)
    for url in ("/hub/", HUB, HUB + "/new", f"{HUB}/{mine.id}/edit", f"{HUB}/{mine.id}/revoke"):
        assert client.get(url).status_code == 403, url
    token = csrf_from(html(client.get("/login")))
    for action in ("revoke", "deactivate", "regenerate"):
        assert client.post(f"{HUB}/{mine.id}/{action}", data={"csrf_token": token}).status_code == 403
    assert me_status(client, mine.secret) == 200


def test_signed_out_visitors_are_sent_to_sign_in(client, world):
    response = client.get(HUB)
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_a_person_who_is_staff_in_one_org_and_partner_in_another_switches_between_portal_and_hub(client, make, world):
    supplier = make.org("business", name="Supplier Co")
    make.member(supplier, "editor", email=world.paula.email)
    # Memberships are tried in creation order: the partner one in Acme comes first.
    assert signed_in(client, world.paula).headers["Location"] == HUB
    response = client.post("/switch-organization", data={"csrf_token": csrf(client), "organization_id": supplier.id})
    assert response.headers["Location"] == PORTAL_TOKENS
    assert client.get(PORTAL_TOKENS).status_code == 200
    assert client.get(HUB).status_code == 403  # the hub follows the organization worked in
    client.post("/switch-organization", data={"csrf_token": csrf(client, PORTAL_TOKENS),
                                              "organization_id": world.org.id})
    assert client.get(HUB).status_code == 200 and client.get(PORTAL_TOKENS).status_code == 403


# --------------------------------------------------------------------------- hub token features


def test_generate_in_the_hub_shows_the_secret_once_and_it_works(client, make, world):
    signed_in(client, world.paula)
    new = html(client.get(HUB + "/new"))
    assert 'id="new-type"' not in new  # partner users make personal tokens only: no Type to choose
    response = create_in_hub(client, name="Nightly sync")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    page = html(response)
    assert "will not be shown again" in page and "Copy" in button_labels(page)
    assert "Partner hub · Globex" in page  # the show-once page is a hub page
    secret = shown_secret(response)
    me = api(client, secret, "/me").get_json()
    assert me["user"] == {"id": world.paula.user_id, "email": "paula@globex.test", "role": "partner_admin"}
    assert me["token"]["type"] == "personal" and me["token"]["name"] == "Nightly sync"

    listing = html(client.get(HUB))
    assert secret not in listing and "Nightly sync" in listing
    assert make.audit("token.created")[-1].actor_user_id == world.paula.user_id


def test_hub_tokens_cannot_exceed_the_partner_role(client, make, world):
    signed_in(client, world.pat)  # partner_member: read only, no billing
    response = create_in_hub(client, name="Too wide", permissions=["read", "write"])
    assert response.status_code == 422
    assert "does not include the write permission" in html(response)
    response = create_in_hub(client, name="Billing", scopes=["billing"])
    assert response.status_code == 422 and "data-token-value" not in html(response)
    response = create_in_hub(client, name="Organization-wide", type="organization")
    assert response.status_code == 422 and "data-token-value" not in html(response)


def test_filter_by_name_in_the_hub(client, make, world):
    make.token(world.paula, name="CI deploys")
    make.token(world.paula, name="Local scripts")
    signed_in(client, world.paula)
    page = html(client.get(HUB, query_string={"name": "deploy"}))
    assert "CI deploys" in page and "Local scripts" not in page
    assert 'value="deploy"' in page  # the search box keeps the filter after a reload
    fragment = html(client.get(HUB, query_string={"name": "local"}, headers=HTMX))
    assert "<html" not in fragment and 'id="token-results"' in fragment
    assert "Local scripts" in fragment and "CI deploys" not in fragment


def test_hub_shows_last_used_and_usage(client, make, world, clock):
    issued = make.token(world.paula, name="Reporter")
    signed_in(client, world.paula)
    row = row_html(html(client.get(HUB)), issued.id)
    assert "never" in row
    for _ in range(3):
        assert me_status(client, issued.secret) == 200
    make.flush_usage()
    clock.advance(days=5)
    row = row_html(html(client.get(HUB)), issued.id)
    assert "5 days ago" in row and '<span class="usage-count">3</span> requests' in row
    assert "2026-11-23 12:00 UTC" in row  # exact time on hover


def test_deactivate_and_reactivate_in_the_hub(client, make, world):
    issued = make.token(world.paula, name="Relay")
    signed_in(client, world.paula)
    response = client.post(f"{HUB}/{issued.id}/deactivate", data={"csrf_token": csrf(client), "next": HUB})
    assert response.status_code == 302 and response.headers["Location"] == HUB
    assert "Deactivated “Relay”" in html(client.get(HUB))
    assert error_code(api(client, issued.secret, "/me")) == "token_inactive"
    fragment = html(client.post(f"{HUB}/{issued.id}/reactivate", data={"csrf_token": csrf(client)}, headers=HTMX))
    assert "<html" not in fragment and f'id="token-{issued.id}"' in fragment  # only the row is swapped
    assert "Deactivate" in button_labels(fragment) and ">Active</span>" in fragment
    assert me_status(client, issued.secret) == 200


def test_regenerate_in_the_hub_confirms_then_shows_the_new_value_once(client, make, world):
    issued = make.token(world.paula, name="Importer")
    signed_in(client, world.paula)
    confirm = html(client.get(f"{HUB}/{issued.id}/regenerate"))
    assert "Regenerate “Importer”?" in confirm and "Regenerate token" in button_labels(confirm)
    assert f'href="{HUB}"' in confirm  # Cancel goes back to the hub's list
    response = client.post(f"{HUB}/{issued.id}/regenerate", data={"csrf_token": csrf_from(confirm)})
    assert response.headers["Cache-Control"] == "no-store"
    secret = shown_secret(response)
    assert secret != issued.secret
    assert me_status(client, issued.secret) == 401 and me_status(client, secret) == 200


def test_revoke_in_the_hub_confirms_and_moves_the_token_to_deleted(client, make, world):
    issued = make.token(world.paula, name="Legacy")
    signed_in(client, world.paula)
    confirm = html(client.get(f"{HUB}/{issued.id}/revoke"))
    assert {"Revoke token"} <= button_labels(confirm) and ">Cancel</a>" in confirm
    response = client.post(f"{HUB}/{issued.id}/revoke", data={"csrf_token": csrf_from(confirm), "next": HUB})
    assert response.status_code == 302
    active = html(client.get(HUB))
    assert "Revoked “Legacy”" in active and f'id="token-{issued.id}"' not in active
    deleted = html(client.get(HUB, query_string={"tab": "deleted"}))
    assert "Revoked" in row_html(deleted, issued.id) and not button_labels(row_html(deleted, issued.id))
    assert error_code(api(client, issued.secret, "/me")) == "invalid_api_key"


def test_hub_lists_only_the_partner_users_own_tokens(client, make, world):
    mine = make.token(world.paula, name="Paula's")
    teammate = make.token(world.pat, name="Pat's")
    staff = make.token(world.owner, name="Owner's")
    other_partner = make.token(world.ian, name="Ian's")
    signed_in(client, world.paula)
    page = html(client.get(HUB))
    assert mine.id in page
    for hidden in (teammate, staff, other_partner):
        assert hidden.id not in page
    assert "by " not in row_html(page, mine.id)  # no creator column: they are all hers
    token = csrf(client)
    for hidden in (teammate, staff, other_partner):
        for action in ("deactivate", "revoke", "regenerate"):
            assert client.post(f"{HUB}/{hidden.id}/{action}", data={"csrf_token": token}).status_code == 404
        assert client.get(f"{HUB}/{hidden.id}/edit").status_code == 404
        assert me_status(client, hidden.secret) == 200


def test_hub_actions_need_the_csrf_token(client, make, world):
    issued = make.token(world.paula)
    signed_in(client, world.paula)
    assert client.post(f"{HUB}/{issued.id}/revoke").status_code == 400
    assert me_status(client, issued.secret) == 200


# --------------------------------------------------------------------------- partner tokens in the portal


@pytest.mark.parametrize("role", ["owner", "admin", "security_manager"])
def test_managers_see_partner_tokens_marked_and_can_deactivate_and_revoke_them(client, make, world, role):
    manager = make.member(world.org, role)
    first = make.token(world.paula, name="Globex sync")
    second = make.token(world.ian, name="Initech sync")
    signed_in(client, manager)
    page = html(client.get(PORTAL_TOKENS))
    assert "Partner: Globex" in row_html(page, first.id) and "Partner: Initech" in row_html(page, second.id)
    assert {"Deactivate", "Revoke"} <= button_labels(row_html(page, first.id))
    token = csrf(client, PORTAL_TOKENS)
    assert client.post(f"{PORTAL_TOKENS}/{first.id}/deactivate", data={"csrf_token": token}).status_code == 302
    assert error_code(api(client, first.secret, "/me")) == "token_inactive"
    assert client.post(f"{PORTAL_TOKENS}/{second.id}/revoke", data={"csrf_token": token}).status_code == 302
    assert error_code(api(client, second.secret, "/me")) == "invalid_api_key"


def test_staff_tokens_carry_no_partner_mark_and_editors_do_not_see_partner_tokens(client, make, world):
    staff = make.token(world.editor, name="Staff token")
    partner = make.token(world.paula, name="Globex sync")
    signed_in(client, world.owner)
    assert "Partner:" not in row_html(html(client.get(PORTAL_TOKENS)), staff.id)
    client.post("/logout", data={"csrf_token": csrf(client, PORTAL_TOKENS)})
    signed_in(client, world.editor)
    page = html(client.get(PORTAL_TOKENS))
    assert staff.id in page and partner.id not in page


# --------------------------------------------------------------------------- the Partners page


def test_partners_page_lists_partners_with_their_users_and_tokens(client, make, world):
    make.token(world.paula)
    make.token(world.pat)
    signed_in(client, world.owner)
    page = html(client.get(PARTNERS))
    assert ">Partners</a>" in nav_of(page)
    globex = re.search(rf'<section[^>]*id="partner-{world.globex}".*?</section>', page, re.S).group(0)
    assert "<h2" in globex and "Globex" in globex and "2 users · 2 active tokens" in globex
    assert "paula@globex.test" in globex and "Partner admin" in globex and "Partner member" in globex
    assert "ian@initech.test" not in globex
    assert {"Remove partner", "Remove", "Remove user", "Cancel", "Send invitation"} <= button_labels(globex)


def test_owner_creates_a_partner_and_invites_a_user_who_then_signs_in_to_the_hub(client, app, make, world):
    signed_in(client, world.owner)
    response = client.post(PARTNERS, data={"csrf_token": csrf(client, PARTNERS), "name": "Umbrella"})
    assert response.status_code == 302
    page = html(client.get(PARTNERS))
    assert "Created the partner Umbrella" in page
    partner_id = int(re.search(r'id="partner-(\d+)" aria-labelledby="partner-\d+-title">\s*<div class="partner-head">'
                               r'\s*<div>\s*<h2 id="partner-\d+-title">Umbrella', page).group(1))
    response = client.post(f"{PARTNERS}/{partner_id}/users", data={
        "csrf_token": csrf(client, PARTNERS), "email": "Alice@Umbrella.test", "role": "partner_member"})
    assert response.status_code == 200
    link = re.search(r"data-invitation-link>[^<]*(/invite/[0-9a-f]{64})<", html(response)).group(1)
    created = make.audit("partner.created")[-1]
    invited = make.audit("member.invited")[-1]
    assert created.details == {"name": "Umbrella"} and created.actor_user_id == world.owner.user_id
    assert invited.details["partner"] == "Umbrella" and invited.details["role"] == "partner_member"

    alice = app.test_client()
    form = html(alice.get(link))
    accepted = alice.post(link, data={"csrf_token": csrf_from(form), "name": "Alice",
                                      "password": "a long enough password"})
    assert accepted.headers["Location"] == HUB
    assert "Partner hub · Umbrella" in html(alice.get(HUB))
    signed_in_again = login(app.test_client(), "alice@umbrella.test", "a long enough password")
    assert signed_in_again.headers["Location"] == HUB


def test_partners_page_form_errors_are_shown_beside_the_fields(client, make, world):
    signed_in(client, make.member(world.org, "admin"))
    token = csrf(client, PARTNERS)
    response = client.post(PARTNERS, data={"csrf_token": token, "name": "  "})
    assert response.status_code == 422 and 'id="partner-name-error"' in html(response)
    response = client.post(PARTNERS, data={"csrf_token": token, "name": "globex"})
    assert response.status_code == 422 and "Already exists" in html(response)

    url = f"{PARTNERS}/{world.globex}/users"
    response = client.post(url, data={"csrf_token": token, "email": "x@globex.test", "role": "editor"})
    assert response.status_code == 422
    page = html(response)
    assert "Choose Partner admin or Partner member" in page and 'value="x@globex.test"' in page
    response = client.post(url, data={"csrf_token": token, "email": "not-an-email", "role": "partner_member"})
    assert response.status_code == 422 and "Enter a valid email address" in html(response)
    response = client.post(url, data={"csrf_token": token, "email": "pat@globex.test", "role": "partner_member"})
    assert response.status_code == 422 and "Already a member" in html(response)
    assert not make.audit("member.invited")


@pytest.mark.parametrize("role", ["security_manager", "maintainer", "editor", "viewer"])
def test_partners_page_is_for_owners_and_admins(client, make, world, role):
    signed_in(client, make.member(world.org, role))
    assert client.get(PARTNERS).status_code == 403
    token = csrf_from(html(client.get("/login")))
    assert client.post(PARTNERS, data={"csrf_token": token, "name": "Sneaky"}).status_code == 403
    assert client.post(f"{PARTNERS}/{world.globex}/remove", data={"csrf_token": token}).status_code == 403
    assert "Partners</a>" not in html(client.get("/"))


def test_another_orgs_partner_is_not_found(client, make, world):
    foreign = make.partner(world.other_org, "Foreign partner")
    stranger = make.member(world.other_org, "partner_admin", partner_id=foreign)
    signed_in(client, world.owner)
    token = csrf(client, PARTNERS)
    assert client.post(f"{PARTNERS}/{foreign}/remove", data={"csrf_token": token}).status_code == 404
    assert client.post(f"{PARTNERS}/{foreign}/users/{stranger.id}/remove", data={"csrf_token": token}).status_code == 404
    # a user of one partner cannot be removed through another partner's URL
    assert client.post(f"{PARTNERS}/{world.initech}/users/{world.paula.id}/remove",
                       data={"csrf_token": token}).status_code == 404
    assert "Foreign partner" not in html(client.get(PARTNERS))


def test_removing_a_partner_user_stops_their_tokens_and_ends_their_session(client, app, make, world):
    paula_token = make.token(world.paula)
    pat_token = make.token(world.pat)
    hub_client = app.test_client()
    signed_in(hub_client, world.paula)
    assert hub_client.get(HUB).status_code == 200

    signed_in(client, world.owner)
    response = client.post(f"{PARTNERS}/{world.globex}/users/{world.paula.id}/remove",
                           data={"csrf_token": csrf(client, PARTNERS)})
    assert response.status_code == 302
    page = html(client.get(PARTNERS))
    assert "Removed paula@globex.test from Globex" in page and f'id="partner-user-{world.paula.id}"' not in page
    assert error_code(api(client, paula_token.secret, "/me")) == "invalid_api_key"
    assert me_status(client, pat_token.secret) == 200  # her teammate keeps working
    assert hub_client.get(HUB).status_code == 302  # signed out on the server
    assert make.audit("member.removed")[-1].details["email"] == "paula@globex.test"


def test_removing_a_partner_stops_every_token_of_its_users_at_once(client, app, make, world):
    globex_tokens = [make.token(world.paula), make.token(world.pat)]
    initech_token = make.token(world.ian)
    hub_client = app.test_client()
    signed_in(hub_client, world.pat)

    signed_in(client, world.owner)
    response = client.post(f"{PARTNERS}/{world.globex}/remove", data={"csrf_token": csrf(client, PARTNERS)})
    assert response.status_code == 302
    page = html(client.get(PARTNERS))
    assert "Removed the partner Globex and its 2 users" in page and f'id="partner-{world.globex}"' not in page
    for issued in globex_tokens:
        assert error_code(api(client, issued.secret, "/me")) == "invalid_api_key"
    assert me_status(client, initech_token.secret) == 200
    assert hub_client.get(HUB).status_code == 302
    event = make.audit("partner.removed")[-1]
    assert event.details == {"name": "Globex", "users": ["paula@globex.test", "pat@globex.test"]}
    # Its users are gone from the Members page and cannot sign in to anything.
    assert "paula@globex.test" not in html(client.get("/settings/members"))
    client.post("/logout", data={"csrf_token": csrf(client, PARTNERS)})
    signed_in(client, world.paula)
    assert client.get(HUB).headers["Location"] == "/no-organization"


def test_re_inviting_a_removed_partner_user_does_not_revive_old_tokens(client, app, make, world):
    old = make.token(world.paula)
    signed_in(client, world.owner)
    token = csrf(client, PARTNERS)
    client.post(f"{PARTNERS}/{world.globex}/users/{world.paula.id}/remove", data={"csrf_token": token})
    response = client.post(f"{PARTNERS}/{world.globex}/users", data={
        "csrf_token": token, "email": "paula@globex.test", "role": "partner_admin"})
    assert response.status_code == 200
    link = re.search(r"data-invitation-link>[^<]*(/invite/[0-9a-f]{64})<", html(response)).group(1)
    paula = app.test_client()
    signed_in(paula, world.paula)
    assert paula.post(link, data={"csrf_token": csrf_from(html(paula.get(link)))}).status_code == 302
    assert paula.get(HUB).status_code == 200  # back in, with a new membership
    assert me_status(client, old.secret) == 401


# --------------------------------------------------------------------------- the command line


def test_cli_creates_lists_and_removes_partners_and_their_users(runner, client, make, world):
    env = {"KEYWARD_PASSWORD": "a good long password"}

    def invoke(*args):
        result = runner.invoke(args=list(args), env=env)
        assert result.exit_code == 0, result.output
        return result.output.strip()

    assert invoke("partners", "create", "Hooli", "--org", world.org.slug) == "Hooli"
    assert invoke("partners", "list", "--org", world.org.slug).splitlines() == ["Globex", "Hooli", "Initech"]
    invoke("users", "create", "gavin@hooli.test", "--org", world.org.slug, "--role", "partner_member",
           "--partner", "hooli")
    secret = invoke("tokens", "create", "--org", world.org.slug, "--user", "gavin@hooli.test", "--name", "ci",
                    "--scopes", "documents", "--permissions", "read")
    assert api(client, secret, "/me").get_json()["user"]["role"] == "partner_member"
    assert api(client, secret, "/documents").get_json()["items"] == []  # Hooli has no documents yet

    assert invoke("partners", "remove", "Hooli", "--org", world.org.slug) == f"Hooli removed from {world.org.slug} with 1 user"
    assert "Hooli" not in invoke("partners", "list", "--org", world.org.slug)
    assert error_code(api(client, secret, "/me")) == "invalid_api_key"

    failed = runner.invoke(args=["partners", "remove", "Hooli", "--org", world.org.slug])
    assert failed.exit_code != 0 and "No partner named" in failed.output
    failed = runner.invoke(args=["users", "create", "x@hooli.test", "--org", world.org.slug, "--role",
                                 "partner_member", "--partner", "Hooli"], env=env)
    assert failed.exit_code != 0 and "No partner named" in failed.output


# --------------------------------------------------------------------------- API isolation


@pytest.fixture
def globex_key(make, world):
    return make.token(world.paula, name="Globex key", scopes=PARTNER_SCOPES, permissions=["read", "write"])


def test_documents_list_and_filters_show_only_the_partners_documents(client, world, globex_key):
    secret = globex_key.secret
    assert titles(api(client, secret, "/documents")) == {"Globex brief", "Globex notes"}
    assert api(client, secret, "/documents").get_json()["total"] == 2
    assert titles(api(client, secret, "/documents?q=brief")) == {"Globex brief"}
    assert titles(api(client, secret, f"/documents?project_id={world.website}")) == {"Globex brief"}
    assert titles(api(client, secret, "/documents?status=draft")) == {"Globex brief", "Globex notes"}
    assert titles(api(client, secret, "/documents?q=staff")) == set()


def test_reading_another_partners_or_staff_document_is_not_found(client, world, globex_key):
    secret = globex_key.secret
    assert api(client, secret, f"/documents/{world.docs['Globex brief']}").get_json()["title"] == "Globex brief"
    for title in ("Staff plan", "Staff memo", "Initech brief", "Foreign doc"):
        response = api(client, secret, f"/documents/{world.docs[title]}")
        assert response.status_code == 404 and error_code(response) == "not_found", title


def test_changing_another_partners_or_staff_document_is_not_found(client, make, world, globex_key):
    secret = globex_key.secret
    for title in ("Staff plan", "Initech brief", "Foreign doc"):
        response = api(client, secret, f"/documents/{world.docs[title]}", "PATCH", json={"title": "Mine now"})
        assert response.status_code == 404, title
    ok = api(client, secret, f"/documents/{world.docs['Globex notes']}", "PATCH", json={"title": "Globex notes v2"})
    assert ok.status_code == 200 and ok.get_json()["title"] == "Globex notes v2"
    staff_key = make.token(world.owner, scopes=["documents"], permissions=["read"])
    assert titles(api(client, staff_key.secret, "/documents")) >= {"Staff plan", "Initech brief", "Globex notes v2"}


def test_partner_roles_never_delete_documents(client, make, world, globex_key):
    response = api(client, globex_key.secret, f"/documents/{world.docs['Globex brief']}", "DELETE")
    assert response.status_code == 403 and error_code(response) == "insufficient_permission"
    response = api(client, globex_key.secret, f"/documents/{world.docs['Staff plan']}", "DELETE")
    assert response.status_code == 403
    assert api(client, globex_key.secret, f"/documents/{world.docs['Globex brief']}").status_code == 200


def test_documents_a_partner_creates_belong_to_the_partner(client, make, world, globex_key):
    response = api(client, globex_key.secret, "/documents", "POST", json={"title": "From Globex"})
    assert response.status_code == 201 and response.get_json()["partner_id"] == world.globex
    assert "From Globex" in titles(api(client, globex_key.secret, "/documents"))
    initech_key = make.token(world.ian, scopes=["documents"], permissions=["read"])
    assert "From Globex" not in titles(api(client, initech_key.secret, "/documents"))
    reader = make.token(world.pat, scopes=["documents"], permissions=["read"])
    assert "From Globex" in titles(api(client, reader.secret, "/documents"))  # same partner
    refused = api(client, reader.secret, "/documents", "POST", json={"title": "Read only"})
    assert refused.status_code == 403 and error_code(refused) == "insufficient_permission"


def test_export_holds_only_the_partners_documents(client, world, globex_key):
    response = api(client, globex_key.secret, f"/export/all/{world.org.id}")
    assert response.status_code == 200
    lines = [json.loads(line) for line in html(response).splitlines() if line]
    assert {line["title"] for line in lines} == {"Globex brief", "Globex notes"}
    filtered = api(client, globex_key.secret, f"/export/all/{world.org.id}?q=notes")
    assert [json.loads(line)["title"] for line in html(filtered).splitlines()] == ["Globex notes"]
    assert api(client, globex_key.secret, f"/export/all/{world.other_org.id}").status_code == 404


def test_projects_and_templates_are_only_the_organizations(client, world, globex_key):
    secret = globex_key.secret
    projects = api(client, secret, "/projects").get_json()["items"]
    assert [p["name"] for p in projects] == ["Website"]
    assert api(client, secret, f"/organizations/{world.org.id}/projects").status_code == 200
    assert api(client, secret, f"/organizations/{world.other_org.id}/projects").status_code == 404
    templates = api(client, secret, "/templates").get_json()["items"]
    assert [t["name"] for t in templates] == ["Invoice"]


def test_analytics_counts_only_the_partner_users_own_tokens(client, make, world, globex_key):
    others = [make.token(world.pat, scopes=["analytics"]), make.token(world.ian, scopes=["analytics"]),
              make.token(world.owner, scopes=["analytics"])]
    for issued in others:
        api(client, issued.secret, "/analytics/usage")
    items = api(client, globex_key.secret, "/analytics/usage").get_json()["items"]
    assert [item["token_id"] for item in items] == [globex_key.id]


def test_billing_is_closed_to_partner_tokens(client, world, globex_key):
    response = api(client, globex_key.secret, "/billing")
    assert response.status_code == 403 and error_code(response) == "insufficient_scope"


def test_token_api_shows_a_partner_only_their_own_tokens(client, make, world, globex_key):
    teammate = make.token(world.pat)
    staff = make.token(world.owner)
    other = make.token(world.ian)
    listed = api(client, globex_key.secret, "/tokens").get_json()["items"]
    assert [item["id"] for item in listed] == [globex_key.id]
    for hidden in (teammate, staff, other):
        assert api(client, globex_key.secret, f"/tokens/{hidden.id}").status_code == 404
        for action in ("deactivate", "regenerate"):
            assert api(client, globex_key.secret, f"/tokens/{hidden.id}/{action}", "POST").status_code == 404
        assert api(client, globex_key.secret, f"/tokens/{hidden.id}", "PATCH", json={"name": "x"}).status_code == 404
        assert me_status(client, hidden.secret) == 200


def test_removal_through_the_services_stops_partner_tokens_on_the_next_request(client, make, world, globex_key):
    from shared.core.extensions import db
    from shared.identity import accounts
    from shared.models import Membership, Partner
    from shared.orgs import partners

    pat_key = make.token(world.pat)
    ian_key = make.token(world.ian)
    assert me_status(client, globex_key.secret) == 200
    make.run(lambda: accounts.remove_member(db.session.get(Membership, world.paula.id)))
    assert error_code(api(client, globex_key.secret, "/documents")) == "invalid_api_key"
    assert me_status(client, pat_key.secret) == 200
    make.run(lambda: partners.dissolve_partner(db.session.get(Partner, world.globex)))
    assert error_code(api(client, pat_key.secret, "/documents")) == "invalid_api_key"
    assert me_status(client, ian_key.secret) == 200


def test_a_removed_partner_alone_stops_tokens_even_if_memberships_stay(client, make, world, globex_key):
    """Membership.is_live refuses a removed partner, whatever set `removed_at` on it."""
    from shared.core import clock
    from shared.core.extensions import db
    from shared.models import Partner

    def remove_partner_row_only():
        db.session.get(Partner, world.globex).removed_at = clock.now()
        db.session.commit()

    make.run(remove_partner_row_only)
    assert error_code(api(client, globex_key.secret, "/me")) == "invalid_api_key"
