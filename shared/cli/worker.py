"""`flask --app wsgi worker [--once]`: background jobs (deliveries, emails, reminders, the sweep)."""

from __future__ import annotations

import logging

import click
from flask import current_app
from flask.cli import with_appcontext

from shared.core import logs
from shared.core.config import ConfigError
from shared.monitoring.scrape import serve_worker_metrics
from shared.worker.queue import queue_for


@click.command("worker")
@click.option("--once", is_flag=True, help="Run every queued and due job and one sweep, then exit.")
@with_appcontext
def worker(once: bool):
    """Background jobs: event dispatch, notification emails, expiry reminders, the sweep."""
    app = current_app._get_current_object()
    if app.config["KEYWARD_LOG_FORMAT"] == "json":
        logs.configure("json")
    else:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(name)s: %(message)s")
    task_queue = queue_for(app)
    if once:
        if not task_queue.run_once():
            raise click.ClickException("the queue storage is unreachable; swept from the database only")
        return
    try:
        metrics_server = serve_worker_metrics(app)
    except (ConfigError, OSError) as error:  # a bad or busy address: one line, not a traceback
        raise click.ClickException(f"worker metrics: {error}") from None
    if metrics_server is not None:
        click.echo(f"Metrics on http://{app.config['KEYWARD_WORKER_METRICS_BIND']}/metrics", err=True)
    click.echo("Keyward worker running (Ctrl-C to stop).", err=True)
    task_queue.run_consumer()
