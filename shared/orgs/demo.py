"""Demo data for `make run`: an organization people can click through at once."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from shared.audit.record import Actor
from shared.core import clock
from shared.core.extensions import db
from shared.identity import accounts
from shared.models import Document, Organization, Plan, Template, VisibilityGroup
from shared.orgs import organizations, partners
from shared.tokens import lifecycle
from shared.tokens import payload as token_payload

DEMO_PASSWORD = "keyward-demo"
DEMO_SLUG = "acme"
DEMO_USERS = (
    ("owner@acme.test", "owner", "Olivia Owner", None),
    ("admin@acme.test", "admin", "Adam Admin", None),
    ("security@acme.test", "security_manager", "Sam Security", None),
    ("editor@acme.test", "editor", "Eddie Editor", None),
    ("viewer@acme.test", "viewer", "Vera Viewer", None),
    ("partner@globex.test", "partner_admin", "Paula Partner", "Globex"),
)


def demo_logins() -> list[tuple[str, str, str]]:
    return [(email, role, DEMO_PASSWORD) for email, role, _, _ in DEMO_USERS]


def load_demo() -> bool:
    """Create the demo org once; False when it already exists."""
    if db.session.scalar(select(Organization.id).where(Organization.slug == DEMO_SLUG)) is not None:
        return False
    org = organizations.create_organization("Acme", Plan.BUSINESS)
    partner = partners.register_partner(org, "Globex")
    website = organizations.create_project(org, "Website")
    mobile = organizations.create_project(org, "Mobile app")
    emea = VisibilityGroup(organization_id=org.id, name="EMEA")
    db.session.add(emea)
    memberships = {}
    for email, role, name, partner_name in DEMO_USERS:
        memberships[email] = accounts.add_member(org, email, role, password=DEMO_PASSWORD, display_name=name,
                                                 partner=partner if partner_name else None)
    db.session.add_all([
        Template(organization_id=org.id, name="Invoice", body="Invoice {{number}}"),
        Template(organization_id=org.id, name="Contract", body="Contract between {{a}} and {{b}}"),
    ])
    statuses = ("draft", "published", "archived")
    for i in range(24):
        db.session.add(Document(
            organization_id=org.id,
            project_id=(website.id, mobile.id, None)[i % 3],
            visibility_group_id=emea.id if i % 4 == 0 else None,
            partner_id=partner.id if i % 5 == 0 else None,
            title=f"Document {i + 1}",
            body="Demo content",
            status=statuses[i % 3],
            created_at=clock.now() - timedelta(days=i),
        ))
    db.session.commit()

    owner = Actor(membership=memberships["owner@acme.test"], user_agent="keyward-demo")
    for name, scopes, perms in (("CI deploys", ["documents", "projects"], ["read", "write"]),
                                ("Analytics export", ["analytics"], ["read"])):
        data = token_payload.parse_token_payload({"name": name, "scopes": scopes, "permissions": perms}, creating=True)
        lifecycle.create_token(owner, data)
    return True
