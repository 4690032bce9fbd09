"""The token list at a laptop's and a phone's width: nothing scrolls sideways, neither the page nor
any box in it, with many tokens, a row in its grace period and a value just shown; on a phone the
rows are stacked cards. Screenshots of both widths go to test-artifacts/screenshots/."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from tests.browser.helpers import sign_in

pytestmark = pytest.mark.browser

LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

# Whatever scrolls sideways (the page or a box in it), and whatever sticks out of the main column
# or of its own card (a Copy button beyond the panel's edge), as "what: how wide vs room".
OVERFLOW = """() => {
  const found = [];
  const page = document.scrollingElement;
  if (page.scrollWidth > page.clientWidth) found.push(`page: ${page.scrollWidth} > ${page.clientWidth}`);
  const classes = el => typeof el.className === 'string' && el.className
    ? '.' + el.className.trim().split(/\\s+/).join('.') : '';
  const name = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + classes(el);
  for (const el of document.querySelectorAll('body *')) {
    const style = getComputedStyle(el);
    if (['auto', 'scroll'].includes(style.overflowX) && el.scrollWidth > el.clientWidth + 1) {
      found.push(`scroll box ${name(el)}: ${el.scrollWidth} > ${el.clientWidth}`);
    }
  }
  const main = document.querySelector('main').getBoundingClientRect();
  for (const el of document.querySelectorAll('main button, main a, main code, main input, main select')) {
    const box = el.getBoundingClientRect();
    if (!box.width || getComputedStyle(el).visibility === 'hidden') continue;
    const card = el.closest('.table-card, .secret-panel, .card');
    const room = card ? Math.min(card.getBoundingClientRect().right, main.right) : main.right;
    if (box.right > room + 1) {
      found.push(`${name(el)} sticks out: ${Math.round(box.right)} > ${Math.round(room)}`);
    }
  }
  return found;
}"""


def _seed(make):
    """An owner with 17 tokens like a real team's, one of them regenerated with a 24-hour grace period."""
    from sqlalchemy import update

    from shared.audit.record import Actor
    from shared.core.extensions import db
    from shared.models import ApiToken, Membership
    from shared.tokens import lifecycle

    org = make.org("business", name="Acme")
    make.project(org, "Website")
    owner = make.member(org, "owner", email="olivia@acme.test")
    editor = make.member(org, "editor", email="eddie.the.editor.with.a.long.address@acme.test")
    names = ["CI deploys", "Nightly export to the data warehouse", "Analytics", "Local scripts",
             "Billing sync", "Slack bot", "Zapier", "Backup", "Staging smoke tests", "Docs reader",
             "Terraform", "Support dashboard", "Mobile app release pipeline", "Grafana", "Importer",
             "Legacy importer (do not use)", "Partner feed"]
    issued = []
    for index, name in enumerate(names):
        creator = editor if index % 4 == 3 else owner
        scopes = ["documents", "projects", "templates", "analytics"][: 1 + index % 4]
        issued.append(make.token(creator, name=name, scopes=scopes,
                                 permissions=["read", "write"] if index % 2 else ["read"],
                                 description="Runs every night and writes a report to the shared drive"
                                 if index % 3 == 0 else "", expires_in_days=5 if index == 2 else 365))
    now = datetime.now(UTC)

    def history():
        for index, token in enumerate(issued):
            db.session.execute(update(ApiToken).where(ApiToken.public_id == token.id).values(
                usage_count=1_234_567 // (index + 1), documents_processed=98_765 // (index + 1),
                last_used_at=now - timedelta(hours=3 * index + 1), last_used_ip="203.0.113.7"))
        db.session.commit()
        token = db.session.query(ApiToken).filter_by(public_id=issued[0].id).one()
        lifecycle.regenerate_token(Actor(membership=db.session.get(Membership, owner.id)), token, "24h")

    make.run(history)
    return owner


def _overflow(page: Page) -> list[str]:
    return page.evaluate(OVERFLOW)


def _generate(page: Page, name: str) -> None:
    page.get_by_role("button", name="Generate token").click()
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Name", exact=True).press("Enter")
    expect(page.locator("[data-token-value]")).to_be_visible()


@pytest.mark.parametrize("size", [LAPTOP, PHONE], ids=["1280", "390"])
def test_the_list_fits_without_sideways_scrolling(browser, server, make, screenshot, size):
    owner = _seed(make)
    context = browser.new_context(base_url=server.url, viewport=size, locale="en-US", timezone_id="UTC")
    context.set_default_timeout(10_000)
    try:
        page = context.new_page()
        sign_in(page, owner)
        expect(page.get_by_text("old value valid until").first).to_be_visible()
        _generate(page, "Release automation for the mobile apps")
        assert _overflow(page) == []
        copy = page.get_by_role("button", name="Copy")
        box, viewport = copy.bounding_box(), page.viewport_size
        assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]
        screenshot(page, f"token-list-{size['width']}", full_page=True)
        if size is PHONE:
            # Stacked cards: a row is a block of its own, not a line of a table.
            displays = page.locator("tr.token-row").evaluate_all(
                "rows => rows.map(r => getComputedStyle(r).display)")
            assert displays and all(display != "table-row" for display in displays)
        page.reload()  # the list alone, the value gone
        assert _overflow(page) == []
    finally:
        context.close()
