"""`flask --app wsgi partners create|list|remove`: partner companies of an organization."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from shared.cli.common import reports_service_errors
from shared.orgs import organizations
from shared.orgs import partners as partner_service

cli = AppGroup("partners", help="Partner companies.")


@cli.command("create")
@click.argument("name")
@click.option("--org", "org_slug", required=True)
@reports_service_errors
def create(name: str, org_slug: str):
    """Create a partner company linked to an organization."""
    org = organizations.get_organization(org_slug)
    click.echo(partner_service.register_partner(org, name).name)


@cli.command("list")
@click.option("--org", "org_slug", required=True)
@reports_service_errors
def list_partners(org_slug: str):
    """Print the organization's partners, one name a line."""
    for partner in organizations.list_partners(organizations.get_organization(org_slug).id):
        click.echo(partner.name)


@cli.command("remove")
@click.argument("name")
@click.option("--org", "org_slug", required=True)
@reports_service_errors
def remove(name: str, org_slug: str):
    """Remove a partner: its users' memberships end and their tokens stop working at once."""
    partner = partner_service.find_partner(organizations.get_organization(org_slug), name)
    users = partner_service.dissolve_partner(partner)
    click.echo(f"{name} removed from {org_slug} with {len(users)} user{'' if len(users) == 1 else 's'}")
