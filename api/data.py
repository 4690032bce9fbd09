"""Data endpoints: documents, projects, templates, analytics, billing and the bulk export."""

from __future__ import annotations

import json

from flask import Response, current_app, jsonify, stream_with_context

from api.auth import current_actor, current_token
from api.schema import (
    ID,
    Body,
    Integer,
    Moment,
    String,
    endpoint,
    identifier,
    pagination,
)
from api.views import AUTH_ERRORS
from shared.core import dates
from shared.core.errors import InvalidRequest
from shared.core.extensions import db
from shared.models import Plan
from shared.orgs import documents
from shared.orgs.documents import DOCUMENT_STATUSES, DocumentFilters
from shared.tokens import access, usage

DATA_ERRORS = {**AUTH_ERRORS, 404: "Error"}
DOCUMENT_FILTERS = {
    "q": String("Title contains (case-insensitive)", max_length=200),
    "project_id": identifier("Project"),
    "status": String("Status", choices=DOCUMENT_STATUSES),
    "created_after": Moment("Created at or after (a date means from its start)"),
    "created_before": Moment("Created at or before (a date means to its end)"),
}
DOCUMENT_FIELDS = {
    "title": String("1–200 characters", min_length=1, max_length=200),
    "body": String("Content", max_length=20_000),
    "status": String("Status", choices=DOCUMENT_STATUSES),
    "project_id": identifier("Project (a project token's own by default)", nullable=True),
    "visibility_group_id": identifier("Visibility group", nullable=True),
}


def _filters(query: dict) -> DocumentFilters:
    filters = DocumentFilters(q=query.get("q", "").strip(), project_id=query.get("project_id"),
                              status=query.get("status", ""),
                              created_after=dates.lower_bound(query.get("created_after")),
                              created_before=dates.upper_bound(query.get("created_before")))
    if filters.created_after and filters.created_before and filters.created_after > filters.created_before:
        raise InvalidRequest("created_after is later than created_before",
                             fields={"created_after": "Later than created_before"})
    return filters


def _page(items, total, query, summary):
    return jsonify({"items": [summary(item) for item in items], "page": query["page"],
                    "per_page": query["per_page"], "total": total})


@endpoint("GET", "/documents", summary="List documents", scope="documents", tag="documents",
          responses={200: "DocumentList", 400: "Error", **AUTH_ERRORS}, query={**DOCUMENT_FILTERS, **pagination()})
def list_documents(query: dict):
    items, total = documents.list_documents(current_token(), _filters(query), query["page"], query["per_page"])
    return _page(items, total, query, documents.document_summary)


@endpoint("POST", "/documents", summary="Create a document", scope="documents", tag="documents",
          responses={201: "Document", 400: "Error", **AUTH_ERRORS},
          body=Body(DOCUMENT_FIELDS, required=("title",), name="DocumentCreate"))
def create_document(body: dict):
    document = documents.create_document(current_token(), body)
    return jsonify(documents.document_summary(document)), 201


@endpoint("GET", f"/documents/<{ID}:document_id>", summary="Read a document", scope="documents", tag="documents",
          responses={200: "Document", **DATA_ERRORS})
def get_document(document_id: int):
    return jsonify(documents.document_summary(documents.get_document(current_token(), document_id)))


@endpoint("PATCH", f"/documents/<{ID}:document_id>", summary="Update a document", scope="documents",
          tag="documents", responses={200: "Document", 400: "Error", **DATA_ERRORS},
          body=Body(DOCUMENT_FIELDS, name="DocumentUpdate"))
def update_document(document_id: int, body: dict):
    document = documents.get_document(current_token(), document_id)
    return jsonify(documents.document_summary(documents.update_document(current_token(), document, body)))


@endpoint("DELETE", f"/documents/<{ID}:document_id>", summary="Delete a document", scope="documents",
          tag="documents", responses={204: "", **DATA_ERRORS})
def delete_document(document_id: int):
    documents.delete_document(documents.get_document(current_token(), document_id))
    return "", 204


@endpoint("GET", "/projects", summary="List projects", scope="projects", tag="projects",
          responses={200: "ProjectList", 400: "Error", **AUTH_ERRORS}, query=pagination())
def list_projects(query: dict):
    items, total = documents.list_projects(current_token(), None, query["page"], query["per_page"])
    return _page(items, total, query, documents.project_summary)


@endpoint("GET", f"/organizations/<{ID}:organization_id>/projects", summary="List an organization's projects",
          scope="projects", tag="projects", responses={200: "ProjectList", 400: "Error", **DATA_ERRORS},
          query=pagination())
def list_organization_projects(organization_id: int, query: dict):
    items, total = documents.list_projects(current_token(), organization_id, query["page"], query["per_page"])
    return _page(items, total, query, documents.project_summary)


@endpoint("GET", "/templates", summary="List templates", scope="templates", tag="templates",
          responses={200: "TemplateList", 400: "Error", **AUTH_ERRORS}, query=pagination())
def list_templates(query: dict):
    items, total = documents.list_templates(current_token(), query["page"], query["per_page"])
    return _page(items, total, query, documents.template_summary)


@endpoint("GET", "/analytics/usage", summary="Requests per day per token you can see", scope="analytics",
          tag="analytics", responses={200: "Usage", 400: "Error", **AUTH_ERRORS},
          query={"days": Integer("Days back, today included", minimum=1, maximum=90, default=30)})
def analytics_usage(query: dict):
    visible = db.session.scalars(access.visible_tokens_query(current_actor())).all()
    window = usage.days_window(query["days"])
    counts = usage.daily_requests([t.id for t in visible], query["days"])
    return jsonify({"days": query["days"], "items": [
        {"token_id": t.public_id, "name": t.name,
         "usage": [{"date": day.isoformat(), "requests": counts[t.id].get(day, 0)} for day in window]}
        for t in visible]})


@endpoint("GET", "/billing", summary="Plan, limits and credit balance", scope="billing", tag="billing",
          responses={200: "Billing", **AUTH_ERRORS})
def billing():
    org = current_token().organization
    from shared.core.ratelimits import token_limit_for

    return jsonify({"plan": org.plan, "credit_balance": org.credit_balance,
                    "rate_limit": token_limit_for(org.plan),
                    "token_limit_per_member": current_app.config["KEYWARD_FREE_TOKEN_LIMIT"]
                    if org.plan == Plan.FREE else None})


@endpoint("GET", f"/export/all/<{ID}:organization_id>", summary="Export every visible document (JSON Lines, streamed)",
          scope="documents", tag="documents", responses={200: "Export", 400: "Error", **DATA_ERRORS},
          query=DOCUMENT_FILTERS)
def export_all(organization_id: int, query: dict):
    token = current_token()
    if organization_id != token.organization_id:
        from shared.core.errors import NotFound

        raise NotFound("No such organization")
    selection = documents.filtered_documents(token, _filters(query))

    def lines():
        for document in documents.iter_documents(selection):
            yield json.dumps(documents.document_summary(document)) + "\n"

    return Response(stream_with_context(lines()), mimetype="application/x-ndjson")

