"""Members join by invitation: nobody chooses another person's password, nobody joins without
saying yes, the invite form says nothing about other organizations' accounts, and removal ends
access to that organization only."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from tests.conftest import Factory, csrf_from, login

MEMBERS = "/settings/members"
PARTNERS = "/settings/partners"
LINK = re.compile(r"data-invitation-link>([^<]+)<")


def html(response) -> str:
    return response.get_data(as_text=True)


def csrf(client, url: str = MEMBERS) -> str:
    return csrf_from(html(client.get(url)))


def link_in(response) -> str:
    match = LINK.search(html(response))
    assert match, "no invitation link on the page:\n" + html(response)[:3000]
    return match.group(1)


def path_of(link: str) -> str:
    return urlsplit(link).path


def invite(client, email: str, role: str = "editor", **extra):
    return client.post(MEMBERS, data={"csrf_token": csrf(client), "email": email, "role": role, **extra})


def accept_new(client, link: str, name: str = "New Person", password: str = "a long enough password"):
    page = client.get(path_of(link))
    return client.post(path_of(link), data={"csrf_token": csrf_from(html(page)), "name": name,
                                            "password": password})


def accept_signed_in(client, link: str):
    page = client.get(path_of(link))
    return client.post(path_of(link), data={"csrf_token": csrf_from(html(page))})


def memberships_of(make, email: str) -> list:
    from shared.models import Membership, User

    users = make.rows(User, email=email)
    return [m for user in users for m in make.rows(Membership, user_id=user.id) if m.removed_at is None]


@pytest.fixture
def acme(make):
    return make.org("business", name="Acme")


@pytest.fixture
def owner(make, acme):
    return make.member(acme, "owner", email="olivia@acme.test")


# --------------------------------------------------------------------------- the red team's findings


def test_another_orgs_owner_cannot_pre_hijack_an_account(app, make, acme, owner):
    """Org B's owner 'adds' cfo@acme.test with a password of their choosing; Acme later adds the same
    email as admin. Before invitations the account was linked and Org B's owner signed in to Acme."""
    org_b = make.org("business", name="Org B")
    b_owner = make.member(org_b, "owner", email="mallory@orgb.test")
    attacker, victim_org = app.test_client(), app.test_client()
    login(attacker, b_owner)
    invite(attacker, "cfo@acme.test", "editor", display_name="CFO", password="mallory's choice")
    login(victim_org, owner)
    invite(victim_org, "cfo@acme.test", "admin")

    attacker.post("/logout", data={"csrf_token": csrf(attacker)})
    assert login(attacker, "cfo@acme.test", "mallory's choice").status_code == 401
    assert memberships_of(make, "cfo@acme.test") == []


def test_a_link_shown_to_one_org_never_opens_another(app, make, acme, owner):
    """Even holding Org B's link for cfo@acme.test (and so choosing the account's password), Org B's
    owner gains only Org B: Acme's invitation needs Acme's own link."""
    org_b = make.org("business", name="Org B")
    attacker = app.test_client()
    login(attacker, make.member(org_b, "owner"))
    hijack_link = link_in(invite(attacker, "cfo@acme.test", "viewer"))
    attacker.post("/logout", data={"csrf_token": csrf(attacker)})
    assert accept_new(attacker, hijack_link, "CFO", "mallory's choice").status_code == 302

    acme_admin = app.test_client()
    login(acme_admin, owner)
    acme_link = link_in(invite(acme_admin, "cfo@acme.test", "admin"))
    assert [m.organization_id for m in memberships_of(make, "cfo@acme.test")] == [org_b.id]
    # Signed in as the account, the attacker cannot make themselves Acme's admin without Acme's link.
    assert attacker.get(MEMBERS).status_code == 403
    assert attacker.post("/switch-organization", data={"csrf_token": csrf(attacker, "/"),
                                                       "organization_id": acme.id}).status_code == 302
    assert "Acme" not in html(attacker.get("/"))
    assert path_of(acme_link) != path_of(hijack_link)


def test_an_existing_account_joins_only_by_accepting(app, make, acme, owner, runner):
    elsewhere = make.org("business", name="Elsewhere")
    bob = make.member(elsewhere, "editor", email="bob@example.test")
    admin = app.test_client()
    login(admin, owner)
    link = link_in(invite(admin, bob.email, "maintainer"))

    # Not a member until he says yes: nothing can be made for him in Acme.
    assert [m.organization_id for m in memberships_of(make, bob.email)] == [elsewhere.id]
    made = runner.invoke(args=["tokens", "create", "--org", acme.slug, "--user", bob.email, "--name", "x",
                               "--scopes", "documents", "--permissions", "read"])
    assert made.exit_code != 0
    assert bob.email not in html(admin.get(MEMBERS)).split("Pending invitations")[0]

    browser = app.test_client()
    page = browser.get(path_of(link))
    assert page.status_code == 200 and "Sign in to accept" in html(page)
    refused = browser.post(path_of(link), data={"csrf_token": csrf(browser, "/login"), "name": "Bob",
                                                "password": "bob's new password"})
    assert refused.status_code == 403  # an account exists: no password can be set for it here
    login(browser, bob)
    accepted = accept_signed_in(browser, link)
    assert accepted.status_code == 302
    joined = sorted(m.organization_id for m in memberships_of(make, bob.email))
    assert joined == sorted([elsewhere.id, acme.id])
    assert "Welcome to Acme" in html(browser.get(accepted.headers["Location"], follow_redirects=True))
    assert login(app.test_client(), bob.email, bob.password).status_code == 302  # his password is his


def test_the_invite_form_answers_the_same_whether_or_not_the_email_has_an_account(app, make, acme, owner,
                                                                                    clock):
    # The clock stands still: each answer shows its link's expiry to the minute, and two requests
    # either side of a minute's turn would differ for that reason alone. (CSRF tokens are signed
    # with real time, to the second: they are left out below.)
    make.member(make.org(name="Elsewhere"), "editor", email="known@example.test")
    client = app.test_client()
    login(client, owner)
    answers = []
    for email in ("known@example.test", "unknown@example.test"):
        response = invite(client, email, "editor")
        text = html(response).split('id="pending-title"')[0]  # the answer: what was issued, the form
        match = LINK.search(text)
        text = text.replace(email, "EMAIL").replace(match.group(1) if match else "", "LINK")
        # CSRF tokens carry the second they were signed in, in the form and in <body>'s hx-headers.
        text = re.sub(r'name="csrf_token" value="[^"]+"|"X-CSRFToken": "[^"]+"', "", text)
        answers.append((response.status_code, text))
    assert answers[0] == answers[1]
    assert answers[0][0] == 200 and "LINK" in answers[0][1]
    assert "Required for a new user" not in answers[0][1]


def test_removal_ends_access_to_that_organization_only(app, make, acme, owner):
    globex = make.org("business", name="Globex")
    pat = make.member(acme, "editor", email="pat@example.test")
    make.member(globex, "editor", email="pat@example.test")
    browser = app.test_client()
    login(browser, pat)
    browser.post("/switch-organization", data={"csrf_token": csrf(browser, "/settings/api-tokens"),
                                               "organization_id": acme.id})
    assert "Acme" in html(browser.get("/settings/api-tokens"))

    admin = app.test_client()
    login(admin, owner)
    assert admin.post(f"{MEMBERS}/{pat.id}/remove", data={"csrf_token": csrf(admin)}).status_code == 302

    page = browser.get("/settings/api-tokens")
    assert page.status_code == 200, "removal from Acme signed Pat out of Globex too"
    assert "Globex" in html(page) and 'id="org-switcher"' not in html(page)


# --------------------------------------------------------------------------- the invitation's life


def test_a_new_person_accepts_with_their_own_name_and_password(app, make, acme, owner):
    from shared.models import Invitation, User

    admin = app.test_client()
    login(admin, owner)
    response = invite(admin, "New.Person@Example.test", "maintainer")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    assert "Email is not set up" in html(response)
    link = link_in(response)
    secret = path_of(link).rsplit("/", 1)[1]
    assert re.fullmatch(r"[0-9a-f]{64}", secret)
    [invitation] = make.rows(Invitation)
    assert invitation.token_hash != secret and secret not in str(vars(invitation))
    assert "new.person@example.test" in html(admin.get(MEMBERS))  # listed as pending
    assert not make.rows(User, email="new.person@example.test")

    newcomer = app.test_client()
    page = newcomer.get(path_of(link))
    assert page.headers["Referrer-Policy"] == "no-referrer"
    for label in ('<label for="invite-name">Name</label>', '<label for="invite-password">Password</label>',
                  ">Accept invitation</button>"):
        assert label in html(page)
    too_short = newcomer.post(path_of(link), data={"csrf_token": csrf_from(html(page)), "name": "Nia",
                                                   "password": "short"})
    assert too_short.status_code == 422 and "At least 8 characters" in html(too_short)
    accepted = accept_new(newcomer, link, "Nia Newton", "nia's own password")
    assert accepted.status_code == 302
    assert newcomer.get("/settings/api-tokens").status_code == 200  # signed in, working in Acme
    [membership] = memberships_of(make, "new.person@example.test")
    assert (membership.organization_id, membership.role) == (acme.id, "maintainer")
    assert login(app.test_client(), "new.person@example.test", "nia's own password").status_code == 302

    invited, = make.audit("member.invited")
    joined, = make.audit("invitation.accepted")
    assert invited.actor_user_id == owner.user_id and invited.details["email"] == "new.person@example.test"
    assert joined.actor_user_id == membership.user_id and joined.details["new_account"] is True
    for event in (invited, joined):
        assert secret not in str(event.details) and invitation.token_hash not in str(event.details)

    again = app.test_client().get(path_of(link))  # single use
    assert again.status_code == 404 and "does not work" in html(again)
    assert "new.person@example.test" not in html(admin.get(MEMBERS)).split("<table")[0]


def test_a_link_expires_after_seven_days(app, make, acme, owner, clock):
    admin = app.test_client()
    login(admin, owner)
    link = link_in(invite(admin, "late@example.test"))
    clock.advance(days=7, seconds=-1)
    assert app.test_client().get(path_of(link)).status_code == 200
    clock.advance(seconds=2)
    assert app.test_client().get(path_of(link)).status_code == 404
    late = app.test_client()
    assert late.post(path_of(link), data={"csrf_token": csrf(late, "/login"), "name": "Late",
                                          "password": "a long enough password"}).status_code == 404
    assert "Expired" in html(admin.get(MEMBERS))


def test_resend_replaces_the_link_and_revoke_ends_it(app, make, acme, owner, clock):
    from shared.models import Invitation

    admin = app.test_client()
    login(admin, owner)
    first = link_in(invite(admin, "rene@example.test"))
    [invitation] = make.rows(Invitation)
    clock.advance(days=6)
    resent = admin.post(f"{MEMBERS}/invitations/{invitation.id}/resend", data={"csrf_token": csrf(admin)})
    assert resent.status_code == 200
    second = link_in(resent)
    assert second != first
    assert app.test_client().get(path_of(first)).status_code == 404
    clock.advance(days=6)  # a new 7-day window from the resend
    assert app.test_client().get(path_of(second)).status_code == 200
    assert make.audit("member.invited")[-1].details["resent"] is True

    revoked = admin.post(f"{MEMBERS}/invitations/{invitation.id}/revoke", data={"csrf_token": csrf(admin)})
    assert revoked.status_code == 302
    assert "Revoked the invitation for rene@example.test" in html(admin.get(MEMBERS))
    assert app.test_client().get(path_of(second)).status_code == 404
    assert make.audit("invitation.revoked")[-1].actor_user_id == owner.user_id
    assert admin.post(f"{MEMBERS}/invitations/{invitation.id}/revoke",
                      data={"csrf_token": csrf(admin)}).status_code == 404


def test_inviting_again_replaces_the_pending_invitation(app, make, acme, owner):
    admin = app.test_client()
    login(admin, owner)
    first = link_in(invite(admin, "twice@example.test", "viewer"))
    second = link_in(invite(admin, "twice@example.test", "editor"))
    assert app.test_client().get(path_of(first)).status_code == 404
    assert accept_new(app.test_client(), second).status_code == 302
    [membership] = memberships_of(make, "twice@example.test")
    assert membership.role == "editor"


def test_a_member_cannot_be_invited_again_and_bad_input_is_shown(app, make, acme, owner):
    member = make.member(acme, "editor")
    admin = app.test_client()
    login(admin, owner)
    again = invite(admin, member.email)
    assert again.status_code == 422 and "Already a member of this organization" in html(again)
    bad = invite(admin, "not-an-email")
    assert bad.status_code == 422 and "Enter a valid email address" in html(bad)
    assert 'value="not-an-email"' in html(bad)
    assert not make.audit("member.invited")


def test_admins_cannot_invite_or_handle_invitations_beyond_their_role(app, make, acme, owner):
    from shared.models import Invitation

    admin = make.member(acme, "admin")
    owner_client, admin_client = app.test_client(), app.test_client()
    login(owner_client, owner)
    invite(owner_client, "co-owner@example.test", "owner")
    [invitation] = make.rows(Invitation)
    login(admin_client, admin)
    assert invite(admin_client, "boss@example.test", "owner").status_code == 422
    for action in ("resend", "revoke"):
        assert admin_client.post(f"{MEMBERS}/invitations/{invitation.id}/{action}",
                                 data={"csrf_token": csrf(admin_client)}).status_code == 403
    editor = make.member(acme, "editor")
    editor_client = app.test_client()
    login(editor_client, editor)
    assert editor_client.post(MEMBERS, data={"csrf_token": csrf(editor_client, "/settings/api-tokens"),
                                             "email": "x@example.test", "role": "viewer"}).status_code == 403


def test_another_orgs_invitation_is_not_found(app, make, acme, owner):
    from shared.models import Invitation

    other = make.org(name="Other")
    other_client = app.test_client()
    login(other_client, make.member(other, "owner"))
    invite(other_client, "theirs@example.test")
    [theirs] = make.rows(Invitation)
    admin = app.test_client()
    login(admin, owner)
    for action in ("resend", "revoke"):
        assert admin.post(f"{MEMBERS}/invitations/{theirs.id}/{action}",
                          data={"csrf_token": csrf(admin)}).status_code == 404
    assert "theirs@example.test" not in html(admin.get(MEMBERS))


def test_signed_in_as_another_account_the_invitation_cannot_be_accepted(app, make, acme, owner):
    someone = make.member(make.org(name="Elsewhere"), "editor")
    target = make.member(make.org(name="Third"), "editor")
    admin = app.test_client()
    login(admin, owner)
    link = link_in(invite(admin, target.email))
    browser = app.test_client()
    login(browser, someone)
    page = browser.get(path_of(link))
    assert f"you are signed in as {someone.email}" in html(page)
    assert browser.post(path_of(link), data={"csrf_token": csrf_from(html(page))}).status_code == 403
    assert acme.id not in [m.organization_id for m in memberships_of(make, target.email)]
    assert acme.id not in [m.organization_id for m in memberships_of(make, someone.email)]


def test_a_partner_user_is_invited_from_the_partners_page_and_lands_in_the_hub(app, make, acme, owner):
    from shared.models import Invitation

    globex = make.partner(acme, "Globex")
    admin = app.test_client()
    login(admin, owner)
    url = f"{PARTNERS}/{globex}/users"
    wrong = admin.post(url, data={"csrf_token": csrf(admin, PARTNERS), "email": "paula@globex.test",
                                  "role": "editor"})
    assert wrong.status_code == 422 and "Choose Partner admin or Partner member" in html(wrong)
    response = admin.post(url, data={"csrf_token": csrf(admin, PARTNERS), "email": "paula@globex.test",
                                     "role": "partner_admin"})
    assert response.status_code == 200
    link = link_in(response)
    page = html(admin.get(PARTNERS))
    assert "Pending invitations for Globex" in page and "paula@globex.test" in page
    [invitation] = make.rows(Invitation)
    assert invitation.partner_id == globex and invitation.role == "partner_admin"

    paula = app.test_client()
    accepted = accept_new(paula, link, "Paula", "paula's password")
    assert accepted.status_code == 302 and accepted.headers["Location"] == "/hub/api-tokens"
    assert "Partner hub · Globex" in html(paula.get("/hub/api-tokens"))


def test_removing_a_partner_voids_its_pending_invitations(app, make, acme, owner):
    globex = make.partner(acme, "Globex")
    admin = app.test_client()
    login(admin, owner)
    link = link_in(admin.post(f"{PARTNERS}/{globex}/users", data={
        "csrf_token": csrf(admin, PARTNERS), "email": "pat@globex.test", "role": "partner_member"}))
    admin.post(f"{PARTNERS}/{globex}/remove", data={"csrf_token": csrf(admin, PARTNERS)})
    assert app.test_client().get(path_of(link)).status_code == 404


def test_every_invitation_change_needs_the_csrf_token(app, make, acme, owner):
    from shared.models import Invitation

    admin = app.test_client()
    login(admin, owner)
    link = link_in(invite(admin, "csrf@example.test"))
    [invitation] = make.rows(Invitation)
    for url in (MEMBERS, f"{MEMBERS}/invitations/{invitation.id}/resend",
                f"{MEMBERS}/invitations/{invitation.id}/revoke"):
        assert admin.post(url, data={"email": "x@example.test", "role": "viewer"}).status_code == 400, url
    forged = app.test_client().post(path_of(link), data={"name": "X", "password": "long enough"})
    assert forged.status_code == 400
    assert len(make.rows(Invitation)) == 1


# --------------------------------------------------------------------------- email and the command line


def test_the_link_is_emailed_when_email_is_on(app_with, smtp):
    app = app_with(KEYWARD_SMTP_URL=smtp.url, KEYWARD_BASE_URL="https://keyward.example")
    factory = Factory(app)
    org = factory.org(name="Acme")
    owner = factory.member(org, "owner")
    client = app.test_client()
    login(client, owner)
    response = invite(client, "mail@example.test", "editor")
    assert "We emailed this link to mail@example.test" in html(response)
    link = link_in(response)
    assert link.startswith("https://keyward.example/invite/")
    [message] = smtp.messages
    assert message["To"] == "mail@example.test" and "Acme" in message["Subject"]
    assert link in message.get_body(("plain",)).get_content()
    assert link in message.get_body(("html",)).get_content()


def test_a_failed_email_still_shows_the_link(app_with):
    from tests.conftest import free_port

    app = app_with(KEYWARD_SMTP_URL=f"smtp://127.0.0.1:{free_port()}")  # nobody listens there
    factory = Factory(app)
    owner = factory.member(factory.org(), "owner")
    client = app.test_client()
    login(client, owner)
    response = invite(client, "nomail@example.test")
    assert response.status_code == 200 and "The email could not be sent" in html(response)
    assert link_in(response)


def test_cli_invite_prints_a_working_link(app, runner, make, acme):
    globex = make.partner(acme, "Globex")
    result = runner.invoke(args=["users", "invite", "gina@globex.test", "--org", acme.slug, "--role",
                                 "partner_member", "--partner", "globex"])
    assert result.exit_code == 0, result.output
    link = result.output.strip()
    assert re.fullmatch(r"https?://[^/]+/invite/[0-9a-f]{64}", link)
    assert accept_new(app.test_client(), link, "Gina").status_code == 302
    [membership] = memberships_of(make, "gina@globex.test")
    assert (membership.partner_id, membership.role) == (globex, "partner_member")
    bad = runner.invoke(args=["users", "invite", "x@example.test", "--org", acme.slug, "--role", "emperor"])
    assert bad.exit_code != 0 and "Unknown role" in bad.output


# --------------------------------------------------------------------------- accepting: what is refused


def pending_emails(make) -> list[str]:
    from shared.models import Invitation

    return [i.email for i in make.rows(Invitation) if i.accepted_at is None and i.revoked_at is None]


@pytest.mark.parametrize(("name", "password", "field", "message"), [
    ("", "a long enough password", "name", "Enter your name (1–100 characters)"),
    ("   ", "a long enough password", "name", "Enter your name (1–100 characters)"),
    ("N" * 101, "a long enough password", "name", "Enter your name (1–100 characters)"),
    ("Nia\x07Newton", "a long enough password", "name", "Your name cannot contain control characters"),
    ("Nia Newton", "p" * 1025, "password", "At most 1024 characters"),
])
def test_the_accept_form_shows_what_is_wrong_and_joins_nobody(app, make, acme, owner, name, password, field,
                                                              message):
    from shared.models import User

    admin = app.test_client()
    login(admin, owner)
    link = link_in(invite(admin, "nia@example.test"))
    refused = accept_new(app.test_client(), link, name, password)
    assert refused.status_code == 422
    assert f'id="invite-{field}-error">{message}</p>' in html(refused)
    assert not make.rows(User, email="nia@example.test")
    assert pending_emails(make) == ["nia@example.test"]
    assert accept_new(app.test_client(), link, "Nia Newton", "p" * 1024).status_code == 302  # the limits


@pytest.mark.parametrize("secret", ["abc", "0" * 63, "0" * 65, "0" * 10_000])
def test_a_malformed_link_gets_the_same_page_as_a_used_one(app, secret):
    browser = app.test_client()
    page = browser.get(f"/invite/{secret}")
    assert page.status_code == 404 and "does not work" in html(page)
    posted = browser.post(f"/invite/{secret}", data={"csrf_token": csrf(browser, "/login"), "name": "X",
                                                    "password": "a long enough password"})
    assert posted.status_code == 404 and "does not work" in html(posted)


def test_accepting_as_a_member_already_changes_nothing(app, make, acme, owner, runner):
    """The operator added the invited account from the command line while the invitation waited."""
    from shared.models import Invitation

    bob = make.member(make.org(name="Elsewhere"), "editor", email="bob@example.test")
    admin = app.test_client()
    login(admin, owner)
    link = link_in(invite(admin, bob.email, "maintainer"))
    added = runner.invoke(args=["users", "create", bob.email, "--org", acme.slug, "--role", "viewer"])
    assert added.exit_code == 0, added.output

    browser = app.test_client()
    login(browser, bob)
    refused = accept_signed_in(browser, link)
    assert refused.status_code == 422 and "You are already a member of Acme" in html(refused)
    in_acme = [m for m in memberships_of(make, bob.email) if m.organization_id == acme.id]
    assert [m.role for m in in_acme] == ["viewer"]
    [invitation] = make.rows(Invitation)
    assert invitation.accepted_at is None and not make.audit("invitation.accepted")


def while_the_password_is_hashed(monkeypatch, action):
    """Run `action` (other requests) in the window a new person's acceptance leaves open on purpose:
    argon2 hashes their password outside any transaction, after the invitation was read."""
    from shared.identity import accounts

    original, waiting = accounts.hash_password, [action]

    def hash_then_race(password: str) -> str:
        hashed = original(password)
        while waiting:
            waiting.pop()()
        return hashed

    monkeypatch.setattr(accounts, "hash_password", hash_then_race)


@pytest.mark.parametrize("ending", ["revoked", "expired"])
def test_an_invitation_ending_while_a_new_person_accepts_it_joins_nobody(app, make, acme, owner, monkeypatch,
                                                                          clock, ending):
    from shared.models import Invitation, User

    admin = app.test_client()
    login(admin, owner)
    link = link_in(invite(admin, "slow@example.test"))
    [invitation] = make.rows(Invitation)
    clock.advance(days=7, seconds=-1)
    newcomer = app.test_client()
    page = newcomer.get(path_of(link))

    def end_it():
        if ending == "expired":
            clock.advance(seconds=1)
        else:
            assert admin.post(f"{MEMBERS}/invitations/{invitation.id}/revoke",
                              data={"csrf_token": csrf(admin)}).status_code == 302

    while_the_password_is_hashed(monkeypatch, end_it)
    late = newcomer.post(path_of(link), data={"csrf_token": csrf_from(html(page)), "name": "Slow",
                                              "password": "a long enough password"})
    assert late.status_code == 404 and "does not work" in html(late)
    assert not make.rows(User, email="slow@example.test")
    assert not make.audit("invitation.accepted")
    assert newcomer.get("/settings/api-tokens").status_code == 302  # not signed in as anybody


def test_two_invitations_accepted_at_once_make_one_account(app, make, acme, owner, monkeypatch):
    """Acme and Globex both invite a newcomer, who submits both links at the same moment: the second
    to finish finds the account the first created, and asks to sign in as it instead."""
    from shared.models import Invitation, User

    globex = make.org(name="Globex")
    acme_admin, globex_admin = app.test_client(), app.test_client()
    login(acme_admin, owner)
    login(globex_admin, make.member(globex, "owner"))
    acme_link = link_in(invite(acme_admin, "twin@example.test", "maintainer"))
    globex_link = link_in(invite(globex_admin, "twin@example.test", "viewer"))
    tab = app.test_client()
    page = tab.get(path_of(acme_link))

    def the_other_tab():
        assert accept_new(app.test_client(), globex_link, "Twin", "the globex password").status_code == 302

    while_the_password_is_hashed(monkeypatch, the_other_tab)
    second = tab.post(path_of(acme_link), data={"csrf_token": csrf_from(html(page)), "name": "Twin",
                                                "password": "the acme password"})
    assert second.status_code == 422
    assert "twin@example.test has a Keyward account: sign in as it to accept" in html(second)
    [user] = make.rows(User, email="twin@example.test")
    assert [m.organization_id for m in memberships_of(make, user.email)] == [globex.id]
    [acme_invitation] = make.rows(Invitation, organization_id=acme.id)
    assert acme_invitation.accepted_at is None and acme_invitation.revoked_at is None
    assert login(app.test_client(), user.email, "the acme password").status_code == 401
    # Signed in as the new account, the Acme link still works for it.
    login(tab, user.email, "the globex password")
    assert accept_signed_in(tab, acme_link).status_code == 302
    assert sorted(m.organization_id for m in memberships_of(make, user.email)) == sorted([acme.id, globex.id])
