"""`flask --app wsgi users create|invite|set-role|remove`: the operator's bootstrap of people.

`create` sets a password on the server (the first owner of a fresh install); everybody else joins
by invitation (`invite`, or the Members and Partners pages), choosing their own password.
"""

from __future__ import annotations

import click
from flask.cli import AppGroup

from shared.cli.common import password_from_env_or_prompt, reports_service_errors
from shared.identity import accounts, invitations
from shared.orgs import organizations
from shared.orgs import partners as partner_service

cli = AppGroup("users", help="Users and memberships.")


@cli.command("create")
@click.argument("email")
@click.option("--org", "org_slug", required=True)
@click.option("--role", required=True)
@click.option("--partner", "partner_name")
@click.option("--name", "display_name")
@reports_service_errors
def create(email: str, org_slug: str, role: str, partner_name: str | None, display_name: str | None):
    """Create a user (or give an existing one a membership in one more org)."""
    org = organizations.get_organization(org_slug)
    partner = partner_service.find_partner(org, partner_name) if partner_name else None
    password = None if accounts.find_user(email) else password_from_env_or_prompt()
    membership = accounts.add_member(
        org, email, role, password=password, partner=partner, display_name=display_name
    )
    click.echo(f"{membership.user.email} is {membership.role} in {org.slug}")


@cli.command("invite")
@click.argument("email")
@click.option("--org", "org_slug", required=True)
@click.option("--role", required=True)
@click.option("--partner", "partner_name")
@reports_service_errors
def invite(email: str, org_slug: str, role: str, partner_name: str | None):
    """Invite someone: prints the invitation link (single use, 7 days; also emailed when email is on)."""
    org = organizations.get_organization(org_slug)
    partner = partner_service.find_partner(org, partner_name) if partner_name else None
    issued = invitations.invite_as_operator(org, email, role, partner)
    click.echo(issued.link)
    if issued.email_failed:
        click.echo("The invitation email could not be sent: pass the link on yourself.", err=True)


@cli.command("set-role")
@click.argument("email")
@click.option("--org", "org_slug", required=True)
@click.option("--role", required=True)
@reports_service_errors
def set_role(email: str, org_slug: str, role: str):
    """Change a member's role; their tokens follow from the next request."""
    org = organizations.get_organization(org_slug)
    membership = accounts.set_role(accounts.get_membership(org, email), role)
    click.echo(f"{membership.user.email} is {membership.role} in {org_slug}")


@cli.command("remove")
@click.argument("email")
@click.option("--org", "org_slug", required=True)
@reports_service_errors
def remove(email: str, org_slug: str):
    """End a membership; the member's tokens stop working at once."""
    accounts.remove_member(accounts.get_membership(organizations.get_organization(org_slug), email))
    click.echo(f"{email} removed from {org_slug}")
