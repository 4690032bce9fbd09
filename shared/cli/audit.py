"""`flask --app wsgi audit export --org SLUG`: the Audit log page's filters, streamed to a file."""

from __future__ import annotations

import click
from flask.cli import AppGroup
from werkzeug.datastructures import MultiDict

from shared.audit import export as audit_export
from shared.audit import log as audit_log
from shared.cli.common import reports_service_errors
from shared.identity import accounts
from shared.orgs import organizations

cli = AppGroup("audit", help="The audit log.")


@cli.command("export")
@click.option("--org", "org_slug", required=True)
@click.option("--format", "fmt", type=click.Choice(tuple(audit_export.FORMATS)), default="csv",
              show_default=True)
@click.option("--action", default="", help="only this action, e.g. token.revoked")
@click.option("--actor", "actor_email", help="only events by this person (email)")
@click.option("--from", "since", type=click.DateTime(["%Y-%m-%d"]), help="from this UTC day (YYYY-MM-DD)")
@click.option("--to", "until", type=click.DateTime(["%Y-%m-%d"]), help="to this UTC day, included")
@click.option("--output", default="-", type=click.Path(dir_okay=False, allow_dash=True),
              help="a file instead of stdout")
@reports_service_errors
def export(org_slug, fmt, action, actor_email, since, until, output):
    """Export the audit log, newest first, with the Audit log page's filters (streamed)."""
    org = organizations.get_organization(org_slug)
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
