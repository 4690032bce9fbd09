"""Page helpers shared by the browser tests: signing in, a token's row and its actions menu, a token
against the live server, and Content Security Policy refusals on the console.

A plain module (neither a test module nor a conftest): test files import from here, never from each other.
"""

from __future__ import annotations

import urllib.error
import urllib.request

from playwright.sync_api import Page, expect


def sign_in(page: Page, member) -> None:
    """Sign in and wait for a heading containing "API tokens" (case-insensitive substring match)."""
    page.goto("/login")
    page.get_by_label("Email").fill(member.email)
    page.get_by_label("Password").fill(member.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="API tokens")).to_be_visible()


def sign_in_exact_heading(page: Page, member) -> None:
    """Sign in and wait for the heading named exactly "API tokens": unambiguous also when the list is
    empty and shows "No API tokens yet" beside it."""
    page.goto("/login")
    page.get_by_label("Email").fill(member.email)
    page.get_by_label("Password").fill(member.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="API tokens", exact=True)).to_be_visible()


def api_status(server, secret: str) -> int:
    request = urllib.request.Request(server.url + "/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def row(page: Page, name: str):
    return page.get_by_role("row").filter(has_text=name)


def choose(page: Page, name: str, action: str) -> None:
    """Open the row's menu `Actions for <name>` and choose `action` in it."""
    the_row = row(page, name)
    the_row.get_by_role("button", name=f"Actions for {name}").click()
    the_row.get_by_role("button", name=action, exact=True).click()


def watch_csp(page: Page) -> list[str]:
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text)
            if "Content Security Policy" in message.text else None)
    return refused
