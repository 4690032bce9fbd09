"""Query-string parsing with field errors (400 invalid_request, never a 500)."""

from __future__ import annotations

from collections.abc import Iterable

from flask import request

from shared.errors import InvalidRequest


class QueryParams:
    """Read typed query parameters, collecting every problem before failing once."""

    def __init__(self, allowed: Iterable[str]):
        self.errors: dict[str, str] = {}
        unknown = set(request.args) - set(allowed)
        for name in sorted(unknown):
            self.errors[name] = "Unknown parameter"

    def text(self, name: str, max_length: int = 200) -> str:
        value = request.args.get(name, "")
        if len(value) > max_length:
            self.errors[name] = f"At most {max_length} characters"
            return ""
        return value.strip()

    def integer(self, name: str, *, default: int | None = None, minimum: int | None = None,
                maximum: int | None = None) -> int | None:
        raw = request.args.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            self.errors[name] = "Must be a whole number"
            return default
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            bounds = f"from {minimum}" if minimum is not None else ""
            bounds += f" to {maximum}" if maximum is not None else ""
            self.errors[name] = f"Must be a whole number {bounds.strip()}"
            return default
        return value

    def choice(self, name: str, choices: Iterable[str]) -> str:
        value = request.args.get(name, "")
        choices = tuple(choices)
        if value and value not in choices:
            self.errors[name] = f"Must be one of {', '.join(choices)}"
            return ""
        return value

    def done(self) -> None:
        if self.errors:
            raise InvalidRequest("Invalid query parameters", fields=self.errors)
