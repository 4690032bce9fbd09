"""`flask --app wsgi demo`: a demo organization people can click through at once (loaded once)."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from shared.orgs.demo import demo_logins, load_demo


@click.command("demo")
@click.option("--port", envvar="PORT", default=5000, show_default=True, type=click.IntRange(1, 65535),
              help="The port the server listens on, for the sign-in address printed (env PORT).")
@with_appcontext
def demo(port: int):
    """Load a demo organization, users, partner, projects and documents (once)."""
    click.echo("Demo data loaded." if load_demo() else "Demo data is already loaded.")
    click.echo(f"Sign in at http://127.0.0.1:{port}/login with:")
    for email, role, password in demo_logins():
        click.echo(f"  {email:<24} {role:<18} password: {password}")
