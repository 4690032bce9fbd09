"""The unused-token policy (Insight): "Deactivate tokens unused for N days", applied by
the worker's sweep to the tokens past it only, exactly once, audited, evented and notified."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from tests.conftest import csrf_from, login


@pytest.fixture
def org(make):
    return make.org("business", name="Acme")


@pytest.fixture
def owner(make, org):
    return make.api_member(org, "owner")


def set_policy(make, org, days: int | None) -> None:
    from shared.core.extensions import db
    from shared.models import Organization

    def apply():
        db.session.execute(update(Organization).where(Organization.id == org.id)
                           .values(policy_deactivate_unused_days=days))
        db.session.commit()

    make.run(apply)


def sweep(make) -> None:
    from shared.worker import queue

    make.run(queue.sweep)


def rows(make, model, **where) -> list:
    from shared.core.extensions import db

    def query():
        statement = select(model).order_by(model.id)
        for name, value in where.items():
            statement = statement.where(getattr(model, name) == value)
        return list(db.session.scalars(statement))

    return make.run(query)


def active(make, issued) -> bool:
    return make.get_token(issued.id).is_active


def use(client, issued) -> None:
    assert client.get("/api/v1/me", headers=issued.headers).status_code == 200


def deactivate(client, manager, issued) -> None:
    assert client.post(f"/api/v1/tokens/{issued.id}/deactivate", headers=manager.headers).status_code == 200


@pytest.fixture
def manager(make, owner):
    return make.token(owner, name="Manager", scopes=["tokens", "documents"], permissions=["read", "write", "delete"],
                      expires_at=None)


def test_only_tokens_past_the_policy_are_deactivated(client, make, org, owner, manager, clock):
    from shared.core.extensions import db
    from shared.models import ApiToken

    editor = make.api_member(org, "editor")
    used_long_ago, used_lately, never_used, edited = (
        make.token(editor, name=name) for name in ("used long ago", "used lately", "never used", "edited"))
    canary, inactive, revoked = (make.token(editor, name=name) for name in ("canary", "inactive", "revoked"))
    make.run(lambda: (db.session.execute(update(ApiToken).where(ApiToken.public_id == canary.id)
                                         .values(is_canary=True)), db.session.commit()))
    deactivate(client, manager, inactive)
    assert client.delete(f"/api/v1/tokens/{revoked.id}", headers=manager.headers).status_code == 200
    other_org = make.org()
    elsewhere = make.token(make.api_member(other_org, "editor"), name="no policy there")
    clock.advance(days=10)
    use(client, used_long_ago)
    clock.advance(days=10)
    assert client.patch(f"/api/v1/tokens/{edited.id}", json={"description": "still needed"},
                        headers=manager.headers).status_code == 200
    clock.advance(days=5)
    use(client, used_lately)
    use(client, manager)
    clock.advance(days=20)  # day 45: 30 days ago is day 15
    set_policy(make, org, 30)
    audited_before = len(make.audit("token.deactivated"))

    sweep(make)

    deactivated = {a.target_id for a in make.audit("token.deactivated")[audited_before:]}
    assert deactivated == {used_long_ago.id, never_used.id}
    for kept in (used_lately, edited, manager, canary, elsewhere):
        assert active(make, kept), kept
    assert make.get_token(revoked.id).revoked_at is not None and active(make, revoked)  # untouched
    assert client.get("/api/v1/me", headers=used_long_ago.headers).json["error"]["code"] == "token_inactive"


def test_repeated_sweeps_deactivate_once_and_tell_once(client, make, org, owner, clock):
    from shared.models import Event, Notification

    issued = make.token(make.api_member(org, "editor"), name="Forgotten")
    set_policy(make, org, 30)
    clock.advance(days=31)

    for _ in range(3):
        sweep(make)
        clock.advance(minutes=1)

    assert not active(make, issued)
    audits = [a for a in make.audit("token.deactivated") if a.target_id == issued.id]
    assert len(audits) == 1
    assert audits[0].actor_user_id is None and audits[0].details["reason"] == "unused"
    assert audits[0].details["unused_days"] == 30 and audits[0].details["last_used_at"] is None
    token_id = make.get_token(issued.id).id
    events = rows(make, Event, type="token.deactivated", token_id=token_id)
    assert len(events) == 1 and events[0].data["reason"] == "unused"
    assert events[0].data["token"]["id"] == issued.id and events[0].data["token"]["is_active"] is False
    assert issued.secret not in str(events[0].data)
    assert len(rows(make, Notification, kind="deactivated_unused", token_id=token_id)) == 1


def test_concurrent_sweeps_deactivate_a_token_once(make, app, org, clock, monkeypatch):
    """Four sweeps that all found the same candidates before any deactivates: each token is
    deactivated by one, and the others, re-reading it under the lock, leave it alone."""
    import threading

    from shared.tokens import dormant

    tokens = [make.token(make.api_member(org, "editor")) for _ in range(3)]
    set_policy(make, org, 30)
    clock.advance(days=31)
    barrier = threading.Barrier(4, timeout=30)
    counts: list[int] = []
    errors: list[BaseException] = []
    outcomes: list[tuple[int, bool]] = []  # (token id, deactivated by this call)
    find, deactivate_once = dormant._candidate_ids, dormant._deactivate_once

    def candidates_then_wait(*args):
        found = find(*args)
        barrier.wait()  # every sweep holds the same candidates before any writes: the race is on
        return found

    def deactivate_recorded(token_id, *args):
        outcomes.append((token_id, deactivate_once(token_id, *args)))
        return outcomes[-1][1]

    monkeypatch.setattr(dormant, "_candidate_ids", candidates_then_wait)
    monkeypatch.setattr(dormant, "_deactivate_once", deactivate_recorded)

    def run():
        try:
            with app.app_context():
                counts.append(dormant.deactivate_unused())
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and sum(counts) == 3
    assert len(outcomes) == 12  # four sweeps tried each of the three tokens
    for token_id in {token_id for token_id, _ in outcomes}:
        assert sorted(won for tried, won in outcomes if tried == token_id) == [False, False, False, True]
    assert sorted(a.target_id for a in make.audit("token.deactivated")) == sorted(t.id for t in tokens)


def test_the_creator_is_told_and_owners_and_admins_too_for_organization_tokens(make, org, owner, clock):
    from shared.models import Notification

    admin = make.api_member(org, "admin")
    editor = make.api_member(org, "editor")
    personal = make.token(editor, name="Personal one")
    shared = make.token(admin, name="Org-wide one", type="organization")
    set_policy(make, org, 60)
    clock.advance(days=61)

    sweep(make)

    told = {issued.id: {n.user_id for n in rows(make, Notification, kind="deactivated_unused",
                                                     token_id=make.get_token(issued.id).id)}
            for issued in (personal, shared)}
    assert told == {personal.id: {editor.user_id}, shared.id: {admin.user_id, owner.user_id}}
    message = rows(make, Notification, kind="deactivated_unused", user_id=editor.user_id)[0].message
    assert "Personal one" in message and "never used since" in message and "60 days" in message


def test_without_a_policy_nothing_is_deactivated(make, org, clock):
    issued = make.token(make.api_member(org, "editor"))
    clock.advance(days=2000)
    sweep(make)
    assert active(make, issued) and not make.audit("token.deactivated")


def test_a_reactivated_token_gets_the_policys_days_again(client, make, org, manager, clock):
    issued = make.token(make.api_member(org, "editor"), name="Revived")
    set_policy(make, org, 30)
    clock.advance(days=31)
    use(client, manager)
    sweep(make)
    assert not active(make, issued)
    assert client.post(f"/api/v1/tokens/{issued.id}/reactivate", headers=manager.headers).status_code == 200

    clock.advance(days=29)
    sweep(make)
    assert active(make, issued)  # a person wanted it back: another 30 days from the reactivation
    clock.advance(days=2)
    sweep(make)
    assert not active(make, issued)
    assert len([a for a in make.audit("token.deactivated") if a.target_id == issued.id]) == 2


def test_the_worker_applies_the_policy(make, org, runner, clock):
    issued = make.token(make.api_member(org, "editor"))
    set_policy(make, org, 7)
    clock.advance(days=8)
    result = runner.invoke(args=["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert not active(make, issued)


def test_the_rule_is_the_dormant_badges_rule(make, org, clock):
    from shared.tokens import dormant, insight

    issued = make.token(make.api_member(org, "editor"))
    clock.advance(days=90)
    token = make.get_token(issued.id)
    assert insight.is_dormant(token) and insight.unused_for(token, 90)
    assert dormant.is_due(token, 90, clock.now()) and not dormant.is_due(token, 91, clock.now())


# --------------------------------------------------------------------------- the policy field


def test_the_owner_sets_the_policy_on_the_organization_page(client, make, org):
    from shared.orgs import organizations

    owner = make.member(org, "owner")
    login(client, owner)
    page = client.get("/settings/organization").get_data(as_text=True)
    assert '<label for="org-unused">Deactivate tokens unused for (days)</label>' in page
    response = client.post("/settings/organization", data={
        "csrf_token": csrf_from(page), "plan": "business", "allow_no_expiry": "1",
        "deactivate_unused_days": "45"})
    assert response.status_code == 302
    assert make.run(lambda: organizations.get_organization(org.slug)).policy_deactivate_unused_days == 45
    changes = make.audit("organization.policy_changed")[-1].details["changes"]
    assert changes == {"deactivate_unused_days": {"from": None, "to": 45}}
    assert 'value="45"' in client.get("/settings/organization").get_data(as_text=True)

    client.post("/settings/organization", data={"csrf_token": csrf_from(page), "plan": "business",
                                                "allow_no_expiry": "1", "deactivate_unused_days": ""})
    assert make.run(lambda: organizations.get_organization(org.slug)).policy_deactivate_unused_days is None


@pytest.mark.parametrize("value", ["0", "-1", "soon", "4000"])
def test_an_unusable_number_of_days_is_shown_beside_the_field(client, make, org, value):
    owner = make.member(org, "owner")
    login(client, owner)
    page = client.get("/settings/organization").get_data(as_text=True)
    response = client.post("/settings/organization", data={
        "csrf_token": csrf_from(page), "plan": "business", "deactivate_unused_days": value})
    assert response.status_code == 422
    assert 'id="org-unused-error"' in response.get_data(as_text=True)
    assert not make.audit("organization.policy_changed")


def test_only_the_owner_may_change_it(client, make, org):
    login(client, make.member(org, "admin"))
    assert client.get("/settings/organization").status_code == 403
    assert client.post("/settings/organization", data={"deactivate_unused_days": "5"}).status_code in (400, 403)
