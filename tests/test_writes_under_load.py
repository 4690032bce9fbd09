"""Writes that follow a read (sign-in, a new member, a new password) succeed while other
connections write continuously: no password is hashed inside a transaction, and every such write
starts as a write (BEGIN IMMEDIATE on SQLite), so it waits for its turn instead of failing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text

from tests.conftest import csrf_from


@contextmanager
def continuous_writes(database_url: str, organization_id: int) -> Iterator[list[int]]:
    """Another connection commits one small write after another until the block ends, as an
    integration's traffic does."""
    engine = create_engine(database_url)
    stop = threading.Event()
    done = [0]
    failures: list[BaseException] = []

    def write() -> None:
        try:
            while not stop.is_set():
                with engine.begin() as connection:
                    connection.execute(text("UPDATE organizations SET credit_balance = credit_balance + 1 "
                                            "WHERE id = :id"), {"id": organization_id})
                done[0] += 1
        except BaseException as error:  # reported below: a writer that died proves nothing
            failures.append(error)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    try:
        yield done
    finally:
        stop.set()
        thread.join(timeout=30)
        engine.dispose()
    assert not failures, failures


def test_sign_ins_succeed_while_another_connection_writes(app, client, make, database_url):
    member = make.member(make.org(), "editor")
    statuses = []
    with continuous_writes(database_url, member.org.id) as writes:
        for _ in range(8):
            page = client.get("/login")
            response = client.post("/login", data={"email": member.email, "password": member.password,
                                                   "csrf_token": csrf_from(page.get_data(as_text=True))})
            statuses.append(response.status_code)
            signed_out = csrf_from(client.get("/login").get_data(as_text=True))
            client.post("/logout", data={"csrf_token": signed_out})
    assert writes[0] > 8, "the other connection did not write meanwhile"
    assert statuses == [302] * 8


def test_new_members_and_new_passwords_are_saved_while_another_connection_writes(app, make, database_url):
    from shared.core.extensions import db
    from shared.identity import accounts
    from shared.models import User
    from shared.orgs import organizations

    org = make.org()
    with continuous_writes(database_url, org.id) as writes, app.app_context():
        for n in range(4):
            membership = accounts.add_member(organizations.get_organization(org.slug), f"new{n}@example.test",
                                             "editor", password="a long enough password")
            user_id = membership.user_id
            accounts.set_password(db.session.get(User, user_id), "another long password")
        db.session.remove()
    assert writes[0] > 4
    assert len(make.rows(User)) == 4


def test_invitations_are_accepted_while_another_connection_writes(app, make, database_url):
    from shared.core.extensions import db
    from shared.identity import invitations
    from shared.models import Membership
    from shared.orgs import organizations

    org = make.org()
    with app.test_request_context():
        links = [invitations.invite_as_operator(organizations.get_organization(org.slug),
                                                f"invited{n}@example.test", "editor").link for n in range(4)]
        db.session.remove()
    with continuous_writes(database_url, org.id) as writes, app.test_request_context():
        for link in links:
            invitations.accept_as_new_user(link.rsplit("/", 1)[1], "Invited", "a long enough password")
        db.session.remove()
    assert writes[0] > 4
    assert len(make.rows(Membership, organization_id=org.id)) == 4
