"""`flask --app wsgi ...` commands: one click group per file. Scripts rely on their output."""

from __future__ import annotations

from flask import Flask

from shared.cli import audit, demo, orgs, partners, projects, tokens, users, worker


def register_cli(app: Flask) -> None:
    for module in (orgs, partners, projects, users, tokens, audit):
        app.cli.add_command(module.cli)
    app.cli.add_command(worker.worker)
    app.cli.add_command(demo.demo)
