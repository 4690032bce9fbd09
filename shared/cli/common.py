"""What every command shares: a service's refusal becomes one line on stderr and exit status 1."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import wraps

import click

from shared.core.errors import ServiceError


def _fail(error: ServiceError) -> None:
    detail = "; ".join(f"{k}: {v}" for k, v in error.fields.items()) if error.fields else ""
    suffix = f" ({detail})" if detail and detail != error.message else ""
    raise click.ClickException(f"{error.message}{suffix}")


def reports_service_errors(command: Callable) -> Callable:
    """A service's refusal (unknown org, bad role, …) becomes a one-line error and exit status 1."""

    @wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ServiceError as error:
            _fail(error)

    return wrapper


def password_from_env_or_prompt() -> str:
    """The operator's password: KEYWARD_PASSWORD for scripts, else asked twice without echo."""
    return os.environ.get("KEYWARD_PASSWORD") or click.prompt(
        "Password", hide_input=True, confirmation_prompt=True
    )
