"""The org's data behind the API: documents, projects, templates — always seen through a token.

Tenancy lives here, once: `visible_documents` applies organization, project binding, partner
isolation and visibility groups; every document read or write starts from it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.orm import joinedload

from shared.core import clock
from shared.core.dates import iso
from shared.core.db import contains_pattern, write_transaction
from shared.core.errors import InvalidRequest, NotFound
from shared.core.extensions import db
from shared.models import ApiToken, Document, Project, Template, TokenType, VisibilityGroup

DOCUMENT_STATUSES = ("draft", "published", "archived")


def visible_documents(token: ApiToken) -> Select:
    """Documents this token may see: its org, its project (if bound), its partner, its groups."""
    creator = token.creator
    query = select(Document).where(Document.organization_id == token.organization_id)
    if token.type == TokenType.PROJECT:
        query = query.where(Document.project_id == token.project_id)
    if creator.partner_id is not None:
        query = query.where(Document.partner_id == creator.partner_id)
    else:
        group_ids = [group.id for group in creator.groups]
        if group_ids:  # staff with no group see every group
            query = query.where(or_(Document.visibility_group_id.is_(None),
                                    Document.visibility_group_id.in_(group_ids)))
    return query


def visible_projects(token: ApiToken) -> Select:
    query = select(Project).where(Project.organization_id == token.organization_id)
    if token.type == TokenType.PROJECT:
        query = query.where(Project.id == token.project_id)
    return query


@dataclass
class DocumentFilters:
    q: str = ""
    project_id: int | None = None
    status: str = ""
    created_after: datetime | None = None
    created_before: datetime | None = None


def filtered_documents(token: ApiToken, filters: DocumentFilters) -> Select:
    query = visible_documents(token)
    if filters.q:
        query = query.where(func.lower(Document.title).like(contains_pattern(filters.q), escape="\\"))
    if filters.project_id is not None:
        query = query.where(Document.project_id == filters.project_id)
    if filters.status:
        query = query.where(Document.status == filters.status)
    if filters.created_after is not None:
        query = query.where(Document.created_at >= filters.created_after)
    if filters.created_before is not None:
        query = query.where(Document.created_at <= filters.created_before)
    return query


def list_documents(token: ApiToken, filters: DocumentFilters, page: int, per_page: int) -> tuple[list[Document], int]:
    query = filtered_documents(token, filters)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    items = db.session.scalars(
        query.options(joinedload(Document.created_by_token))
        .order_by(Document.created_at.desc(), Document.id.desc())
        .limit(per_page).offset((page - 1) * per_page)).all()
    return list(items), total


def iter_documents(query: Select, batch: int = 500) -> Iterator[Document]:
    """Every document of `query` (from filtered_documents), oldest first, a batch at a time (keyset).

    Takes the built query, not the token: a streamed response runs after the token's rows are gone.
    """
    last_id = 0
    while True:
        rows = db.session.scalars(
            query.where(Document.id > last_id)
            .options(joinedload(Document.created_by_token))
            .order_by(Document.id).limit(batch)).all()
        if not rows:
            return
        yield from rows
        last_id = rows[-1].id
        for row in rows:  # keep memory flat across batches
            db.session.expunge(row)


def get_document(token: ApiToken, document_id: int) -> Document:
    """:raise NotFound: unknown ids and ids the token may not see (another org's) alike."""
    document = db.session.scalars(visible_documents(token).where(Document.id == document_id)).first()
    if document is None:
        raise NotFound("No such document")
    return document


def _check_project(token: ApiToken, project_id: int | None, errors: dict[str, str]) -> None:
    if token.type == TokenType.PROJECT and project_id != token.project_id:
        errors["project_id"] = "A project token can only write documents of its project"
        return
    if project_id is not None:
        project = db.session.get(Project, project_id)
        if project is None or project.organization_id != token.organization_id:
            errors["project_id"] = "No such project"


def _check_group(token: ApiToken, group_id: int | None, errors: dict[str, str]) -> None:
    if group_id is None:
        return
    group = db.session.get(VisibilityGroup, group_id)
    member_groups = {g.id for g in token.creator.groups}
    if group is None or group.organization_id != token.organization_id or (member_groups and group_id not in member_groups):
        errors["visibility_group_id"] = "No such visibility group"


def _check_title(title: Any, errors: dict[str, str]) -> None:
    if isinstance(title, str) and not title.strip():
        errors["title"] = "Title is required"


def create_document(token: ApiToken, values: dict[str, Any]) -> Document:
    """Create through a token; its documents_processed counts it in the same transaction."""
    project_id = values.get("project_id", token.project_id if token.type == TokenType.PROJECT else None)
    errors: dict[str, str] = {}
    _check_title(values["title"], errors)
    _check_project(token, project_id, errors)
    _check_group(token, values.get("visibility_group_id"), errors)
    if errors:
        raise InvalidRequest(next(iter(errors.values())), fields=errors)
    with write_transaction() as session:
        now = clock.now()
        document = Document(
            organization_id=token.organization_id, project_id=project_id,
            visibility_group_id=values.get("visibility_group_id"), partner_id=token.creator.partner_id,
            title=values["title"].strip(), body=values.get("body", ""), status=values.get("status", "draft"),
            created_by_token_id=token.id, created_at=now, updated_at=now)
        session.add(document)
        session.execute(update(ApiToken).where(ApiToken.id == token.id)
                        .values(documents_processed=ApiToken.documents_processed + 1)
                        .execution_options(synchronize_session=False))
        session.flush()
    return document


def update_document(token: ApiToken, document: Document, values: dict[str, Any]) -> Document:
    errors: dict[str, str] = {}
    if "title" in values:
        _check_title(values["title"], errors)
    if "project_id" in values:
        _check_project(token, values["project_id"], errors)
    if "visibility_group_id" in values:
        _check_group(token, values["visibility_group_id"], errors)
    if errors:
        raise InvalidRequest(next(iter(errors.values())), fields=errors)
    with write_transaction() as session:
        for key, value in values.items():
            setattr(document, key, value.strip() if key == "title" else value)
        document.updated_at = clock.now()
        session.add(document)
    return document


def delete_document(document: Document) -> None:
    with write_transaction() as session:
        session.delete(document)


def list_templates(token: ApiToken, page: int, per_page: int) -> tuple[list[Template], int]:
    query = select(Template).where(Template.organization_id == token.organization_id)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    items = db.session.scalars(query.order_by(Template.name, Template.id).limit(per_page)
                               .offset((page - 1) * per_page)).all()
    return list(items), total


def list_projects(token: ApiToken, organization_id: int | None, page: int, per_page: int) -> tuple[list[Project], int]:
    if organization_id is not None and organization_id != token.organization_id:
        raise NotFound("No such organization")
    query = visible_projects(token)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    items = db.session.scalars(query.order_by(Project.name, Project.id).limit(per_page)
                               .offset((page - 1) * per_page)).all()
    return list(items), total


def document_summary(document: Document) -> dict[str, Any]:
    return {
        "id": document.id,
        "title": document.title,
        "body": document.body,
        "status": document.status,
        "project_id": document.project_id,
        "visibility_group_id": document.visibility_group_id,
        "partner_id": document.partner_id,
        "created_by_token_id": document.created_by_token.public_id if document.created_by_token else None,
        "created_at": iso(document.created_at),
        "updated_at": iso(document.updated_at),
    }


def project_summary(project: Project) -> dict[str, Any]:
    return {"id": project.id, "name": project.name, "organization_id": project.organization_id,
            "created_at": iso(project.created_at)}


def template_summary(template: Template) -> dict[str, Any]:
    return {"id": template.id, "name": template.name, "body": template.body}
