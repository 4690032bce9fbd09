"""The data API: every access rule, per endpoint, plus documents CRUD, filters and the export.

One table lists the endpoints with the scope and method each needs; the rule tests are parametrized
over it. A `world` holds one organization with every kind of document (per project, per visibility
group, per partner) and a second organization with one of each thing; each kind of token is made on
demand, and `World.seen` answers what that token can see through an endpoint.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cached_property

import pytest

from tests.api.helpers import ENDPOINTS, Endpoint, call
from tests.conftest import Factory, Issued

ALL_PERMISSIONS = ["read", "write", "delete"]
ALL_SCOPES = ["documents", "projects", "templates", "analytics", "billing", "tokens"]
BY_NAME = {str(e): e for e in ENDPOINTS}
READERS = [e for e in ENDPOINTS if e.reads]
LISTS = [BY_NAME[name] for name in ("GET /documents", "GET /projects", "GET /organizations/{org}/projects",
                                    "GET /templates")]
FILTERED = [BY_NAME["GET /documents"], BY_NAME["GET /export/all/{org}"]]
WITH_ORG_ID = [e for e in ENDPOINTS if "{org}" in e.path]
WITH_DOC_ID = [e for e in ENDPOINTS if e.takes_document]

# Organization A ("Acme"): one document of each kind, titled by what makes it special.
DOCUMENTS = {  # title: (project, visibility group, partner)
    "plain": (None, None, None),
    "apollo": ("Apollo", None, None),
    "borealis": ("Borealis", None, None),
    "emea": (None, "EMEA", None),
    "apac": (None, "APAC", None),
    "xylo": (None, None, "Xylo"),
    "yonder": (None, None, "Yonder"),
}
A_DOCUMENTS = set(DOCUMENTS)
A_PROJECTS = {"Apollo", "Borealis"}
A_TEMPLATES = {"Invoice", "Contract"}
A_BILLING = {"business, 120 credits"}

# What each kind of token sees through each kind of endpoint; a string is the refusal's error code.
# Usage (analytics) lists tokens: in these tests each organization has just the caller's.
SEES = {
    "organization": {"documents": A_DOCUMENTS, "projects": A_PROJECTS, "templates": A_TEMPLATES,
                     "billing": A_BILLING, "usage": {"organization token"}},
    "project": {"documents": {"apollo"}, "projects": {"Apollo"}, "templates": A_TEMPLATES,
                "billing": A_BILLING, "usage": {"project token"}},
    "partner": {"documents": {"xylo"}, "projects": A_PROJECTS, "templates": A_TEMPLATES,
                "billing": "insufficient_scope",  # partner roles never hold the billing scope
                "usage": {"partner token"}},
    "group": {"documents": A_DOCUMENTS - {"apac"}, "projects": A_PROJECTS, "templates": A_TEMPLATES,
              "billing": A_BILLING, "usage": {"group token"}},
    "other org": {"documents": {"outer"}, "projects": {"Outer"}, "templates": {"Outer template"},
                  "billing": {"enterprise, 999 credits"}, "usage": {"other org token"}},
}


def error_code(response) -> str:
    return response.get_json()["error"]["code"]


def export_lines(response) -> list[dict]:
    return [json.loads(line) for line in response.get_data(as_text=True).splitlines()]


def markers(endpoint: Endpoint, response) -> set[str]:
    """What a successful response shows, as comparable names."""
    if endpoint.path.startswith("/export"):
        return {line["title"] for line in export_lines(response)}
    body = response.get_json()
    if endpoint.reads == "billing":
        return {f"{body['plan']}, {body['credit_balance']} credits"}
    if endpoint.reads == "documents":
        return {body["title"]} if "title" in body else {item["title"] for item in body["items"]}
    return {item["name"] for item in body["items"]}


class World:
    """Org A with every kind of document; org B with one of everything. Tokens made when asked for."""

    def __init__(self, make: Factory):
        self.make = make
        self._tokens: dict[str, Issued] = {}
        self.org = make.org("business", name="Acme")
        self.other_org = make.org("enterprise", name="Outer")
        make.run(self._fill)  # one transaction: this fixture runs for most tests of the file

    def _fill(self) -> None:
        from shared.core.extensions import db
        from shared.models import (
            Document,
            Organization,
            Partner,
            Project,
            Template,
            VisibilityGroup,
        )

        def add(row):
            db.session.add(row)
            db.session.flush()
            return row.id

        a, b = self.org.id, self.other_org.id
        self.projects = {name: add(Project(organization_id=a, name=name)) for name in sorted(A_PROJECTS)}
        self.groups = {name: add(VisibilityGroup(organization_id=a, name=name)) for name in ("EMEA", "APAC")}
        self.partners = {name: add(Partner(organization_id=a, name=name)) for name in ("Xylo", "Yonder")}
        self.docs = {
            title: add(Document(organization_id=a, title=title, project_id=self.projects.get(project),
                                visibility_group_id=self.groups.get(group), partner_id=self.partners.get(partner)))
            for title, (project, group, partner) in DOCUMENTS.items()}
        self.outer_project = add(Project(organization_id=b, name="Outer"))
        self.docs["outer"] = add(Document(organization_id=b, title="outer", project_id=self.outer_project))
        db.session.add_all([Template(organization_id=a, name=name) for name in sorted(A_TEMPLATES)]
                           + [Template(organization_id=b, name="Outer template")])
        db.session.get(Organization, a).credit_balance = 120
        db.session.get(Organization, b).credit_balance = 999
        db.session.commit()

    @cached_property
    def owner(self):
        return self.make.api_member(self.org, "owner")

    def member_of_kind(self, kind: str):
        if kind in ("organization", "project"):
            return self.owner
        if kind == "partner":
            return self.make.api_member(self.org, "partner_admin", partner_id=self.partners["Xylo"])
        if kind == "group":
            admin = self.make.api_member(self.org, "admin")
            self.make.run(lambda: self._join(admin, "EMEA"))
            return admin
        return self.make.api_member(self.other_org, "owner")

    def _join(self, member, group: str) -> None:
        from shared.core.extensions import db
        from shared.models import Membership, VisibilityGroup

        membership = db.session.get(Membership, member.id)
        membership.groups.append(db.session.get(VisibilityGroup, self.groups[group]))
        db.session.commit()

    def token(self, kind: str) -> Issued:
        """The kind's token, with every right its creator's role allows."""
        if kind not in self._tokens:
            member = self.member_of_kind(kind)
            partner = kind == "partner"
            payload = {
                "name": f"{kind} token", "expires_at": None,
                "permissions": ["read", "write"] if partner else ALL_PERMISSIONS,
                "scopes": [s for s in ALL_SCOPES if s != "billing"] if partner else ALL_SCOPES,
                "type": {"organization": "organization", "project": "project"}.get(kind, "personal"),
            }
            if kind == "project":
                payload["project_id"] = self.projects["Apollo"]
            self._tokens[kind] = self.make.token(member, **payload)
        return self._tokens[kind]

    def org_id_of(self, kind: str) -> int:
        return (self.other_org if kind == "other org" else self.org).id

    def seen(self, client, kind: str, endpoint: Endpoint) -> set[str] | str:
        """What a token of `kind` sees through `endpoint` (an endpoint on one document is tried on each)."""
        issued = self.token(kind)
        if endpoint.takes_document:
            visible = set()
            for title, doc_id in self.docs.items():
                response = call(client, endpoint, issued, doc=doc_id)
                if response.status_code == 404:
                    assert error_code(response) == "not_found"
                    continue
                assert response.status_code == endpoint.ok, (title, response.get_json())
                visible.add(title)
            return visible
        response = call(client, endpoint, issued, org=self.org_id_of(kind))
        if response.status_code == 403:
            return error_code(response)
        assert response.status_code == 200, response.get_json()
        return markers(endpoint, response)

    def snapshot(self) -> list[tuple]:
        """Every document row, to show that a refused request changed nothing."""
        from sqlalchemy import select

        from shared.core.extensions import db
        from shared.models import Document

        return self.make.run(lambda: [
            (d.id, d.title, d.status, d.project_id, d.visibility_group_id, d.partner_id)
            for d in db.session.scalars(select(Document).order_by(Document.id))])


@pytest.fixture
def world(make, clock) -> World:
    return World(make)  # everything in it created at the clock's start, 2026-11-23 12:00 UTC


def owner_token(world: World, **payload) -> Issued:
    payload.setdefault("expires_at", None)
    return world.make.token(world.owner, **payload)


# --------------------------------------------------------------------------- scope and permission


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_least_privilege_token_is_enough(client, world, endpoint):
    issued = owner_token(world, scopes=[endpoint.scope], permissions=[endpoint.permission])
    response = call(client, endpoint, issued, doc=world.docs["plain"], org=world.org.id)
    assert response.status_code == endpoint.ok, response.get_json()


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_endpoint_refuses_a_token_without_its_scope(client, world, endpoint):
    issued = owner_token(world, scopes=[s for s in ALL_SCOPES if s != endpoint.scope], permissions=ALL_PERMISSIONS)
    before = world.snapshot()
    response = call(client, endpoint, issued, doc=world.docs["plain"], org=world.org.id)
    assert response.status_code == 403 and error_code(response) == "insufficient_scope"
    assert response.get_json()["error"]["required"] == {"scope": endpoint.scope, "permission": endpoint.permission}
    assert set(response.get_json()) == {"error"}  # no data beside the error
    assert world.snapshot() == before


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_endpoint_refuses_a_token_without_the_methods_permission(client, world, endpoint):
    issued = owner_token(world, scopes=ALL_SCOPES, permissions=[p for p in ALL_PERMISSIONS if p != endpoint.permission])
    before = world.snapshot()
    response = call(client, endpoint, issued, doc=world.docs["plain"], org=world.org.id)
    assert response.status_code == 403 and error_code(response) == "insufficient_permission"
    assert response.get_json()["error"]["required"] == {"scope": endpoint.scope, "permission": endpoint.permission}
    assert set(response.get_json()) == {"error"}
    assert world.snapshot() == before


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_creators_current_role_caps_the_token(client, world, endpoint):
    """An owner's all-powerful token, after the owner becomes a viewer: read only, no billing."""
    from shared.core.extensions import db
    from shared.identity import accounts
    from shared.models import Membership

    issued = owner_token(world, scopes=ALL_SCOPES, permissions=ALL_PERMISSIONS)
    world.make.run(lambda: accounts.set_role(db.session.get(Membership, world.owner.id), "viewer"))
    response = call(client, endpoint, issued, doc=world.docs["plain"], org=world.org.id)
    if endpoint.scope == "billing":
        assert response.status_code == 403 and error_code(response) == "insufficient_scope"
    elif endpoint.permission != "read":
        assert response.status_code == 403 and error_code(response) == "insufficient_permission"
    else:
        assert response.status_code == 200


# --------------------------------------------------------------------------- who sees what


@pytest.mark.parametrize("endpoint", READERS, ids=str)
def test_organization_token_sees_its_whole_organization(client, world, endpoint):
    assert world.seen(client, "organization", endpoint) == SEES["organization"][endpoint.reads]


@pytest.mark.parametrize("endpoint", READERS, ids=str)
def test_project_token_sees_only_its_project(client, world, endpoint):
    assert world.seen(client, "project", endpoint) == SEES["project"][endpoint.reads]


@pytest.mark.parametrize("endpoint", [e for e in READERS if e.method != "DELETE"], ids=str)
def test_partner_token_sees_only_its_partners_documents(client, world, endpoint):
    assert world.seen(client, "partner", endpoint) == SEES["partner"][endpoint.reads]


@pytest.mark.parametrize("endpoint", READERS, ids=str)
def test_visibility_group_member_sees_only_ungrouped_and_own_group_documents(client, world, endpoint):
    assert world.seen(client, "group", endpoint) == SEES["group"][endpoint.reads]


@pytest.mark.parametrize("endpoint", READERS, ids=str)
def test_another_organizations_token_sees_none_of_it(client, world, endpoint):
    assert world.seen(client, "other org", endpoint) == SEES["other org"][endpoint.reads]


def test_partner_roles_cannot_delete_even_their_partners_documents(client, world):
    response = call(client, BY_NAME["DELETE /documents/{doc}"], world.token("partner"), doc=world.docs["xylo"])
    assert response.status_code == 403 and error_code(response) == "insufficient_permission"
    assert "xylo" in {row[1] for row in world.snapshot()}


def test_project_token_writes_only_into_its_project(client, world):
    issued = world.token("project")
    created = client.post("/api/v1/documents", headers=issued.headers, json={"title": "Defaulted"})
    assert created.status_code == 201 and created.get_json()["project_id"] == world.projects["Apollo"]
    elsewhere = client.post("/api/v1/documents", headers=issued.headers,
                            json={"title": "Elsewhere", "project_id": world.projects["Borealis"]})
    assert elsewhere.status_code == 400 and "project_id" in elsewhere.get_json()["error"]["fields"]
    for project_id in (world.projects["Borealis"], None):
        moved = client.patch(f"/api/v1/documents/{world.docs['apollo']}", headers=issued.headers,
                             json={"project_id": project_id})
        assert moved.status_code == 400 and "project_id" in moved.get_json()["error"]["fields"]
    assert "Elsewhere" not in {row[1] for row in world.snapshot()}
    assert (world.docs["apollo"], world.projects["Apollo"]) in {(row[0], row[3]) for row in world.snapshot()}


def test_partner_token_creates_documents_of_its_partner(client, world):
    issued = world.token("partner")
    created = client.post("/api/v1/documents", headers=issued.headers, json={"title": "From Xylo"})
    assert created.status_code == 201 and created.get_json()["partner_id"] == world.partners["Xylo"]
    assert world.seen(client, "partner", BY_NAME["GET /documents"]) == {"xylo", "From Xylo"}


def test_group_member_files_documents_only_into_own_groups(client, world):
    issued = world.token("group")
    refused = client.post("/api/v1/documents", headers=issued.headers,
                          json={"title": "Into APAC", "visibility_group_id": world.groups["APAC"]})
    assert refused.status_code == 400 and "visibility_group_id" in refused.get_json()["error"]["fields"]
    moved = client.patch(f"/api/v1/documents/{world.docs['emea']}", headers=issued.headers,
                         json={"visibility_group_id": world.groups["APAC"]})
    assert moved.status_code == 400 and "visibility_group_id" in moved.get_json()["error"]["fields"]
    created = client.post("/api/v1/documents", headers=issued.headers,
                          json={"title": "Into EMEA", "visibility_group_id": world.groups["EMEA"]})
    assert created.status_code == 201 and created.get_json()["visibility_group_id"] == world.groups["EMEA"]


def without_request_id(response) -> dict:
    """The error body less its request id (each response names its own request)."""
    body = response.get_json()
    assert body["error"].pop("request_id") == response.headers["X-Request-Id"]
    return body


@pytest.mark.parametrize("field", ["project_id", "visibility_group_id"])
def test_another_organizations_project_or_group_is_refused_like_an_unknown_one(client, world, field):
    foreign = {"project_id": world.projects["Apollo"], "visibility_group_id": world.groups["EMEA"]}[field]
    issued = world.token("other org")
    answers = [client.post("/api/v1/documents", headers=issued.headers, json={"title": "x", field: value})
               for value in (foreign, 2_000_000_000)]
    assert [a.status_code for a in answers] == [400, 400]
    assert without_request_id(answers[0]) == without_request_id(answers[1])
    assert field in answers[0].get_json()["error"]["fields"]


@pytest.mark.parametrize("endpoint", WITH_DOC_ID + WITH_ORG_ID, ids=str)
def test_another_organizations_ids_answer_404_like_unknown_ones(client, world, endpoint):
    issued = world.token("organization")
    before = world.snapshot()
    foreign = call(client, endpoint, issued, doc=world.docs["outer"], org=world.other_org.id)
    unknown = call(client, endpoint, issued, doc=2_000_000_000, org=2_000_000_000)
    assert foreign.status_code == 404 and error_code(foreign) == "not_found"
    assert without_request_id(foreign) == without_request_id(unknown)
    assert "outer" not in foreign.get_data(as_text=True).lower()
    assert world.snapshot() == before


def test_impossible_document_ids_answer_404(client, world):
    for doc_id in ["0", "-1", "abc", "2147483648", "99999999999999999999"]:
        response = client.get(f"/api/v1/documents/{doc_id}", headers=world.token("organization").headers)
        assert response.status_code == 404 and error_code(response) == "not_found", doc_id


def test_analytics_shows_requests_per_day_for_the_tokens_the_caller_may_see(client, world, clock):
    owner = world.token("organization")
    editor = world.make.api_member(world.org, "editor")
    editors = world.make.token(editor, name="editor token", scopes=["analytics"])
    outsider = world.token("other org")
    for issued in (owner, editors, outsider):
        client.get("/api/v1/me", headers=issued.headers)
    clock.advance(days=1)
    client.get("/api/v1/me", headers=editors.headers)

    def usage(issued):
        response = client.get("/api/v1/analytics/usage", headers=issued.headers, query_string={"days": 2})
        assert response.status_code == 200
        return {item["name"]: [(d["date"], d["requests"]) for d in item["usage"]]
                for item in response.get_json()["items"]}

    # Usage reaches the database through the flusher (within about two intervals; here on demand),
    # so an analytics call shows the requests written before it, and itself only after a flush.
    world.make.flush_usage()
    assert usage(editors) == {"editor token": [("2026-11-23", 1), ("2026-11-24", 1)]}
    world.make.flush_usage()
    assert usage(owner) == {"organization token": [("2026-11-23", 1), ("2026-11-24", 0)],
                            "editor token": [("2026-11-23", 1), ("2026-11-24", 2)]}
    assert set(usage(outsider)) == {"other org token"}


# --------------------------------------------------------------------------- pagination and bad input


@pytest.mark.parametrize("endpoint", LISTS, ids=str)
def test_pages_cover_every_item_exactly_once(client, world, endpoint):
    issued = world.token("organization")
    expected = SEES["organization"][endpoint.reads]
    names, page = [], 1
    while True:
        response = call(client, endpoint, issued, org=world.org.id, query={"page": page, "per_page": 2})
        assert response.status_code == 200
        body = response.get_json()
        assert (body["page"], body["per_page"], body["total"]) == (page, 2, len(expected))
        if not body["items"]:
            break
        assert len(body["items"]) <= 2
        names += [item.get("title") or item.get("name") for item in body["items"]]
        page += 1
    assert sorted(names) == sorted(expected)
    assert page == (len(expected) + 1) // 2 + 1  # the first empty page is the one after the last


@pytest.mark.parametrize("endpoint", LISTS, ids=str)
def test_pagination_out_of_bounds_is_400_and_100_per_page_is_fine(client, world, endpoint):
    issued = world.token("organization")
    for query, field in [({"per_page": 0}, "per_page"), ({"per_page": 101}, "per_page"),
                         ({"per_page": -5}, "per_page"), ({"per_page": "ten"}, "per_page"),
                         ({"per_page": "1.5"}, "per_page"), ({"page": 0}, "page"), ({"page": "x"}, "page"),
                         ({"page": "9" * 30}, "page")]:
        response = call(client, endpoint, issued, org=world.org.id, query=query)
        assert response.status_code == 400, query
        assert error_code(response) == "invalid_request" and field in response.get_json()["error"]["fields"]
        assert "items" not in response.get_json()
    assert call(client, endpoint, issued, org=world.org.id, query={"per_page": 100}).status_code == 200


BAD_FILTERS = {
    "unknown status": ({"status": "deleted"}, "status"),
    "project id not a number": ({"project_id": "apollo"}, "project_id"),
    "project id zero": ({"project_id": "0"}, "project_id"),
    "project id beyond any row": ({"project_id": "2147483648"}, "project_id"),
    "not a date": ({"created_after": "yesterday"}, "created_after"),
    "impossible date": ({"created_before": "2026-02-30"}, "created_before"),
    "year 0 in UTC": ({"created_after": "0001-01-01T00:00:00+01:00"}, "created_after"),
    "year 10000 in UTC": ({"created_before": "9999-12-31T23:00:00-05:00"}, "created_before"),
    "range reversed": ({"created_after": "2026-11-24", "created_before": "2026-11-23"}, "created_after"),
    "query too long": ({"q": "x" * 201}, "q"),
    "NUL in query": ({"q": "a\x00b"}, "q"),
    "unknown parameter": ({"sort": "title"}, "sort"),
}


@pytest.mark.parametrize("case", BAD_FILTERS, ids=str)
def test_bad_filters_answer_400_never_500(client, world, case):
    query, field = BAD_FILTERS[case]
    for endpoint in FILTERED:  # the list and the export
        response = call(client, endpoint, world.token("organization"), org=world.org.id, query=query)
        assert response.status_code == 400, endpoint
        assert error_code(response) == "invalid_request" and field in response.get_json()["error"]["fields"]


BAD_BODIES = {
    "empty title": ({"title": ""}, "title"),
    "blank title": ({"title": "   "}, "title"),
    "title too long": ({"title": "t" * 201}, "title"),
    "title not text": ({"title": 7}, "title"),
    "title null": ({"title": None}, "title"),
    "NUL in title": ({"title": "a\x00b"}, "title"),
    "lone surrogate in title": ({"title": "a\ud800b"}, "title"),
    "unknown status": ({"title": "t", "status": "deleted"}, "status"),
    "project not a number": ({"title": "t", "project_id": "1"}, "project_id"),
    "unknown project": ({"title": "t", "project_id": 2_000_000_000}, "project_id"),
    "group id too large": ({"title": "t", "visibility_group_id": 2**40}, "visibility_group_id"),
    "unknown field": ({"title": "t", "owner": "me"}, "owner"),
    "body too long": ({"title": "t", "body": "b" * 20_001}, "body"),
}


@pytest.mark.parametrize("case", BAD_BODIES, ids=str)
def test_bad_document_bodies_answer_400_and_change_nothing(client, world, case):
    body, field = BAD_BODIES[case]
    before = world.snapshot()
    for path in ("/api/v1/documents", f"/api/v1/documents/{world.docs['plain']}"):
        method = "POST" if path.endswith("documents") else "PATCH"
        response = client.open(path, method=method, headers=world.token("organization").headers, json=body)
        assert response.status_code == 400, method
        assert error_code(response) == "invalid_request" and field in response.get_json()["error"]["fields"]
    assert world.snapshot() == before


def test_document_body_must_be_a_json_object(client, world):
    headers = {**world.token("organization").headers, "Content-Type": "application/json"}
    for raw in ["not json", "[]", "null", '"title"']:
        response = client.post("/api/v1/documents", headers=headers, data=raw)
        assert response.status_code == 400 and error_code(response) == "invalid_request", raw


def test_analytics_days_out_of_bounds_is_400(client, world):
    for days in ["0", "91", "week", "-1"]:
        response = client.get("/api/v1/analytics/usage", headers=world.token("organization").headers,
                              query_string={"days": days})
        assert response.status_code == 400 and "days" in response.get_json()["error"]["fields"], days
    assert len(client.get("/api/v1/analytics/usage", headers=world.token("organization").headers,
                          query_string={"days": 90}).get_json()["items"][0]["usage"]) == 90


# --------------------------------------------------------------------------- documents: CRUD and filters


def test_document_round_trip_create_read_update_delete(client, world, clock):
    issued = owner_token(world, scopes=["documents"], permissions=ALL_PERMISSIONS)
    created = client.post("/api/v1/documents", headers=issued.headers, json={
        "title": "  Quarterly report  ", "body": "Numbers", "status": "published",
        "project_id": world.projects["Borealis"], "visibility_group_id": world.groups["APAC"]})
    assert created.status_code == 201
    document = created.get_json()
    assert document == {
        "id": document["id"], "title": "Quarterly report", "body": "Numbers", "status": "published",
        "project_id": world.projects["Borealis"], "visibility_group_id": world.groups["APAC"], "partner_id": None,
        "created_by_token_id": issued.id, "created_at": "2026-11-23T12:00:00Z", "updated_at": "2026-11-23T12:00:00Z"}
    path = f"/api/v1/documents/{document['id']}"
    assert client.get(path, headers=issued.headers).get_json() == document

    clock.advance(hours=2)
    updated = client.patch(path, headers=issued.headers, json={"title": "Q3 report", "status": "archived",
                                                               "project_id": None})
    assert updated.status_code == 200
    assert updated.get_json() == {**document, "title": "Q3 report", "status": "archived", "project_id": None,
                                  "updated_at": "2026-11-23T14:00:00Z"}
    assert client.get(path, headers=issued.headers).get_json() == updated.get_json()

    assert client.delete(path, headers=issued.headers).status_code == 204
    assert client.get(path, headers=issued.headers).status_code == 404
    listed = client.get("/api/v1/documents", headers=issued.headers, query_string={"per_page": 100}).get_json()
    assert document["id"] not in {item["id"] for item in listed["items"]}
    assert listed["total"] == len(A_DOCUMENTS)


def test_creating_through_a_token_counts_its_documents_processed(client, world):
    issued = owner_token(world, scopes=["documents", "tokens"], permissions=ALL_PERMISSIONS)
    bystander = owner_token(world, scopes=["documents"], permissions=ALL_PERMISSIONS)
    ids = [client.post("/api/v1/documents", headers=issued.headers, json={"title": f"n{i}"}).get_json()["id"]
           for i in range(2)]
    client.post("/api/v1/documents", headers=issued.headers, json={"title": ""})  # refused: not counted
    client.patch(f"/api/v1/documents/{ids[0]}", headers=issued.headers, json={"title": "renamed"})
    client.get(f"/api/v1/documents/{ids[0]}", headers=issued.headers)
    client.delete(f"/api/v1/documents/{ids[1]}", headers=issued.headers)
    shown = client.get(f"/api/v1/tokens/{issued.id}", headers=issued.headers).get_json()
    assert shown["documents_processed"] == 2
    assert world.make.get_token(bystander.id).documents_processed == 0


def test_list_is_newest_first_and_filters_combine(client, world, clock):
    issued = owner_token(world, scopes=["documents"], permissions=ALL_PERMISSIONS)
    for title, status, project in [("Alpha plan", "draft", "Apollo"), ("alpha REVIEW", "published", "Apollo"),
                                   ("Beta plan", "published", "Borealis"), ("100% done_ok", "archived", None)]:
        clock.advance(minutes=1)
        assert client.post("/api/v1/documents", headers=issued.headers, json={
            "title": title, "status": status, "project_id": world.projects.get(project)}).status_code == 201

    def titles(**query):
        response = client.get("/api/v1/documents", headers=issued.headers, query_string=query)
        assert response.status_code == 200
        body = response.get_json()
        assert body["total"] == len(body["items"])
        return [item["title"] for item in body["items"]]

    assert titles(q="ALPHA") == ["alpha REVIEW", "Alpha plan"]  # newest first, case-insensitive
    assert titles(q="plan", status="published") == ["Beta plan"]
    assert titles(q="alpha", project_id=world.projects["Apollo"], status="draft") == ["Alpha plan"]
    assert titles(project_id=world.projects["Borealis"]) == ["Beta plan", "borealis"]
    assert titles(q="100%") == ["100% done_ok"]
    assert titles(q="%") == ["100% done_ok"]  # LIKE wildcards match themselves
    assert titles(q="_") == ["100% done_ok"]
    assert titles(status="archived") == ["100% done_ok"]
    assert titles(project_id=world.outer_project) == []  # another org's project: nothing, not an error


def test_created_after_and_before_take_dates_and_moments(client, world, clock):
    issued = owner_token(world, scopes=["documents"], permissions=ALL_PERMISSIONS)
    moments = {"start of 22nd": datetime(2026, 11, 22, 0, 0, tzinfo=UTC),
               "end of 22nd": datetime(2026, 11, 22, 23, 59, 59, 999_000, tzinfo=UTC),
               "noon 23rd": datetime(2026, 11, 23, 12, 0, tzinfo=UTC),
               "start of 24th": datetime(2026, 11, 24, 0, 0, tzinfo=UTC)}
    for title, moment in moments.items():
        clock.current = moment
        client.post("/api/v1/documents", headers=issued.headers, json={"title": title})

    def titles(**query):
        response = client.get("/api/v1/documents", headers=issued.headers, query_string=query)
        assert response.status_code == 200
        return {item["title"] for item in response.get_json()["items"]} & set(moments)

    assert titles(created_after="2026-11-22", created_before="2026-11-22") == {"start of 22nd", "end of 22nd"}
    assert titles(created_after="2026-11-23") == {"noon 23rd", "start of 24th"}
    assert titles(created_before="2026-11-23") == {"start of 22nd", "end of 22nd", "noon 23rd"}
    assert titles(created_after="2026-11-23T12:00:00Z", created_before="2026-11-23T12:00:00Z") == {"noon 23rd"}
    assert titles(created_after="2026-11-23T13:00:00+02:00") == {"noon 23rd", "start of 24th"}  # 11:00 UTC
    assert titles(created_before="2026-11-23T11:59:59") == {"start of 22nd", "end of 22nd"}  # no offset: UTC


# --------------------------------------------------------------------------- the export


def test_export_streams_exactly_the_visible_documents_as_json_lines(client, world):
    issued = world.token("group")
    response = client.get(f"/api/v1/export/all/{world.org.id}", headers=issued.headers)
    assert response.status_code == 200 and response.mimetype == "application/x-ndjson"
    assert "Content-Length" not in response.headers  # streamed, not built in memory
    lines = export_lines(response)
    assert [line["id"] for line in lines] == sorted(world.docs[t] for t in SEES["group"]["documents"])
    for line in lines:  # each line is the same object GET /documents/{id} answers
        assert client.get(f"/api/v1/documents/{line['id']}", headers=issued.headers).get_json() == line


def test_export_applies_the_same_filters_as_the_list(client, world):
    issued = world.token("organization")
    for query in ({"q": "o"}, {"project_id": world.projects["Apollo"]}, {"status": "draft", "q": "a"},
                  {"created_after": "2026-01-01"}, {"created_before": "2000-01-01"}):
        listed = client.get("/api/v1/documents", headers=issued.headers, query_string={**query, "per_page": 100})
        exported = client.get(f"/api/v1/export/all/{world.org.id}", headers=issued.headers, query_string=query)
        assert exported.status_code == 200
        assert sorted(line["id"] for line in export_lines(exported)) == sorted(
            item["id"] for item in listed.get_json()["items"]), query


def test_export_goes_past_one_batch_without_losing_or_repeating_rows(client, world):
    from shared.core.extensions import db
    from shared.models import Document

    def bulk():
        db.session.add_all([Document(organization_id=world.org.id, title=f"bulk {i}") for i in range(520)])
        db.session.commit()

    world.make.run(bulk)
    response = client.get(f"/api/v1/export/all/{world.org.id}", headers=world.token("organization").headers,
                          query_string={"q": "bulk"})
    ids = [line["id"] for line in export_lines(response)]
    assert len(ids) == 520 and ids == sorted(set(ids))
