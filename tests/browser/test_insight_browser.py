"""A token's detail page in a real browser (Insight): real API requests against the live
server show up in the chart's accessible text, the networks and the rights table's used cells."""

from __future__ import annotations

import json
import re
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import row, sign_in
from tests.conftest import settled

pytestmark = pytest.mark.browser

# (client address the one trusted proxy reports, method, path) of the requests the test makes.
REQUESTS = [("198.51.100.7", "GET", "/api/v1/documents")] * 5 + [("203.0.113.9", "POST", "/api/v1/documents")] * 2
HISTORY = {days_ago: (days_ago * 7) % 23 + 4 for days_ago in range(1, 30)}  # earlier days, seeded


@pytest.fixture
def server(live_server):
    # One trusted proxy hop: X-Forwarded-For names the client, so requests come from two networks.
    return live_server(workers=2, KEYWARD_TRUSTED_PROXIES="1")


def call(server, secret: str, address: str, method: str, path: str) -> int:
    body = json.dumps({"title": "From the browser test"}).encode() if method == "POST" else None
    request = urllib.request.Request(server.url + path, data=body, method=method, headers={
        "Authorization": f"Bearer {secret}", "X-Forwarded-For": address, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def seed_history(make, public_id: str) -> None:
    """Requests on the 29 days before today, all from 198.51.100.0/24 (the live server counts
    today's for real): daily rows, the network's row and the token's counter, as the hot path
    would have written them."""
    from sqlalchemy import select, update

    from shared.core.extensions import db
    from shared.models import ApiToken, TokenDailyUsage, TokenNetwork

    today = datetime.now(UTC).date()
    first_seen = datetime.now(UTC) - timedelta(days=max(HISTORY))

    def apply():
        token = db.session.scalars(select(ApiToken).where(ApiToken.public_id == public_id)).one()
        for days_ago, requests in HISTORY.items():
            db.session.add(TokenDailyUsage(organization_id=token.organization_id, token_id=token.id,
                                           day=today - timedelta(days=days_ago), requests=requests))
        db.session.add(TokenNetwork(organization_id=token.organization_id, token_id=token.id,
                                    network="198.51.100.0/24", first_seen_at=first_seen,
                                    last_seen_at=first_seen + timedelta(days=28), requests=sum(HISTORY.values())))
        db.session.execute(update(ApiToken).where(ApiToken.id == token.id)
                           .values(usage_count=sum(HISTORY.values())))
        db.session.commit()

    make.run(apply)


def test_detail_page_charts_the_real_requests(page, make, server, screenshot):
    org = make.org("business", name="Acme")
    owner = make.member(org, "owner", email="olivia@acme.test")
    issued = make.token(owner, name="Reporting sync", description="Nightly export to the data warehouse",
                        scopes=["documents", "projects"], permissions=["read", "write"])
    seed_history(make, issued.id)
    for address, method, path in REQUESTS:
        assert call(server, issued.secret, address, method, path) in (200, 201)
    total = len(REQUESTS) + sum(HISTORY.values())
    # The server's usage flushers write the requests within about two intervals.
    assert settled(lambda: make.get_token(issued.id).usage_count, total) == total
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text)
            if "Content Security Policy" in message.text else None)

    sign_in(page, owner)
    expect(row(page, "Reporting sync").get_by_text("New network")).to_be_visible()
    row(page, "Reporting sync").get_by_role("link", name="Reporting sync").click()

    expect(page.get_by_role("heading", name="Reporting sync", level=1)).to_be_visible()
    today = datetime.now(UTC).date()
    chart = page.get_by_role("img", name=re.compile(r"^Requests per day"))
    expect(chart).to_be_visible()
    expect(chart).to_have_accessible_description(re.compile(rf"^{total:,} requests from "))
    days = page.get_by_role("table", name=re.compile(r"^Requests per day"))
    expect(days.get_by_role("row")).to_have_count(31)  # the header and 30 days
    today_row = days.get_by_role("row", name=re.compile(rf"^{today:%b} {today.day}, {today.year} "))
    expect(today_row.get_by_role("cell")).to_have_text(str(len(REQUESTS)))  # the real requests
    yesterday = today - timedelta(days=1)
    expect(days.get_by_role("row", name=re.compile(rf"^{yesterday:%b} {yesterday.day}, ")).get_by_role("cell")
           ).to_have_text(str(HISTORY[1]))

    networks = page.get_by_role("region", name="Networks")
    first, second = (networks.get_by_role("row", name=re.compile(rf"^{re.escape(network)}".replace("/", r"\/")))
                     for network in ("198.51.100.0/24", "203.0.113.0/24"))
    expect(first.get_by_role("cell").last).to_have_text(f"{sum(HISTORY.values()) + 5:,}")
    expect(second.get_by_role("cell").last).to_have_text("2")
    expect(second).to_contain_text("New network")
    expect(first).not_to_contain_text("New network")
    rights = page.get_by_role("region", name="Effective rights")
    can = rights.get_by_role("region", name="It can", exact=True)
    documents = can.get_by_role("listitem").filter(has_text="documents")
    expect(documents).to_contain_text("GET Used")
    expect(documents).to_contain_text("POST Used")
    cannot = rights.get_by_role("region", name="It cannot, and why", exact=True)
    refusal = cannot.get_by_role("listitem").filter(has_text="does not have the delete permission on documents")
    expect(refusal).to_have_count(1)  # each reason once
    expect(refusal).to_contain_text("documents DELETE")
    history = page.get_by_role("region", name="History")
    expect(history).to_contain_text("token.created")
    expect(history.get_by_text("token.anomaly")).to_have_count(1)  # 203.0.113.0/24 only
    screenshot(page, "token-detail", full_page=True)
    assert refused == []
