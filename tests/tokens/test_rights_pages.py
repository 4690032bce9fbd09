"""The rights grid of the create and edit forms, and rights per scope on the list and detail pages,
used as a browser without JavaScript uses them (forms post and redirect)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser

import pytest

from tests.conftest import csrf_from, login

TOKENS = "/settings/api-tokens"


@dataclass
class Cell:
    value: str
    checked: bool
    disabled: bool
    reason: str | None  # the text of the element its aria-describedby names


class _Grid(HTMLParser):
    """The rights checkboxes of a page by accessible name (their <label for>), and element texts by id."""

    def __init__(self):
        super().__init__()
        self.inputs: dict[str, dict] = {}
        self.labels: dict[str, str] = {}
        self.texts: dict[str, str] = {}
        self._open: list[tuple[str, str | None, str | None]] = []  # (tag, id, label-for)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "input" and attrs.get("name") == "rights":
            self.inputs[attrs["id"]] = attrs
        if tag not in ("input", "br", "img", "meta", "link"):
            self._open.append((tag, attrs.get("id"), attrs.get("for") if tag == "label" else None))

    def handle_endtag(self, tag):
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data):
        for _, element_id, label_for in self._open:
            if element_id:
                self.texts[element_id] = self.texts.get(element_id, "") + data
            if label_for:
                self.labels[label_for] = self.labels.get(label_for, "") + data


def grid(page: str) -> dict[str, Cell]:
    parser = _Grid()
    parser.feed(page)
    cells = {}
    for input_id, attrs in parser.inputs.items():
        described = attrs.get("aria-describedby")
        cells[parser.labels[input_id].strip()] = Cell(
            attrs["value"], "checked" in attrs, "disabled" in attrs,
            parser.texts.get(described, "").strip() if described else None)
    return cells


def html(response) -> str:
    return response.get_data(as_text=True)


@pytest.fixture
def org(make):
    return make.org("business", name="Acme")


def signed_in(client, make, org, role: str):
    member = make.member(org, role)
    assert login(client, member).status_code == 302
    return member


def post(client, url: str, **fields):
    page = html(client.get(f"{TOKENS}/new"))
    return client.post(url, data={"csrf_token": csrf_from(page), **fields})


def create_form(**fields) -> dict:
    return {"name": "Sync", "type": "personal", "expiration": "365", "ip_allowlist": "", **fields}


# --------------------------------------------------------------------------- the grid


def test_the_grid_has_a_checkbox_per_scope_and_permission_with_only_documents_read_checked(client, make, org):
    signed_in(client, make, org, "owner")
    cells = grid(html(client.get(f"{TOKENS}/new")))
    assert set(cells) == {f"{scope} {permission}" for scope in
                          ("documents", "projects", "templates", "analytics", "billing", "tokens")
                          for permission in ("read", "write", "delete")}
    assert [name for name, cell in cells.items() if cell.checked] == ["documents read"]
    assert all(cell.value == name for name, cell in cells.items())
    assert not any(cell.disabled for cell in cells.values())  # an owner may grant every cell


def test_cells_the_role_cannot_grant_are_disabled_with_the_reason_shown(client, make, org):
    signed_in(client, make, org, "editor")
    page = html(client.get(f"{TOKENS}/new"))
    cells = grid(page)
    disabled = {name for name, cell in cells.items() if cell.disabled}
    scopes = ("documents", "projects", "templates", "analytics", "tokens")
    billing = {"billing read", "billing write", "billing delete"}
    assert disabled == {f"{scope} delete" for scope in scopes} | billing
    assert cells["documents delete"].reason == "Your role (editor) does not include the delete permission"
    assert cells["billing read"].reason == "Your role (editor) does not include the billing scope"
    assert "<li" in page and "Your role (editor) does not include the billing scope</li>" in page  # visible


def test_scopes_the_policy_does_not_allow_are_disabled_with_the_reason_shown(client, make, org):
    def restrict():
        from shared.core.extensions import db
        from shared.models import Organization

        db.session.get(Organization, org.id).policy_allowed_scopes = ["documents", "tokens"]
        db.session.commit()

    make.run(restrict)
    signed_in(client, make, org, "owner")
    cells = grid(html(client.get(f"{TOKENS}/new")))
    assert cells["projects read"].disabled
    assert cells["projects read"].reason == "Your organization does not allow the scope projects"
    assert not cells["documents write"].disabled and not cells["tokens delete"].disabled


def test_the_grid_creates_rights_per_scope(client, make, org):
    signed_in(client, make, org, "editor")
    response = post(client, TOKENS,
                    **create_form(rights=["documents read", "documents write", "projects read"]))
    assert response.status_code == 200 and "data-token-value" in html(response)
    token = _only_token(make)
    assert token.rights == {"documents": ["read", "write"], "projects": ["read"]}
    page = html(client.get(TOKENS))
    row = re.search(rf'<tr id="token-{token.public_id}".*?</tr>', page, re.DOTALL).group(0)
    chips = re.findall(r'<span class="chip" data-scope="[^"]+">(.*?)</span>', row)
    assert [re.sub(r"<[^>]+>", "", chip) for chip in chips] == ["documents read · write", "projects read"]


def _only_token(make):
    from shared.models import ApiToken

    [token] = make.rows(ApiToken)
    return token


def test_a_disabled_cell_sent_anyway_is_refused_beside_the_grid(client, make, org):
    signed_in(client, make, org, "editor")
    response = post(client, TOKENS, **create_form(rights=["documents read", "documents delete"]))
    assert response.status_code == 422
    message = "Your role (editor) does not include the delete permission"
    assert f'id="new-rights-error">{message}<' in html(response)
    # The form comes back as it was sent.
    assert {name for name, cell in grid(html(response)).items() if cell.checked} == {
        "documents read", "documents delete"}
    from shared.models import ApiToken

    assert make.rows(ApiToken) == []


def test_nothing_checked_is_a_field_error(client, make, org):
    signed_in(client, make, org, "editor")
    response = post(client, TOKENS, **create_form())
    assert response.status_code == 422
    assert 'id="new-rights-error">Choose at least one permission on one scope<' in html(response)


def test_a_form_of_the_older_shape_still_creates_the_cross_product(client, make, org):
    signed_in(client, make, org, "editor")
    response = post(client, TOKENS,
                    **create_form(scopes=["documents", "projects"], permissions=["read", "write"]))
    assert response.status_code == 200
    assert _only_token(make).rights == {"documents": ["read", "write"], "projects": ["read", "write"]}


# --------------------------------------------------------------------------- edit


def test_the_edit_form_shows_the_pairs_held_and_unknown_labels_and_saves_what_is_checked(client, make, org):
    member = signed_in(client, make, org, "editor")
    issued = make.token(member, rights={"documents": ["read", "custom:label"], "x-team": ["read"]})
    page = html(client.get(f"{TOKENS}/{issued.id}/edit"))
    cells = grid(page)
    assert {name for name, cell in cells.items() if cell.checked} == {
        "documents read", "documents custom:label", "x-team read"}
    # Unknown labels get a row and a column.
    assert "projects custom:label" in cells and "x-team write" in cells
    assert not cells["x-team read"].disabled  # kept and shown, grants nothing: nothing to refuse
    response = client.post(f"{TOKENS}/{issued.id}/edit", data={
        "csrf_token": csrf_from(page), "name": "Sync", "expiration": "keep",
        "rights": ["documents read", "documents write", "documents custom:label", "x-team read"]})
    assert response.status_code == 302
    assert make.get_token(issued.id).rights == {"documents": ["read", "write", "custom:label"],
                                                "x-team": ["read"]}


def test_pairs_the_creator_s_role_lost_are_shown_and_not_kept(client, make, org):
    from shared.core.extensions import db
    from shared.identity import accounts
    from shared.models import Membership

    owner = make.member(org, "owner")
    editor = make.member(org, "editor")
    issued = make.token(editor, rights={"documents": ["read", "write"]})
    make.run(lambda: accounts.set_role(db.session.get(Membership, editor.id), "viewer"))
    assert login(client, owner).status_code == 302
    page = html(client.get(f"{TOKENS}/{issued.id}/edit"))
    cells = grid(page)
    assert cells["documents write"].checked and cells["documents write"].disabled
    assert cells["documents write"].reason == (
        "The creator’s role (viewer) does not include the write permission")
    assert "they are not kept when you save" in re.sub(r"\s+", " ", page)
    client.post(f"{TOKENS}/{issued.id}/edit", data={"csrf_token": csrf_from(page), "name": "x",
                                                   "expiration": "keep", "rights": ["documents read"]})
    assert make.get_token(issued.id).rights == {"documents": ["read"]}


# --------------------------------------------------------------------------- detail and hub


def test_the_detail_page_shows_rights_per_scope_and_explains_each_cell(client, make, org):
    member = signed_in(client, make, org, "editor")
    issued = make.token(member, rights={"documents": ["read", "write"], "projects": ["read"]})
    page = html(client.get(f"{TOKENS}/{issued.id}"))
    assert '<span class="chip" data-scope="documents"><code>documents</code> read · write</span>' in page
    assert re.search(r'<span class="chip" data-scope="projects"><code>projects</code> read</span>', page)
    # What it can do comes first, per scope; what it cannot is grouped by reason, each reason once.
    assert re.search(r'data-scope="documents" data-method="PATCH" data-allowed="yes"', page)
    assert re.search(r'data-scope="projects" data-method="POST" data-allowed="no"', page)
    assert page.count("The token does not have the write permission on projects") == 1


def test_the_hub_grid_follows_the_partner_role(client, make, org):
    partner_member = make.member(org, "partner_member", partner_id=make.partner(org))
    assert login(client, partner_member).status_code == 302
    cells = grid(html(client.get("/hub/api-tokens/new")))
    assert {name for name, cell in cells.items() if not cell.disabled} == {
        f"{scope} read" for scope in ("documents", "projects", "templates", "analytics", "tokens")}
    assert cells["documents write"].reason == (
        "Your role (partner_member) does not include the write permission")
