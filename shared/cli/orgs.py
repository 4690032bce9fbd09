"""`flask --app wsgi orgs create NAME --plan PLAN`: prints the new organization's slug."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from shared.cli.common import reports_service_errors
from shared.models import PLANS, Plan
from shared.orgs import organizations

cli = AppGroup("orgs", help="Organizations.")


@cli.command("create")
@click.argument("name")
@click.option("--plan", type=click.Choice(PLANS), default=Plan.FREE.value, show_default=True)
@reports_service_errors
def create(name: str, plan: str):
    """Create an organization; prints its slug."""
    click.echo(organizations.create_organization(name, plan).slug)
