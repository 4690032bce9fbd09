"""The data API's endpoints, each with the scope and the method's permission it needs, and `call`, which
sends one of them with a token. Shared by the data API rules and the rate limit tests.

A plain module (neither a test module nor a conftest): the tests import from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.conftest import Issued

PERMISSION_OF = {"GET": "read", "POST": "write", "PATCH": "write", "DELETE": "delete"}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # under /api/v1, with {doc} and {org} placeholders
    scope: str
    reads: str | None  # which kind of data it shows (None for POST /documents)
    ok: int = 200
    body: dict | None = None

    @property
    def permission(self) -> str:
        return PERMISSION_OF[self.method]

    @property
    def takes_document(self) -> bool:
        return "{doc}" in self.path

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


ENDPOINTS = [
    Endpoint("GET", "/documents", "documents", "documents"),
    Endpoint("POST", "/documents", "documents", None, ok=201, body={"title": "Created"}),
    Endpoint("GET", "/documents/{doc}", "documents", "documents"),
    Endpoint("PATCH", "/documents/{doc}", "documents", "documents", body={"status": "archived"}),
    Endpoint("DELETE", "/documents/{doc}", "documents", "documents", ok=204),
    Endpoint("GET", "/projects", "projects", "projects"),
    Endpoint("GET", "/organizations/{org}/projects", "projects", "projects"),
    Endpoint("GET", "/templates", "templates", "templates"),
    Endpoint("GET", "/analytics/usage", "analytics", "usage"),
    Endpoint("GET", "/billing", "billing", "billing"),
    Endpoint("GET", "/export/all/{org}", "documents", "documents"),
]


def call(client, endpoint: Endpoint, issued: Issued, *, doc: int | None = None, org: int | None = None,
         query: dict | None = None, body: dict | None = None):
    path = "/api/v1" + endpoint.path.format(doc=doc, org=org)
    payload = body if body is not None else endpoint.body
    return client.open(path, method=endpoint.method, headers=issued.headers, query_string=query,
                       json=payload if endpoint.method in ("POST", "PATCH") else None)
