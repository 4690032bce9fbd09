"""Background work: the Huey queue, `worker` / `worker --once`, the outbox, expiry
reminders exactly once, and notification emails to a real SMTP server (aiosmtpd) started here."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from shared.webhooks import delivery as webhook_delivery
from tests.conftest import ROOT, TEST_REDIS_URL, Member, free_port

# --------------------------------------------------------------------------- a real SMTP server


@pytest.fixture
def app_config(app_config, smtp):
    """Every app of this module mails to the test's own SMTP server."""
    return {**app_config, "KEYWARD_SMTP_URL": smtp.url}


# --------------------------------------------------------------------------- the world


@dataclass
class World:
    org: object
    owner: Member
    admin: Member
    editor: Member


@pytest.fixture
def world(make) -> World:
    org = make.org()
    return World(org, make.api_member(org, "owner"), make.api_member(org, "admin"), make.api_member(org, "editor"))


def worker_once(runner) -> None:
    result = runner.invoke(args=["worker", "--once"])
    assert result.exit_code == 0, result.output


def notices(make, member: Member | None = None) -> list[str]:
    """The kinds of the notifications (of one member, or everyone's), oldest first."""
    from shared.core.extensions import db
    from shared.models import Notification

    query = select(Notification.kind).order_by(Notification.id)
    if member is not None:
        query = query.where(Notification.user_id == member.user_id)
    return make.run(lambda: list(db.session.scalars(query)))


def events_of(make, event_type: str | None = None) -> list:
    from shared.core.extensions import db
    from shared.models import Event

    query = select(Event).order_by(Event.id)
    if event_type:
        query = query.where(Event.type == event_type)
    return make.run(lambda: list(db.session.scalars(query)))


def set_token(make, public_id: str, **values) -> None:
    from shared.core.extensions import db
    from shared.models import ApiToken

    def apply():
        db.session.execute(update(ApiToken).where(ApiToken.public_id == public_id).values(**values))
        db.session.commit()

    make.run(apply)


def notify_about(make, public_id: str, kind: str, **options) -> None:
    from shared.core.extensions import db
    from shared.models import ApiToken
    from shared.notifications import notices

    def apply():
        token = db.session.scalars(select(ApiToken).where(ApiToken.public_id == public_id)).one()
        notices.notify_about_token(kind, token, **options)
        db.session.commit()

    make.run(apply)


def queue_of(app):
    from shared.worker.queue import queue_for

    return queue_for(app)


# --------------------------------------------------------------------------- reminders


def test_running_the_sweep_three_times_sends_each_reminder_once(make, runner, clock, world, smtp):
    token = make.token(world.admin, type="organization", name="Deploy bot", expires_in_days=30)
    expires_at = make.get_token(token.id).expires_at
    for _ in range(3):
        worker_once(runner)
    assert notices(make) == [] and smtp.envelopes == []

    clock.current = expires_at - timedelta(days=7)
    for _ in range(3):
        worker_once(runner)
    # An organization token: its creator (an admin) and the org's owners and admins; not the editor.
    assert notices(make, world.admin) == notices(make, world.owner) == ["expiring_7d"]
    assert notices(make, world.editor) == []
    assert sorted(m["To"] for m in smtp.messages) == sorted([world.admin.email, world.owner.email])
    assert {m["Subject"] for m in smtp.messages} == {"Keyward: token “Deploy bot” expires in 7 days"}

    clock.current = expires_at - timedelta(days=1)
    for _ in range(3):
        worker_once(runner)
    assert notices(make, world.owner) == ["expiring_7d", "expiring_1d"]

    clock.current = expires_at + timedelta(minutes=1)
    for _ in range(3):
        worker_once(runner)
    assert notices(make, world.admin) == notices(make, world.owner) == ["expiring_7d", "expiring_1d", "expired"]
    assert len(smtp.envelopes) == 6
    assert sorted(m["Subject"] for m in smtp.messages if m["To"] == world.owner.email) == [
        "Keyward: token “Deploy bot” expires in 7 days", "Keyward: token “Deploy bot” expires tomorrow",
        "Keyward: token “Deploy bot” has expired"]
    assert token.secret not in smtp.raw() and token.secret[3:] not in smtp.raw()

    # Each reminder is also an event (for webhooks), written with it and dispatched by the worker.
    expiring = events_of(make, "token.expiring")
    assert [e.data["threshold"] for e in expiring] == ["7d", "1d"]
    assert len(events_of(make, "token.expired")) == 1
    assert all(e.dispatched_at is not None for e in events_of(make))
    assert all(e.data["token"]["id"] == token.id and "secret" not in e.data for e in expiring)


def test_reminder_emails_have_a_text_and_an_html_part_and_no_secret(make, runner, clock, world, smtp):
    token = make.token(world.editor, name="Laptop <script>", expires_in_days=30)
    clock.current = make.get_token(token.id).expires_at - timedelta(hours=20)
    worker_once(runner)
    [message] = smtp.messages
    assert [e.rcpt_tos for e in smtp.envelopes] == [[world.editor.email]]  # a personal token: its creator
    assert message["To"] == world.editor.email and message["From"] == "keyward@localhost"
    assert message["Subject"] == "Keyward: token “Laptop <script>” expires tomorrow"
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Token “Laptop <script>” expires tomorrow" in text and token.id in text
    assert "Token “Laptop &lt;script&gt;” expires tomorrow" in html and "<script>" not in html
    assert world.org.slug not in (token.secret,)
    assert token.secret not in smtp.raw() and token.secret[3:] not in smtp.raw()


def test_the_mail_from_address_is_configurable(make, app_with, clock, world, smtp):
    app = app_with(KEYWARD_MAIL_FROM="Keyward <tokens@example.test>")
    token = make.token(world.editor, expires_in_days=30)
    clock.current = make.get_token(token.id).expires_at - timedelta(days=7)
    worker_once(app.test_cli_runner())
    assert smtp.messages[0]["From"] == "Keyward <tokens@example.test>"
    assert smtp.envelopes[0].mail_from == "tokens@example.test"


def test_a_worker_down_across_thresholds_sends_only_the_current_one(make, runner, clock, world):
    token = make.token(world.editor, expires_in_days=30)
    clock.current = make.get_token(token.id).expires_at + timedelta(hours=1)
    worker_once(runner)
    assert notices(make) == ["expired"]


def test_tokens_expired_long_ago_are_not_announced(make, runner, clock, world):
    token = make.token(world.editor, expires_in_days=30)
    clock.current = make.get_token(token.id).expires_at + timedelta(days=8)
    worker_once(runner)
    assert notices(make) == []


def test_a_token_created_inside_a_window_skips_that_reminder(make, runner, clock, world):
    token = make.token(world.editor, expires_in_days=3)
    worker_once(runner)
    assert notices(make) == []  # its creator just chose a date 3 days away
    clock.current = make.get_token(token.id).expires_at - timedelta(hours=23)
    worker_once(runner)
    assert notices(make) == ["expiring_1d"]


def test_revoked_and_inactive_tokens_get_no_reminders(make, runner, clock, world):
    revoked = make.token(world.editor, expires_in_days=30)
    inactive = make.token(world.editor, expires_in_days=30)
    set_token(make, revoked.id, revoked_at=clock.now())
    set_token(make, inactive.id, is_active=False)
    clock.advance(days=29)
    worker_once(runner)
    assert notices(make) == []


def test_moving_the_expiry_re_arms_the_reminders(make, runner, clock, world):
    token = make.token(world.editor, expires_in_days=30)
    expires_at = make.get_token(token.id).expires_at
    clock.current = expires_at - timedelta(days=6)
    worker_once(runner)
    assert notices(make) == ["expiring_7d"]
    set_token(make, token.id, expires_at=expires_at + timedelta(days=30))  # extended by a month
    worker_once(runner)
    assert notices(make) == ["expiring_7d"]
    clock.current = expires_at + timedelta(days=24)
    worker_once(runner)
    worker_once(runner)
    assert notices(make) == ["expiring_7d", "expiring_7d"]


def test_concurrent_sweeps_send_a_reminder_once(make, app, clock, world, monkeypatch):
    """Four sweeps that all read "not sent yet" before any of them writes: one sends, and the three
    losers find the notice under the write lock (or hit its unique key) and send nothing."""
    from sqlalchemy.exc import IntegrityError

    from shared.models import TokenNotice
    from shared.tokens import reminders

    token = make.token(world.editor, expires_in_days=30)
    clock.current = make.get_token(token.id).expires_at - timedelta(days=5)
    barrier = threading.Barrier(4, timeout=30)
    sent: list[int] = []
    errors: list[BaseException] = []
    outcomes: list[str] = []  # each sweep's attempt at the notice: "sent", "found sent" or "unique key"
    read_notices, send_once = reminders._notices, reminders._send_once

    def notices_then_wait(candidates):
        known = read_notices(candidates)
        barrier.wait()  # every sweep has read the notices before any sends: the race is on
        return known

    def send_once_recorded(*args):
        try:
            outcomes.append("sent" if send_once(*args) else "found sent")
        except IntegrityError:
            outcomes.append("unique key")
            raise
        return outcomes[-1] == "sent"

    monkeypatch.setattr(reminders, "_notices", notices_then_wait)
    monkeypatch.setattr(reminders, "_send_once", send_once_recorded)

    def sweep():
        try:
            with app.app_context():
                sent.append(reminders.send_expiry_reminders())
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and sorted(sent) == [0, 0, 0, 1]
    assert len(outcomes) == 4 and outcomes.count("sent") == 1  # all four raced to send it
    assert set(outcomes) - {"sent"} <= {"found sent", "unique key"}
    assert notices(make) == ["expiring_7d"]
    from shared.core.extensions import db

    assert make.run(lambda: len(db.session.scalars(select(TokenNotice)).all())) == 1


# --------------------------------------------------------------------------- emails


def test_without_smtp_notifications_are_marked_handled_and_not_sent(make, app_with, world, smtp):
    from shared.core.extensions import db
    from shared.models import Notification

    quiet = app_with(KEYWARD_SMTP_URL=None)
    token = make.token(world.editor)
    notify_about(make, token.id, "exposed", always_managers=True)
    worker_once(quiet.test_cli_runner())
    assert smtp.envelopes == []
    assert make.run(lambda: all(n.email_sent_at is not None for n in db.session.scalars(select(Notification))))


def test_a_failed_send_is_retried_on_the_next_run(make, app_with, runner, world, smtp, caplog):
    from shared.core.extensions import db
    from shared.models import Notification

    unreachable = app_with(KEYWARD_SMTP_URL=f"smtp://127.0.0.1:{free_port()}")
    token = make.token(world.editor)
    notify_about(make, token.id, "expired")
    with caplog.at_level(logging.WARNING, "keyward.mailer"):
        worker_once(unreachable.test_cli_runner())
    assert "could not send notification email" in caplog.text and world.editor.email not in caplog.text
    assert make.run(lambda: [n.email_sent_at for n in db.session.scalars(select(Notification))]) == [None]
    worker_once(runner)
    assert [m["To"] for m in smtp.messages] == [world.editor.email]
    worker_once(runner)
    assert len(smtp.envelopes) == 1


def test_a_leak_notice_email_never_carries_the_secret(make, runner, world, smtp):
    token = make.token(world.editor, name="CI")
    notify_about(make, token.id, "exposed", always_managers=True,
                 detail=f"https://paste.example/raw/1?key={token.secret}")
    worker_once(runner)
    assert sorted(m["To"] for m in smtp.messages) == sorted([world.editor.email, world.owner.email, world.admin.email])
    assert token.secret not in smtp.raw() and token.secret[3:] not in smtp.raw()
    masked = f"https://paste.example/raw/1?key=kw_••••{token.secret[-4:]}"
    assert masked in smtp.messages[0].get_body(("plain",)).get_content()


# --------------------------------------------------------------------------- the outbox


def test_a_change_enqueues_a_dispatch_that_the_worker_runs(make, app, runner, world, monkeypatch):


    delivered: list[str] = []
    monkeypatch.setattr(webhook_delivery, "add_deliveries", lambda event: delivered.append(event.public_id))
    token = make.token(world.editor)
    assert queue_of(app).huey.pending_count() == 1  # the commit poked the queue
    [created] = events_of(make, "token.created")
    assert created.dispatched_at is None and created.data["token"]["id"] == token.id
    worker_once(runner)
    assert queue_of(app).huey.pending_count() == 0
    assert delivered == [created.public_id] and events_of(make)[0].dispatched_at is not None
    worker_once(runner)
    assert delivered == [created.public_id]  # at most once per dispatch: never again once dispatched


def test_with_the_queue_unreachable_the_change_commits_and_is_delivered_when_it_returns(
        make, app_with, tmp_path, world, caplog, monkeypatch):
    """The queue's SQLite file cannot be opened (its folder is a file): the API change still
    commits with its event; once the folder can be made, `worker --once` delivers it."""


    delivered: list[str] = []
    monkeypatch.setattr(webhook_delivery, "add_deliveries", lambda event: delivered.append(event.public_id))
    blocker = tmp_path / "queue-folder"
    blocker.write_text("not a folder")
    app = app_with(KEYWARD_QUEUE_URL=f"sqlite:///{blocker / 'queue.db'}")
    caller = make.token(world.admin, scopes=["tokens", "documents"], permissions=["read", "write"])
    delivered.clear()

    with caplog.at_level(logging.WARNING, "keyward.queue"):
        response = app.test_client().post("/api/v1/tokens", headers=caller.headers,
                                          json={"name": "made during the outage", "scopes": ["documents"],
                                                "permissions": ["read"]})
    assert response.status_code == 201
    created_id = response.get_json()["token"]["id"]
    assert "queue unavailable" in caplog.text and response.get_json()["secret"] not in caplog.text
    [event] = [e for e in events_of(make, "token.created") if e.data["token"]["id"] == created_id]
    assert event.dispatched_at is None

    blocker.unlink()  # the queue comes back
    worker_once(app.test_cli_runner())
    assert event.public_id in delivered
    assert all(e.dispatched_at is not None for e in events_of(make))


def test_with_redis_unreachable_a_request_still_succeeds_and_the_sweep_delivers(make, app_with, runner, world):
    down = app_with(KEYWARD_QUEUE_URL="redis://127.0.0.1:1/0")
    caller = make.token(world.admin, scopes=["tokens", "documents"], permissions=["read", "write"])
    started = time.monotonic()
    response = down.test_client().post(f"/api/v1/tokens/{caller.id}/deactivate", headers=caller.headers)
    assert response.status_code == 200 and time.monotonic() - started < 5
    [event] = events_of(make, "token.deactivated")
    assert event.dispatched_at is None
    # `worker --once` against the unreachable queue says so, but still sweeps from the database.
    result = down.test_cli_runner().invoke(args=["worker", "--once"])
    assert result.exit_code == 1 and "queue storage is unreachable" in result.output
    assert events_of(make, "token.deactivated")[0].dispatched_at is not None
    worker_once(runner)


@pytest.mark.redis
@pytest.mark.skipif(not TEST_REDIS_URL, reason="needs TEST_REDIS_URL")
def test_a_redis_queue_carries_the_dispatch(make, app_with, world):
    app = app_with(KEYWARD_QUEUE_URL=TEST_REDIS_URL, KEYWARD_QUEUE_NAME=f"kwtest-{uuid.uuid4().hex[:12]}")
    queue = queue_of(app)
    assert type(queue.huey).__name__ == "RedisHuey"
    with app.app_context():
        from shared.audit.record import Actor
        from shared.core.extensions import db
        from shared.models import Membership
        from shared.tokens import lifecycle
        from shared.tokens import payload as token_payload

        data = token_payload.parse_token_payload({"name": "via redis", "scopes": ["documents"], "permissions": ["read"]},
                                          creating=True)
        lifecycle.create_token(Actor(membership=db.session.get(Membership, world.editor.id)), data)
    try:
        assert queue.huey.pending_count() == 1
        worker_once(app.test_cli_runner())
        assert queue.huey.pending_count() == 0
        assert all(e.dispatched_at is not None for e in events_of(make))
    finally:
        queue.huey.flush()


def test_an_unknown_queue_url_is_refused_at_start(app_config):
    from shared.app import create_app
    from shared.core.config import ConfigError

    with pytest.raises(ConfigError, match="KEYWARD_QUEUE_URL"):
        create_app({**app_config, "KEYWARD_QUEUE_URL": "amqp://somewhere"})


# --------------------------------------------------------------------------- the worker process


def _wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_worker_process_delivers_and_stops_cleanly(make, app_config, world, smtp, tmp_path, stop_signal):
    env = {**os.environ, "DATABASE_URL": app_config["SQLALCHEMY_DATABASE_URI"],
           "KEYWARD_QUEUE_URL": app_config["KEYWARD_QUEUE_URL"], "KEYWARD_SMTP_URL": smtp.url}
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "worker"], cwd=ROOT, env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
    try:
        token = make.token(world.editor)
        notify_about(make, token.id, "exposed", always_managers=True)
        _wait_for(lambda: all(e.dispatched_at is not None for e in events_of(make)) and len(smtp.envelopes) == 3,
                  what="the worker to dispatch")
        worker.send_signal(stop_signal)
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    output = log_path.read_text()
    assert "Consumer exiting" in output and "Traceback" not in output
    assert token.secret not in output


def _session_processes(session_id: int) -> list[str]:
    result = subprocess.run(["ps", "-o", "args=", "-s", str(session_id)], capture_output=True, text=True, check=False)
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


@pytest.mark.parametrize("how", ["stop make", "Ctrl-C"])
def test_make_run_starts_a_worker_beside_the_server_and_stops_both(tmp_path, how):
    import urllib.request

    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'run.db'}",
           "KEYWARD_QUEUE_URL": f"sqlite:///{tmp_path / 'queue.db'}"}
    env.pop("KEYWARD_SMTP_URL", None)
    # make starts as from a terminal, where Ctrl-C's signal has its default action. A test run started
    # in the background of a script ignores SIGINT, and an ignored signal stays ignored in every
    # program started after it: with a Python handler in place while make starts, make gets the default.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with open(tmp_path / "make.log", "wb") as log:
            make_run = subprocess.Popen(["make", "-s", "run", f"PORT={port}"], cwd=ROOT, env=env, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        def serving() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                    return response.status == 200
            except OSError:
                return False

        _wait_for(serving, timeout=90, what="make run to serve")
        # The worker is up once it has run its first sweep (after its signal handlers are set).
        _wait_for(lambda: "shared.worker.queue.sweep" in (tmp_path / "make.log").read_text() and "executed" in
                  (tmp_path / "make.log").read_text(), what="the worker's first sweep")
        running = _session_processes(make_run.pid)
        assert any("wsgi worker" in args for args in running), running
        assert any("wsgi run" in args for args in running), running
        if how == "Ctrl-C":  # the terminal signals the whole foreground process group
            os.killpg(make_run.pid, signal.SIGINT)
        else:
            make_run.terminate()
        make_run.wait(timeout=30)
        _wait_for(lambda: _session_processes(make_run.pid) == [], timeout=30, what="every process to stop")
    finally:
        if _session_processes(make_run.pid):
            os.killpg(make_run.pid, signal.SIGKILL)
    assert "Consumer exiting" in Path(tmp_path / "make.log").read_text()
