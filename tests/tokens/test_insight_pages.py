"""A token's detail page (Insight) in the portal and the hub, and the row's insight badges:
fields, the requests-per-day chart (its numbers are the real requests), networks, audit history,
the effective rights table (cell for cell tokens.rights_table, used cells marked)."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from sqlalchemy import update

from tests.conftest import login

TOKENS = "/settings/api-tokens"
HUB = "/hub/api-tokens"
BAR = re.compile(r'<rect class="chart-bar"[^>]*data-day="([0-9-]+)" data-requests="(\d+)"')
HIDDEN_ROW = re.compile(r'<tr><th scope="row"><time datetime="([0-9-]+)">[^<]*</time></th><td>(\d+)</td></tr>')
CELL = re.compile(r'<span class="rights-method" data-scope="(\w+)" data-method="(\w+)" '
                  r'data-allowed="(yes|no)"( data-used="yes")?>')
REASON = re.compile(r'<span class="rights-reason">([^<]*)</span>')


@pytest.fixture
def org(make):
    return make.org("business", name="Acme")


@pytest.fixture
def owner(make, org):
    return make.member(org, "owner")


def signed_in(client, member):
    assert login(client, member).status_code == 302
    return client


def page_of(client, public_id: str, prefix: str = TOKENS) -> str:
    response = client.get(f"{prefix}/{public_id}")
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def set_token(make, public_id: str, **values) -> None:
    from shared.core.extensions import db
    from shared.models import ApiToken

    def apply():
        db.session.execute(update(ApiToken).where(ApiToken.public_id == public_id).values(**values))
        db.session.commit()

    make.run(apply)


def row_html(page: str, public_id: str) -> str:
    start = page.index(f'id="token-{public_id}"')
    return page[start:page.index("</tr>", start)]


# --------------------------------------------------------------------------- fields and access


def test_detail_page_shows_the_tokens_fields(client, make, org, owner):
    issued = make.token(owner, name="CI deploys", description="Release pipeline", scopes=["documents", "projects"],
                        permissions=["read", "write"], ip_allowlist=["203.0.113.0/24"], expires_in_days=30)
    page = page_of(signed_in(client, owner), issued.id)

    assert "<h1>CI deploys</h1>" in page
    assert issued.id in page and f"kw_••••{issued.secret[-4:]}" in page
    for text in ("Release pipeline", "Personal", "203.0.113.0/24", "never", ">projects<", "read · write<", "Active"):
        assert text in page, text
    assert issued.secret not in page
    assert 'id="token-actions"' in page and "Edit</button>" in page


def test_the_name_in_the_list_links_to_the_detail_page(client, make, owner):
    issued = make.token(owner, name="Linked")
    page = signed_in(client, owner).get(TOKENS).get_data(as_text=True)
    assert f'<a class="token-name" href="{TOKENS}/{issued.id}">Linked</a>' in page


def test_others_tokens_and_unknown_ids_answer_404(client, make, org, owner):
    editor = make.member(org, "editor")
    colleague = make.token(make.member(org, "editor"), name="Colleague's")
    stranger = make.token(make.member(make.org(), "owner"), name="Other org's")
    signed_in(client, editor)
    for public_id in (colleague.id, stranger.id, "tok_0000000000000000", "not-a-token"):
        assert client.get(f"{TOKENS}/{public_id}").status_code == 404, public_id
    client.post("/logout")
    signed_in(client, owner)  # owners see every token of their org, never another org's
    assert client.get(f"{TOKENS}/{colleague.id}").status_code == 200
    assert client.get(f"{TOKENS}/{stranger.id}").status_code == 404


def test_partner_users_open_their_tokens_detail_in_the_hub(client, make, org, owner):
    partner = make.member(org, "partner_admin", partner_id=make.partner(org, "Globex"))
    mine = make.token(partner, name="Globex sync")
    other_partner = make.token(make.member(org, "partner_member", partner_id=make.partner(org)), name="Other")
    staff = make.token(owner, name="Staff token")
    signed_in(client, partner)

    page = page_of(client, mine.id, HUB)

    assert "<h1>Globex sync</h1>" in page and "Partner hub · Globex" in page
    assert f'href="{HUB}"' in page  # back to the hub's list, not the portal's
    for other in (other_partner.id, staff.id):
        assert client.get(f"{HUB}/{other}").status_code == 404
    assert client.get(f"{TOKENS}/{mine.id}").status_code == 403  # the portal is closed to partner users


# --------------------------------------------------------------------------- the chart


def test_the_chart_shows_the_real_requests_per_day(client, make, owner, clock):
    from shared.tokens import usage

    issued = make.token(owner, name="Counted", scopes=["documents"])
    made = {}
    start = clock.now()
    for days_ago, count in ((12, 2), (3, 5), (0, 3)):
        clock.current = start - timedelta(days=days_ago)
        for _ in range(count):
            assert client.get("/api/v1/documents", headers=issued.headers).status_code == 200
        made[clock.current.date().isoformat()] = count
    clock.current = start
    make.flush_usage()

    page = page_of(signed_in(client, owner), issued.id)

    bars = dict(BAR.findall(page))
    table = dict(HIDDEN_ROW.findall(page))
    assert len(bars) == len(table) == 30
    assert list(bars) == [day.isoformat() for day in make.run(lambda: usage.days_window(30))]
    assert bars == table
    assert {day: int(n) for day, n in bars.items() if n != "0"} == made
    token_id = make.get_token(issued.id).id
    recorded = make.run(lambda: usage.daily_requests([token_id], 30))[token_id]
    assert {day.isoformat(): n for day, n in recorded.items()} == made
    assert "10 requests from" in page and "the busiest day was" in page


def test_the_chart_layout_scales_to_round_numbers():
    from datetime import date

    from shared.tokens.insight import chart_layout

    chart = chart_layout([(date(2026, 11, day), n) for day, n in ((1, 0), (2, 7), (3, 3))])
    assert [tick.value for tick in chart.ticks] == [0, 2, 4, 6, 8]
    tallest = chart.bars[1]
    assert tallest.y + tallest.height == chart.bottom
    assert tallest.height == pytest.approx((chart.bottom - chart.top) * 7 / 8, abs=0.01)
    assert chart.bars[0].height == 0 and chart.total == 10 and chart.peak.day == date(2026, 11, 2)
    assert chart_layout([(date(2026, 11, 1), 0)]).summary == "No requests from Nov 1, 2026 to Nov 1, 2026."


# --------------------------------------------------------------------------- networks and history


def test_networks_list_first_and_last_seen_and_requests(client, make, owner, clock):
    issued = make.token(owner, name="Travelling")
    for address in ("198.51.100.4", "198.51.100.9"):
        client.get("/api/v1/me", headers=issued.headers, environ_base={"REMOTE_ADDR": address})
    first_day = clock.now()
    clock.advance(days=2)
    client.get("/api/v1/me", headers=issued.headers, environ_base={"REMOTE_ADDR": "203.0.113.50"})
    make.flush_usage()

    page = page_of(signed_in(client, owner), issued.id)

    networks = page[page.index('id="networks-title"'):page.index('id="history-title"')]
    first, second = networks.index("203.0.113.0/24"), networks.index("198.51.100.0/24")
    assert first < second  # most recently seen first
    assert networks.count("New network") == 1 and networks.index("New network") < second
    assert first_day.strftime("%Y-%m-%d %H:%M UTC") in networks
    assert re.search(r'<td class="num">2</td>', networks) and re.search(r'<td class="num">1</td>', networks)
    assert "New network" in row_html(client.get(TOKENS).get_data(as_text=True), issued.id)


def test_history_shows_what_was_done_to_the_token_and_with_it(client, make, org, owner):
    from shared.identity.roles import KNOWN_SCOPES

    issued = make.token(owner, name="Manager", scopes=list(KNOWN_SCOPES), permissions=["read", "write", "delete"])
    other = make.token(owner, name="Bystander")
    client.post(f"/api/v1/tokens/{other.id}/deactivate", headers=issued.headers)
    signed_in(client, owner)
    page = client.get(TOKENS).get_data(as_text=True)
    from tests.conftest import csrf_from

    client.post(f"{TOKENS}/{issued.id}/edit", data={"name": "Manager 2", "description": "", "permissions": [
        "read", "write", "delete"], "scopes": list(KNOWN_SCOPES), "expiration": "keep", "ip_allowlist": "",
        "csrf_token": csrf_from(page)})

    history = page_of(client, issued.id)
    history = history[history.index('id="history-title"'):]
    assert "token.created" in history and "token.updated" in history
    assert "token.deactivated" in history and "with this token" in history and other.id in history
    bystander = page_of(client, other.id)
    bystander = bystander[bystander.index('id="history-title"'):]
    assert "token.deactivated" in bystander and "with this token" not in bystander
    assert "token.updated" not in bystander and "Manager 2" not in bystander


# --------------------------------------------------------------------------- effective rights


def test_rights_cells_are_tokens_rights_table_and_mark_what_was_used(client, make, org, owner, clock):
    from sqlalchemy import select

    from shared.core.extensions import db
    from shared.models import ApiToken
    from shared.tokens import rights

    editor = make.member(org, "editor")
    issued = make.token(editor, name="Editor's", scopes=["documents", "projects", "tokens"],
                        permissions=["read", "write"])
    assert client.get("/api/v1/documents", headers=issued.headers).status_code == 200
    assert client.post("/api/v1/documents", json={"title": "x"}, headers=issued.headers).status_code == 201
    assert client.get("/api/v1/billing", headers=issued.headers).status_code == 403  # refused: not a use
    make.flush_usage()

    page = page_of(signed_in(client, owner), issued.id)

    cells = {(scope, method): (allowed == "yes", bool(used))
             for scope, method, allowed, used in CELL.findall(page)}
    expected = make.run(lambda: rights.rights_table(
        db.session.scalars(select(ApiToken).where(ApiToken.public_id == issued.id)).one()))
    assert len(cells) == len(expected) == 24
    for entry in expected:
        assert cells[(entry["scope"], entry["method"])][0] == entry["allowed"]
    # What it can do comes first; what it cannot is grouped by why, each reason said once.
    assert page.index("It can<") < page.index("It cannot, and why")
    reasons = [html.unescape(reason) for reason in REASON.findall(page)]
    assert sorted(reasons) == sorted({entry["reason"] for entry in expected if not entry["allowed"]})
    assert {key for key, (_, used) in cells.items() if used} == {("documents", "GET"), ("documents", "POST")}
    clock.advance(days=31)  # older than 30 days: no longer marked
    page = page_of(client, issued.id)
    assert not [used for *_, used in CELL.findall(page) if used]


def test_an_inactive_tokens_rights_say_that_requests_are_refused_now(client, make, owner):
    issued = make.token(owner, name="Paused")
    set_token(make, issued.id, is_active=False)
    page = page_of(signed_in(client, owner), issued.id)
    assert "This token is inactive: every request with it is refused now" in page


def test_a_canary_shows_that_it_grants_nothing(client, make, owner):
    issued = make.token(owner, name="Tripwire")
    set_token(make, issued.id, is_canary=True)
    page = page_of(signed_in(client, owner), issued.id)
    assert "A canary grants nothing" in page and not CELL.findall(page)


# --------------------------------------------------------------------------- badges


@pytest.mark.parametrize(("last_used_days", "created_days", "dormant"), [
    (91, 200, True), (89, 200, False), (None, 91, True), (None, 89, False), (90, 100, True)])
def test_dormant_badge_after_90_days_unused(client, make, owner, clock, last_used_days, created_days, dormant):
    issued = make.token(owner, name="Sleepy")
    now = clock.now()
    set_token(make, issued.id, created_at=now - timedelta(days=created_days),
              last_used_at=None if last_used_days is None else now - timedelta(days=last_used_days))
    page = signed_in(client, owner).get(TOKENS).get_data(as_text=True)
    assert ("Dormant" in row_html(page, issued.id)) is dormant
    assert ("Dormant" in page_of(client, issued.id)) is dormant


@pytest.mark.parametrize(("days_ago", "shown"), [(0, True), (6, True), (8, False)])
def test_new_network_badge_for_seven_days(client, make, owner, clock, days_ago, shown):
    issued = make.token(owner, name="Roaming")
    set_token(make, issued.id, new_network_at=clock.now() - timedelta(days=days_ago))
    page = signed_in(client, owner).get(TOKENS).get_data(as_text=True)
    assert ("New network" in row_html(page, issued.id)) is shown


def test_revoked_and_canary_tokens_are_never_dormant(client, make, owner, clock):
    from shared.tokens import insight

    old = clock.now() - timedelta(days=400)
    canary = make.token(owner, name="Canary")
    set_token(make, canary.id, created_at=old, is_canary=True)
    revoked = make.token(owner, name="Gone")
    set_token(make, revoked.id, created_at=old, revoked_at=old)
    assert not insight.is_dormant(make.get_token(canary.id))
    assert not insight.is_dormant(make.get_token(revoked.id))
