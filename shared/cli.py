"""`flask --app wsgi ...` commands (SPEC section 8). Scripts rely on their output."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from functools import wraps

import click
from flask import Flask
from flask.cli import AppGroup
from werkzeug.datastructures import MultiDict

from shared import accounts, audit_export, audit_log, organizations, tokens
from shared.audit import Actor
from shared.errors import ServiceError
from shared.models import Plan, TokenType


def _fail(error: ServiceError) -> None:
    detail = "; ".join(f"{k}: {v}" for k, v in error.fields.items()) if error.fields else ""
    raise click.ClickException(f"{error.message}{' (' + detail + ')' if detail and detail != error.message else ''}")


def _reports_service_errors(command: Callable) -> Callable:
    """A service's refusal (unknown org, bad role, …) becomes a one-line error and exit status 1."""

    @wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ServiceError as error:
            _fail(error)

    return wrapper


def _password() -> str:
    return os.environ.get("KEYWARD_PASSWORD") or click.prompt("Password", hide_input=True,
                                                              confirmation_prompt=True)


def register_cli(app: Flask) -> None:
    orgs = AppGroup("orgs", help="Organizations.")
    users = AppGroup("users", help="Users and memberships.")
    partners = AppGroup("partners", help="Partner companies.")
    projects = AppGroup("projects", help="Projects.")
    token_group = AppGroup("tokens", help="API tokens.")
    audit_group = AppGroup("audit", help="The audit log.")

    @orgs.command("create")
    @click.argument("name")
    @click.option("--plan", type=click.Choice(Plan.ALL), default=Plan.FREE, show_default=True)
    @_reports_service_errors
    def orgs_create(name: str, plan: str):
        """Create an organization; prints its slug."""
        click.echo(accounts.create_organization(name, plan).slug)

    @partners.command("create")
    @click.argument("name")
    @click.option("--org", "org_slug", required=True)
    @_reports_service_errors
    def partners_create(name: str, org_slug: str):
        """Create a partner company linked to an organization."""
        partner = accounts.create_partner(accounts.get_organization(org_slug), name)
        click.echo(partner.name)

    @partners.command("list")
    @click.option("--org", "org_slug", required=True)
    @_reports_service_errors
    def partners_list(org_slug: str):
        """Print the organization's partners, one name a line."""
        for partner in organizations.list_partners(accounts.get_organization(org_slug).id):
            click.echo(partner.name)

    @partners.command("remove")
    @click.argument("name")
    @click.option("--org", "org_slug", required=True)
    @_reports_service_errors
    def partners_remove(name: str, org_slug: str):
        """Remove a partner: its users' memberships end and their tokens stop working at once."""
        users = accounts.remove_partner(accounts.find_partner(accounts.get_organization(org_slug), name))
        click.echo(f"{name} removed from {org_slug} with {len(users)} user{'' if len(users) == 1 else 's'}")

    @projects.command("create")
    @click.argument("name")
    @click.option("--org", "org_slug", required=True)
    @_reports_service_errors
    def projects_create(name: str, org_slug: str):
        """Create a project; prints its id."""
        click.echo(accounts.create_project(accounts.get_organization(org_slug), name).id)

    @users.command("create")
    @click.argument("email")
    @click.option("--org", "org_slug", required=True)
    @click.option("--role", required=True)
    @click.option("--partner", "partner_name")
    @click.option("--name", "display_name")
    @_reports_service_errors
    def users_create(email: str, org_slug: str, role: str, partner_name: str | None, display_name: str | None):
        """Create a user (or give an existing one a membership in one more org)."""
        org = accounts.get_organization(org_slug)
        partner = accounts.find_partner(org, partner_name) if partner_name else None
        password = None if accounts.find_user(email) else _password()
        membership = accounts.add_member(org, email, role, password=password, partner=partner,
                                         display_name=display_name)
        click.echo(f"{membership.user.email} is {membership.role} in {org.slug}")

    @users.command("set-role")
    @click.argument("email")
    @click.option("--org", "org_slug", required=True)
    @click.option("--role", required=True)
    @_reports_service_errors
    def users_set_role(email: str, org_slug: str, role: str):
        """Change a member's role; their tokens follow from the next request."""
        membership = accounts.set_role(accounts.get_membership(accounts.get_organization(org_slug), email), role)
        click.echo(f"{membership.user.email} is {membership.role} in {org_slug}")

    @users.command("remove")
    @click.argument("email")
    @click.option("--org", "org_slug", required=True)
    @_reports_service_errors
    def users_remove(email: str, org_slug: str):
        """End a membership; the member's tokens stop working at once."""
        accounts.remove_member(accounts.get_membership(accounts.get_organization(org_slug), email))
        click.echo(f"{email} removed from {org_slug}")

    @token_group.command("create")
    @click.option("--org", "org_slug", required=True)
    @click.option("--user", "email", required=True)
    @click.option("--name", required=True)
    @click.option("--scopes", required=True, help="comma-separated")
    @click.option("--permissions", required=True, help="comma-separated")
    @click.option("--type", "kind", type=click.Choice(TokenType.ALL), default=TokenType.PERSONAL)
    @click.option("--project", "project_name")
    @click.option("--expires-in-days", type=int)
    @click.option("--no-expiry", is_flag=True)
    @click.option("--description", default="")
    @_reports_service_errors
    def tokens_create(org_slug, email, name, scopes, permissions, kind, project_name, expires_in_days,
                      no_expiry, description):
        """Create a token; prints only the secret on stdout."""
        if expires_in_days is not None and no_expiry:
            raise click.UsageError("Give --expires-in-days or --no-expiry, not both")
        org = accounts.get_organization(org_slug)
        membership = accounts.get_membership(org, email)
        payload = {"name": name, "description": description, "type": kind,
                   "permissions": permissions.split(","), "scopes": scopes.split(",")}
        if project_name:
            payload["project_id"] = accounts.find_project(org, project_name).id
        if no_expiry:
            payload["expires_at"] = None
        elif expires_in_days is not None:
            payload["expires_in_days"] = expires_in_days
        data = tokens.parse_token_payload(payload, creating=True)
        _, secret = tokens.create_token(Actor(membership=membership, user_agent="keyward-cli"), data)
        click.echo(secret)

    @audit_group.command("export")
    @click.option("--org", "org_slug", required=True)
    @click.option("--format", "fmt", type=click.Choice(tuple(audit_export.FORMATS)), default="csv", show_default=True)
    @click.option("--action", default="", help="only this action, e.g. token.revoked")
    @click.option("--actor", "actor_email", help="only events by this person (email)")
    @click.option("--from", "since", type=click.DateTime(["%Y-%m-%d"]), help="from this UTC day (YYYY-MM-DD)")
    @click.option("--to", "until", type=click.DateTime(["%Y-%m-%d"]), help="to this UTC day, included")
    @click.option("--output", default="-", type=click.Path(dir_okay=False, allow_dash=True),
                  help="a file instead of stdout")
    @_reports_service_errors
    def audit_export_command(org_slug, fmt, action, actor_email, since, until, output):
        """Export the audit log, newest first, with the Audit log page's filters (streamed)."""
        org = accounts.get_organization(org_slug)
        args = {"action": action, "from": since.date().isoformat() if since else "",
                "to": until.date().isoformat() if until else ""}
        if actor_email:
            user = accounts.find_user(actor_email)
            if user is None:
                raise click.ClickException(f"No user with email {actor_email}")
            args["actor"] = str(user.id)
        filters = audit_log.filters_from_args(MultiDict(args))
        with click.open_file(output, "wb") as out:
            for chunk in audit_export.chunks(org.id, filters, fmt):
                out.write(chunk.encode("utf-8"))

    @app.cli.command("worker")
    @click.option("--once", is_flag=True, help="Run every queued and due job and one sweep, then exit.")
    def worker(once: bool):
        """Background jobs: event dispatch, notification emails, expiry reminders, the sweep."""
        from shared.queue import queue_for

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        task_queue = queue_for(app)
        if once:
            if not task_queue.run_once():
                raise click.ClickException("the queue storage is unreachable; swept from the database only")
            return
        click.echo("Keyward worker running (Ctrl-C to stop).", err=True)
        task_queue.run_consumer()

    @app.cli.command("demo")
    def demo():
        """Load a demo organization, users, partner, projects and documents (once)."""
        from shared.demo import demo_logins, load_demo

        created = load_demo()
        click.echo("Demo data loaded." if created else "Demo data is already loaded.")
        click.echo("Sign in at http://127.0.0.1:5000/login with:")
        for email, role, password in demo_logins():
            click.echo(f"  {email:<24} {role:<18} password: {password}")

    for group in (orgs, users, partners, projects, token_group, audit_group):
        app.cli.add_command(group)
