"""`flask --app wsgi tokens create ...`: prints only the secret on stdout, for scripts."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from shared.audit.record import Actor
from shared.cli.common import reports_service_errors
from shared.identity import accounts
from shared.models import TOKEN_TYPES, TokenType
from shared.orgs import organizations
from shared.tokens import lifecycle
from shared.tokens import payload as token_payload

cli = AppGroup("tokens", help="API tokens.")


@cli.command("create")
@click.option("--org", "org_slug", required=True)
@click.option("--user", "email", required=True)
@click.option("--name", required=True)
@click.option("--scopes", required=True, help="comma-separated")
@click.option("--permissions", required=True, help="comma-separated")
@click.option("--type", "kind", type=click.Choice(TOKEN_TYPES), default=TokenType.PERSONAL.value)
@click.option("--project", "project_name")
@click.option("--expires-in-days", type=int)
@click.option("--no-expiry", is_flag=True)
@click.option("--description", default="")
@reports_service_errors
def create(org_slug, email, name, scopes, permissions, kind, project_name, expires_in_days, no_expiry,
           description):
    """Create a token; prints only the secret on stdout."""
    if expires_in_days is not None and no_expiry:
        raise click.UsageError("Give --expires-in-days or --no-expiry, not both")
    org = organizations.get_organization(org_slug)
    membership = accounts.get_membership(org, email)
    body = {"name": name, "description": description, "type": kind,
            "permissions": permissions.split(","), "scopes": scopes.split(",")}
    if project_name:
        body["project_id"] = organizations.find_project(org, project_name).id
    if no_expiry:
        body["expires_at"] = None
    elif expires_in_days is not None:
        body["expires_in_days"] = expires_in_days
    data = token_payload.parse_token_payload(body, creating=True)
    _, secret = lifecycle.create_token(Actor(membership=membership, user_agent="keyward-cli"), data)
    click.echo(secret)
