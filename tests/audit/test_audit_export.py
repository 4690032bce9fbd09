"""Audit log export: the Audit log page's filters, as CSV or JSON Lines, streamed from
the portal and `flask --app wsgi audit export`; memory stays flat over 10,000 events."""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
from datetime import timedelta

import pytest
from sqlalchemy import insert, select

from tests.conftest import login

EXPORT = "/settings/audit/export"
ROWS = 10_000


@pytest.fixture
def org(make):
    return make.org("business", name="Acme")


@pytest.fixture
def owner(make, org):
    return make.member(org, "owner", email="olivia@acme.test")


def add_events(make, org, count: int, clock, actor_user_id: int | None = None) -> None:
    """`count` audit rows in one executemany, a minute apart, newest now, with varied actions."""
    from shared.core.extensions import db
    from shared.models import AuditEvent

    now = clock.now()
    actions = ("token.created", "token.updated", "token.deactivated", "token.revoked")
    rows = [{"organization_id": org.id, "actor_user_id": actor_user_id if n % 3 == 0 else None,
             "action": actions[n % 4], "target_type": "token", "target_id": f"tok_{n:016x}",
             "source_ip": "203.0.113.7", "user_agent": "bulk-test",
             "details": {"name": f"token {n}", "scopes": ["documents"], "n": n},
             "created_at": now - timedelta(minutes=n)} for n in range(count)]

    def apply():
        db.session.execute(insert(AuditEvent), rows)
        db.session.commit()

    make.run(apply)


def stream(response, sink) -> int:
    """Consume the response chunk by chunk into `sink` (a file); the bytes written."""
    size = 0
    for chunk in response.response:
        sink.write(chunk)
        size += len(chunk)
    response.close()
    return size


def peak_while(work) -> int:
    """The most memory Python held at once while `work()` ran, beyond what it held before."""
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_ten_thousand_rows_stream_in_flat_memory_and_read_back_as_csv(client, make, org, owner, clock, tmp_path):
    from shared.core.extensions import db
    from shared.models import AuditEvent

    add_events(make, org, ROWS, clock, owner.user_id)  # a minute apart: about 7 days
    login(client, owner)
    stream(client.get(f"{EXPORT}?format=csv&action=none", buffered=False), io.BytesIO())  # one-time costs
    one_day = (clock.now() - timedelta(days=2)).date().isoformat()
    responses, sizes = [], []

    def export(query: str, path):
        response = client.get(f"{EXPORT}?{query}", buffered=False)
        responses.append(response)
        with open(path, "wb") as sink:
            sizes.append(stream(response, sink))

    day_peak = peak_while(lambda: export(f"format=csv&from={one_day}&to={one_day}", tmp_path / "day.csv"))
    all_peak = peak_while(lambda: export("format=csv", tmp_path / "audit.csv"))
    loaded_peak = peak_while(lambda: make.run(lambda: len(db.session.scalars(select(AuditEvent)).all())))
    response, size = responses[-1], sizes[-1]

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="keyward-audit-acme-')
    assert sizes[0] * 5 < size  # a day is 1,440 of the 10,000 rows...
    assert all_peak < day_peak * 1.5, (all_peak, day_peak)  # ...and memory does not grow with them
    assert all_peak < size / 2, (all_peak, size)  # never the whole file in memory
    assert all_peak * 5 < loaded_peak, (all_peak, loaded_peak)  # far below loading the rows at once

    with open(tmp_path / "audit.csv", newline="", encoding="utf-8") as source:
        records = list(csv.DictReader(source))
    assert len(records) == ROWS + 1  # and the login's own event
    events = [r for r in records if r["user_agent"] == "bulk-test"]
    assert [json.loads(r["details"])["n"] for r in events] == list(range(ROWS))  # newest first
    first = events[0]
    assert first["action"] == "token.created" and first["target_id"] == f"tok_{0:016x}"
    assert first["actor_email"] == "olivia@acme.test" and first["actor_user_id"] == str(owner.user_id)
    assert first["created_at"] == clock.now().isoformat(timespec="seconds").replace("+00:00", "Z")
    assert events[1]["actor_email"] == "" and events[1]["source_ip"] == "203.0.113.7"


def test_json_lines_round_trip_with_every_value_exact(client, make, org, owner, clock, tmp_path):
    add_events(make, org, 1200, clock)  # more than one batch
    login(client, owner)
    response = client.get(f"{EXPORT}?format=jsonl&action=token.updated", buffered=False)
    assert response.headers["Content-Type"] == "application/x-ndjson; charset=utf-8"
    assert response.headers["Content-Disposition"].endswith('.jsonl"')
    buffer = io.BytesIO()
    stream(response, buffer)

    lines = buffer.getvalue().decode("utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 300 and {r["action"] for r in records} == {"token.updated"}
    assert records[0]["details"] == {"name": "token 1", "scopes": ["documents"], "n": 1}
    assert list(records[0]) == ["id", "created_at", "action", "actor_user_id", "actor_email", "actor_token_id",
                                "target_type", "target_id", "source_ip", "user_agent", "details"]
    assert [r["details"]["n"] for r in records] == list(range(1, 1200, 4))


def _page_total(client, query: str) -> int:
    import re

    page = client.get(f"/settings/audit?{query}").get_data(as_text=True)
    match = re.search(r"of (\d+) events", page)
    return int(match.group(1)) if match else 0


@pytest.mark.parametrize("query", [
    "action=token.revoked",
    "actor={actor}",
    "from={day}&to={day}",
    "action=token.created&actor={actor}&from={day}",
    "action=nothing.like.this",
])
def test_the_export_has_what_the_page_shows(client, make, org, owner, clock, query):
    add_events(make, org, 3000, clock, owner.user_id)  # two days and more, a minute apart
    make.token(make.member(make.org(), "owner"), name="Another org's")  # never in this export
    login(client, owner)
    query = query.format(actor=owner.user_id, day=(clock.now() - timedelta(days=1)).date().isoformat())

    exported = client.get(f"{EXPORT}?format=jsonl&{query}").get_data(as_text=True).splitlines()

    assert len(exported) == _page_total(client, query)
    assert all(json.loads(line)["target_id"] != "" for line in exported)
    assert "Another org" not in "\n".join(exported)


def test_the_page_links_to_both_exports_with_its_filters(client, make, org, owner, clock):
    add_events(make, org, 3, clock)
    login(client, owner)
    page = client.get("/settings/audit?action=token.updated&page=1").get_data(as_text=True)
    assert f'href="{EXPORT}?format=csv&amp;action=token.updated"' in page
    assert f'href="{EXPORT}?format=jsonl&amp;action=token.updated"' in page
    fragment = client.get("/settings/audit?action=token.created", headers={"HX-Request": "true"})
    assert "format=csv&amp;action=token.created" in fragment.get_data(as_text=True)


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralized(client, make, org, owner):
    issued = make.token(owner, name="=HYPERLINK(\"http://evil.test\",\"x\")")
    login(client, owner)
    body = client.get(f"{EXPORT}?format=csv&action=token.created").get_data(as_text=True)
    row = next(csv.DictReader(io.StringIO(body)))
    assert row["target_id"] == issued.id
    assert json.loads(row["details"])["name"].startswith("=HYPERLINK")  # JSON cells start with {
    agent = client.get(f"{EXPORT}?format=jsonl&action=token.created").get_data(as_text=True)
    assert json.loads(agent.splitlines()[0])["details"]["name"] == "=HYPERLINK(\"http://evil.test\",\"x\")"

    from shared.audit.export import _cell

    assert _cell("=1+2") == "'=1+2" and _cell("-3") == "'-3" and _cell("@x") == "'@x" and _cell("ok") == "ok"


def test_only_audit_readers_export_and_unknown_formats_are_refused(client, make, org):
    login(client, make.member(org, "editor"))
    assert client.get(f"{EXPORT}?format=csv").status_code == 403
    client.post("/logout")
    login(client, make.member(org, "security_manager"))
    assert client.get(f"{EXPORT}?format=csv").status_code == 200
    assert client.get(f"{EXPORT}?format=xlsx").status_code == 400


# --------------------------------------------------------------------------- the command line


def test_cli_exports_to_stdout_with_filters(runner, make, org, owner, clock):
    add_events(make, org, 40, clock, owner.user_id)
    result = runner.invoke(args=["audit", "export", "--org", org.slug, "--format", "jsonl",
                                 "--action", "token.created", "--actor", owner.email])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    assert records and all(r["action"] == "token.created" and r["actor_email"] == owner.email for r in records)
    assert len(records) == len([n for n in range(40) if n % 4 == 0 and n % 3 == 0])


def test_cli_writes_csv_to_a_file_by_default(runner, make, org, clock, tmp_path):
    add_events(make, org, 25, clock)
    target = tmp_path / "out.csv"
    result = runner.invoke(args=["audit", "export", "--org", org.slug, "--output", str(target),
                                 "--from", (clock.now() - timedelta(minutes=9)).date().isoformat()])
    assert result.exit_code == 0, result.output
    with open(target, newline="", encoding="utf-8") as source:
        assert len(list(csv.DictReader(source))) == 25


def test_cli_refuses_an_unknown_org_or_person(runner, make, org):
    result = runner.invoke(args=["audit", "export", "--org", "nope"])
    assert result.exit_code == 1 and "No organization" in result.output
    result = runner.invoke(args=["audit", "export", "--org", org.slug, "--actor", "ghost@example.test"])
    assert result.exit_code == 1 and "No user" in result.output
    result = runner.invoke(args=["audit", "export", "--org", org.slug, "--format", "xml"])
    assert result.exit_code == 2
