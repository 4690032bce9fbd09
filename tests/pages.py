"""The portal's pages read without a browser (Flask test client, CSRF on): signing in, the CSRF token of
a form, the create form's defaults, the secret shown once, a token's row and its buttons.

A plain module (neither a test module nor a conftest): the tests import from here.
"""

from __future__ import annotations

import re

from sqlalchemy import func, select

from tests.conftest import csrf_from, login

TOKENS = "/settings/api-tokens"
HTMX = {"HX-Request": "true"}


def signed_in(client, member):
    response = login(client, member)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def csrf(client, url: str = TOKENS) -> str:
    return csrf_from(client.get(url).get_data(as_text=True))


def create_form(**fields) -> dict:
    """What pressing Enter in the Name field sends: the form's defaults plus `fields`."""
    data = {"name": "Deploy bot", "description": "", "type": "personal", "rights": ["documents read"],
            "expiration": "365", "expiration_date": "", "ip_allowlist": ""}
    data.update(fields)
    return data


def shown_secret(response) -> str:
    match = re.search(r"data-token-value>(kw_[0-9a-f]{64})<", response.get_data(as_text=True))
    assert match, "no secret shown"
    return match.group(1)


def token_count(make) -> int:
    from shared.core.extensions import db
    from shared.models import ApiToken

    return make.run(lambda: db.session.scalar(select(func.count()).select_from(ApiToken)))


def html(response) -> str:
    return response.get_data(as_text=True)


def row_html(page: str, public_id: str) -> str:
    match = re.search(rf'<tr id="token-{public_id}".*?</tr>', page, re.S)
    assert match, f"no row for {public_id}"
    return match.group(0)


def button_labels(fragment: str) -> set[str]:
    return {re.sub(r"<[^>]+>|\s+", " ", label).strip()
            for label in re.findall(r"<button[^>]*>(.*?)</button>", fragment, re.S)}
