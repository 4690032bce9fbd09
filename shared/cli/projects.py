"""`flask --app wsgi projects create NAME --org SLUG`: prints the new project's id."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from shared.cli.common import reports_service_errors
from shared.orgs import organizations

cli = AppGroup("projects", help="Projects.")


@cli.command("create")
@click.argument("name")
@click.option("--org", "org_slug", required=True)
@reports_service_errors
def create(name: str, org_slug: str):
    """Create a project; prints its id."""
    click.echo(organizations.create_project(organizations.get_organization(org_slug), name).id)
