"""The rights grid in a real browser, by accessible names: `<scope> <permission>` checkboxes,
`documents read` alone checked, cells the role cannot grant disabled with their reason; with
JavaScript and without."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser


@pytest.fixture
def editor(make):
    org = make.org("business", name="Acme")
    return make.member(org, "editor", email="eddie@acme.test")


def sign_in(page: Page, member) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(member.email)
    page.get_by_label("Password").fill(member.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="API tokens", exact=True)).to_be_visible()


def call(server, secret: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(server.url + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {secret}",
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def generate_with_the_grid(page: Page, server, name: str) -> str:
    """Open the form, check what the token needs, press Enter in Name; returns the shown secret."""
    page.get_by_role("button", name="Generate token").click()
    grid = page.get_by_role("group", name="Rights")
    expect(grid.get_by_label("documents read", exact=True)).to_be_checked()
    checked = grid.locator("input[type=checkbox]:checked")
    expect(checked).to_have_count(1)

    # What the editor's role cannot grant is there, disabled, with its reason in view.
    delete = grid.get_by_label("documents delete", exact=True)
    expect(delete).to_be_disabled()
    expect(delete).to_have_accessible_description("Your role (editor) does not include the delete permission")
    expect(grid.get_by_label("billing read", exact=True)).to_be_disabled()
    expect(grid.get_by_text("Your role (editor) does not include the billing scope")).to_be_visible()

    grid.get_by_label("documents write", exact=True).check()
    grid.get_by_label("projects read", exact=True).check()
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Name", exact=True).press("Enter")
    value = page.locator("[data-token-value]")
    expect(value).to_be_visible()
    return value.inner_text().strip()


def check_the_token_writes_documents_and_only_reads_projects(server, secret: str) -> None:
    status, body = call(server, secret, "GET", "/api/v1/me")
    assert status == 200 and body["token"]["rights"] == {"documents": ["read", "write"], "projects": ["read"]}
    assert call(server, secret, "POST", "/api/v1/documents", {"title": "from the grid"})[0] == 201
    assert call(server, secret, "GET", "/api/v1/projects")[0] == 200
    status, body = call(server, secret, "GET", "/api/v1/templates")
    assert status == 403 and body["error"]["required"] == {"scope": "templates", "permission": "read"}


def test_the_grid_makes_a_token_that_writes_documents_and_only_reads_projects(page, editor, server,
                                                                              screenshot):
    sign_in(page, editor)
    secret = generate_with_the_grid(page, server, "Docs sync")
    check_the_token_writes_documents_and_only_reads_projects(server, secret)

    row = page.get_by_role("row").filter(has_text="Docs sync")
    expect(row).to_contain_text("documents read · write")
    expect(row).to_contain_text("projects read")
    row.get_by_role("link", name="Docs sync").click()
    rights = page.get_by_role("region", name="Effective rights")
    can = rights.get_by_role("region", name="It can", exact=True).get_by_role("listitem")
    expect(can.filter(has_text="documents")).to_contain_text("POST")
    expect(can.filter(has_text="projects")).to_contain_text("GET")
    expect(can.filter(has_text="projects")).not_to_contain_text("POST")
    refused = rights.get_by_role("region", name="It cannot, and why", exact=True).get_by_role("listitem")
    expect(refused.filter(has_text="The token does not have the write permission on projects")
           ).to_contain_text("projects POST")
    screenshot(page, "rights-detail")


def test_the_grid_works_without_javascript(browser, server, editor):
    context = browser.new_context(base_url=server.url, java_script_enabled=False, locale="en-US",
                                  timezone_id="UTC")
    context.set_default_timeout(10_000)
    try:
        page = context.new_page()
        sign_in(page, editor)
        secret = generate_with_the_grid(page, server, "No script sync")
        check_the_token_writes_documents_and_only_reads_projects(server, secret)
    finally:
        context.close()


def test_editing_in_place_changes_the_pairs(page, editor, make, server):
    issued = make.token(editor, name="Reports", rights={"documents": ["read"]})
    sign_in(page, editor)
    reports = page.get_by_role("row").filter(has_text="Reports")
    reports.get_by_role("button", name="Actions for Reports").click()
    reports.get_by_role("button", name="Edit", exact=True).click()
    form = page.locator("tr.edit-row")
    grid = form.get_by_role("group", name="Rights")
    expect(grid.get_by_label("documents read", exact=True)).to_be_checked()
    grid.get_by_label("templates read", exact=True).check()
    grid.get_by_label("documents read", exact=True).uncheck()
    form.get_by_role("button", name="Save changes").click()
    expect(form).to_have_count(0)  # the edit row is swapped back for the token's row
    expect(page.get_by_role("row").filter(has_text="Reports")).to_contain_text("templates read")
    assert make.get_token(issued.id).rights == {"templates": ["read"]}
    assert call(server, issued.secret, "GET", "/api/v1/documents")[0] == 403
    assert call(server, issued.secret, "GET", "/api/v1/templates")[0] == 200
