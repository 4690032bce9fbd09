"""Schema-driven: schemathesis fuzzes every operation of the served OpenAPI document.

No answer may be a 500, and every answer must match the document (status codes, content
type, headers, body schema) — the document is generated from the code that validates.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import Factory

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


@pytest.fixture
def fuzz_app(app_with):
    app = app_with(KEYWARD_RATE_LIMITS={"business": "1000000/minute"}, KEYWARD_AUTH_FAILURE_LIMIT="1000000/minute")
    make = Factory(app)
    org = make.org("business")
    owner = make.member(org, "owner")
    project = make.project(org)
    key = make.token(owner, scopes=["documents", "projects", "templates", "analytics", "billing", "tokens"],
                     permissions=["read", "write", "delete"], expires_at=None)
    make.token(owner, type="project", project_id=project)
    app.config["fuzz_headers"] = key.headers
    return app


def test_no_500_and_responses_match_the_document(fuzz_app):
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", fuzz_app)
    headers = fuzz_app.config["fuzz_headers"]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case):
            case.call_and_validate(headers=dict(headers), checks=CHECKS)

        run()


def test_document_is_openapi_3_and_lists_every_endpoint(client):
    document = client.get("/api/v1/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    for path, method in [("/api/v1/me", "get"), ("/api/v1/documents", "get"), ("/api/v1/documents", "post"),
                         ("/api/v1/documents/{document_id}", "patch"), ("/api/v1/projects", "get"),
                         ("/api/v1/organizations/{organization_id}/projects", "get"),
                         ("/api/v1/templates", "get"), ("/api/v1/analytics/usage", "get"), ("/api/v1/billing", "get"),
                         ("/api/v1/export/all/{organization_id}", "get"), ("/api/v1/tokens", "post"),
                         ("/api/v1/tokens/{token_id}/regenerate", "post")]:
        assert method in paths[path], (path, method)
    per_page = next(p for p in paths["/api/v1/documents"]["get"]["parameters"] if p["name"] == "per_page")
    assert per_page["schema"]["maximum"] == 100


def test_document_matches_validation(client, make):
    """The limits the document states are the limits the API enforces."""
    owner = make.member(make.org(), "owner")
    key = make.token(owner, scopes=["documents"], permissions=["read"])
    document = client.get("/api/v1/openapi.json").get_json()
    params = {p["name"]: p["schema"] for p in document["paths"]["/api/v1/documents"]["get"]["parameters"]}
    top = params["per_page"]["maximum"]
    assert client.get(f"/api/v1/documents?per_page={top}", headers=key.headers).status_code == 200
    assert client.get(f"/api/v1/documents?per_page={top + 1}", headers=key.headers).status_code == 400
    for status in params["status"]["enum"]:
        assert client.get(f"/api/v1/documents?status={status}", headers=key.headers).status_code == 200
