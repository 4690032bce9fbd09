"""Sign in and sign out: argon2id, rehash, server-side sessions, no fixation, throttled failures."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from tests.conftest import csrf_from, login


def test_sign_in_with_email_and_password(client, make):
    member = make.member(make.org(), "editor")
    response = login(client, member.email.upper(), member.password)
    assert response.status_code == 302
    assert client.get("/", follow_redirects=False).status_code in (200, 302)


def test_login_page_has_labelled_fields(client):
    html = client.get("/login").get_data(as_text=True)
    assert '<label for="email">Email</label>' in html
    assert '<label for="password">Password</label>' in html
    assert ">Sign in</button>" in html


def test_wrong_password_is_refused_without_revealing_which_part(client, make):
    member = make.member(make.org(), "editor")
    wrong = login(client, member.email, "nope nope nope")
    unknown = login(client, "nobody@example.test", "nope nope nope")
    assert wrong.status_code == unknown.status_code == 401
    assert "Incorrect email or password" in wrong.get_data(as_text=True)
    assert "Incorrect email or password" in unknown.get_data(as_text=True)


def test_login_without_csrf_is_refused(client, make):
    member = make.member(make.org(), "editor")
    response = client.post("/login", data={"email": member.email, "password": member.password})
    assert response.status_code == 400


def test_password_is_rehashed_when_parameters_change(client, make, app):
    member = make.member(make.org(), "editor")

    def weaken():
        from shared.core.extensions import db
        from shared.models import User

        user = db.session.get(User, member.user_id)
        user.password_hash = PasswordHasher(time_cost=1, memory_cost=8192).hash(member.password)
        db.session.commit()
        return user.password_hash

    weak = make.run(weaken)
    assert login(client, member).status_code == 302

    def stored():
        from shared.core.extensions import db
        from shared.models import User

        return db.session.get(User, member.user_id).password_hash

    new_hash = make.run(stored)
    assert new_hash != weak and new_hash.startswith("$argon2id$")
    assert not PasswordHasher().check_needs_rehash(new_hash)


def test_sign_out_ends_the_session_on_the_server(client, app, make):
    member = make.member(make.org(), "editor")
    login(client, member)
    cookie = client.get_cookie("session")
    assert cookie is not None
    page = client.get("/no-organization")  # any signed-in page with a form carries a CSRF token
    token = csrf_from(client.get("/login").get_data(as_text=True)) if page.status_code != 200 else csrf_from(
        page.get_data(as_text=True))
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    replay = app.test_client()
    replay.set_cookie("session", cookie.value)
    response = replay.get("/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_removal_and_new_password_end_sessions(client, app, make, runner):
    member = make.member(make.org(), "editor")
    login(client, member)
    assert client.get("/").status_code in (200, 302)
    assert "/login" not in client.get("/").headers.get("Location", "")

    def new_password():
        from shared.core.extensions import db
        from shared.identity import accounts
        from shared.models import User

        accounts.set_password(db.session.get(User, member.user_id), "another long password")

    make.run(new_password)
    response = client.get("/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_session_cookie_changes_on_sign_in(client, make):
    member = make.member(make.org(), "editor")
    client.get("/login")
    before = client.get_cookie("session")
    login(client, member)
    after = client.get_cookie("session")
    assert after is not None and (before is None or before.value != after.value)


def test_failed_logins_are_throttled(app_with, make):
    from tests.conftest import Factory

    app = app_with(KEYWARD_LOGIN_FAILURE_LIMIT="3/minute")
    factory = Factory(app)
    member = factory.member(factory.org(), "editor")
    client = app.test_client()
    for _ in range(3):
        assert login(client, member.email, "wrong password!").status_code == 401
    assert login(client, member.email, member.password).status_code == 429


def test_open_redirect_is_refused(client, make):
    member = make.member(make.org(), "editor")
    page = client.get("/login?next=https://evil.example/")
    response = client.post("/login?next=https://evil.example/", data={
        "email": member.email, "password": member.password, "csrf_token": csrf_from(page.get_data(as_text=True))})
    assert response.status_code == 302
    assert "evil.example" not in response.headers["Location"]


@pytest.fixture
def window_start(monkeypatch):
    """Rate-limit windows are aligned to the wall clock: hold it 30 s into a 10-minute window (and so
    into a minute), so no window ends in the middle of a test."""
    from shared.core import ratelimits

    monkeypatch.setattr(ratelimits, "window_now", lambda: 1_800_000_030.0)


def _sign_in_from(client, address: str, email: str, password: str):
    page = client.get("/login", environ_base={"REMOTE_ADDR": address})
    return client.post("/login", environ_base={"REMOTE_ADDR": address}, data={
        "email": email, "password": password, "csrf_token": csrf_from(page.get_data(as_text=True))})


def test_sign_in_is_throttled_per_account_whatever_the_address(client, make, window_start):
    """40 wrong passwords from 40 addresses, then the right one: the account is throttled (with the
    default limits: 10 failures per address a minute, 20 per account in 10 minutes)."""
    member = make.member(make.org(), "editor")
    statuses = [_sign_in_from(client, f"198.51.100.{n}", member.email, "wrong password!").status_code
                for n in range(40)]
    assert statuses == [401] * 20 + [429] * 20
    refused = _sign_in_from(client, "203.0.113.7", member.email, member.password)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "570"  # the rest of the 10-minute window
    assert "Too many failed sign-ins" in refused.get_data(as_text=True)
    # Another account is not affected, and neither is the same address for it.
    other = make.member(make.org(), "editor")
    assert _sign_in_from(client, "203.0.113.7", other.email, other.password).status_code == 302


def test_an_unknown_email_is_throttled_like_a_real_one(app_with, window_start):
    from tests.conftest import Factory

    app = app_with(KEYWARD_LOGIN_ACCOUNT_FAILURE_LIMIT="3/minute")
    factory = Factory(app)
    member = factory.member(factory.org(), "editor")
    client = app.test_client()
    for email in (member.email, "nobody@example.test"):
        statuses = [_sign_in_from(client, f"198.51.100.{n}", email, "wrong password!").status_code
                    for n in range(4)]
        assert statuses == [401, 401, 401, 429], email


def test_the_address_throttle_says_when_to_retry(app_with, window_start):
    from tests.conftest import Factory

    app = app_with(KEYWARD_LOGIN_FAILURE_LIMIT="3/minute")
    factory = Factory(app)
    member = factory.member(factory.org(), "editor")
    client = app.test_client()
    for n in range(3):
        failed = _sign_in_from(client, "198.51.100.1", f"someone{n}@example.test", "wrong!!!")
        assert failed.status_code == 401
    refused = _sign_in_from(client, "198.51.100.1", member.email, member.password)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "30"


@pytest.mark.parametrize(("email", "password"), [("", "a long enough password"), ("someone@example.test", ""),
                                                 ("a" * 250 + "@x.test", "a long enough password")])
def test_an_incomplete_sign_in_form_is_shown_again_with_400(client, make, email, password):
    make.member(make.org(), "editor", email="someone@example.test")
    page = client.get("/login")
    response = client.post("/login", data={"email": email, "password": password,
                                           "csrf_token": csrf_from(page.get_data(as_text=True))})
    assert response.status_code == 400
    assert '<p class="field-error">' in response.get_data(as_text=True)
    assert "Incorrect email or password" not in response.get_data(as_text=True)
    assert "/login" in client.get("/").headers["Location"]  # not signed in


def test_signing_out_when_signed_out_just_says_so(client):
    token = csrf_from(client.get("/login").get_data(as_text=True))
    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert "You are signed out." in client.get("/login").get_data(as_text=True)


@pytest.mark.parametrize(("referrer", "returns_to"), [
    (None, None),
    ("https://evil.example/settings/members?tab=1", None),
    ("http://localhost/settings/members?tab=1", "/settings/members?tab=1"),
])
def test_a_signed_out_form_post_returns_only_to_a_page_of_this_site(client, referrer, returns_to):
    """A form posted after the session ended goes to sign-in, and afterwards back to the page it came
    from (its Referer) when that page is on this site; another site's address is never kept."""
    from urllib.parse import parse_qs, urlsplit

    token = csrf_from(client.get("/login").get_data(as_text=True))
    headers = {"Referer": referrer} if referrer else {}
    response = client.post("/settings/members", data={"csrf_token": token, "email": "x@example.test",
                                                      "role": "viewer"}, headers=headers)
    assert response.status_code == 302
    target = urlsplit(response.headers["Location"])
    assert target.path == "/login"
    assert parse_qs(target.query).get("next") == ([returns_to] if returns_to else None)


def test_an_options_request_is_answered_without_signing_in(client):
    """OPTIONS (a CORS preflight) carries no cookie: the guard lets it through, as flask-login's
    login_required does, and the answer is only the allowed methods."""
    response = client.options("/settings/members")
    assert response.status_code == 200
    assert {"GET", "POST"} <= set(response.headers["Allow"].split(", "))
    assert response.get_data() == b""


def test_a_signed_in_page_during_a_database_outage_is_the_plain_503_page(app_with, database_url, tmp_path):
    """Flask-Login's template context asks the database for the signed-in user again while the error
    page renders: the page is shown as to a visitor (no navigation) instead of failing a second time."""
    import shutil

    from tests.conftest import TEST_DATABASE_URL, Factory

    if TEST_DATABASE_URL:
        pytest.skip("an SQLite outage; the PostgreSQL one is in tests/test_faults.py")
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(database_url.removeprefix("sqlite:///"), folder / "keyward.db")
    app = app_with(SQLALCHEMY_DATABASE_URI=f"sqlite:///{folder / 'keyward.db'}")
    factory = Factory(app)
    member = factory.member(factory.org(), "editor")
    client = app.test_client()
    assert login(client, member).status_code == 302

    def close_connections():
        from shared.core.extensions import db

        db.session.remove()
        db.engine.dispose()

    folder.rename(tmp_path / "away")
    factory.run(close_connections)
    try:
        page = client.get("/settings/api-tokens")
    finally:
        (tmp_path / "away").rename(folder)
    body = page.get_data(as_text=True)
    assert page.status_code == 503 and "temporarily unavailable" in body
    assert 'class="bare"' in body and "topbar" not in body
    assert client.get("/settings/api-tokens").status_code == 200  # the session survived
