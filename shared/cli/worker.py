"""`flask --app wsgi worker [--once]`: background jobs (deliveries, emails, reminders, the sweep)."""

from __future__ import annotations

import logging

import click
from flask import current_app
from flask.cli import with_appcontext

from shared.worker.queue import queue_for


@click.command("worker")
@click.option("--once", is_flag=True, help="Run every queued and due job and one sweep, then exit.")
@with_appcontext
def worker(once: bool):
    """Background jobs: event dispatch, notification emails, expiry reminders, the sweep."""
    # "worker" on every line: beside the server (make run) its lines are told apart at a glance.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(name)s: %(message)s")
    task_queue = queue_for(current_app._get_current_object())
    if once:
        if not task_queue.run_once():
            raise click.ClickException("the queue storage is unreachable; swept from the database only")
        return
    click.echo("Keyward worker running (Ctrl-C to stop).", err=True)
    task_queue.run_consumer()
