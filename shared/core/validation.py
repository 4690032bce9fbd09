"""Field-level validation shared by every form and JSON body: errors collected per field.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from shared.core.errors import (
    InvalidRequest,
)

if TYPE_CHECKING:
    pass


@dataclass
class FieldErrors:
    errors: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, message: str) -> None:
        self.errors.setdefault(name, message)

    def raise_if_any(self) -> None:
        if self.errors:
            first = next(iter(self.errors.values()))
            raise InvalidRequest(first, fields=dict(self.errors))


def has_control_characters(text: str, allow_newlines: bool = False) -> bool:
    allowed = {"\n", "\r", "\t"} if allow_newlines else set()
    return any(unicodedata.category(ch) in {"Cc", "Cs"} and ch not in allowed for ch in text)


MAX_ID = 2**31 - 1  # a database id is a PostgreSQL integer: a larger number names no row


def parse_id(value: str | int | None) -> int | None:
    """A database id from a form or query string (1 to MAX_ID), or None for anything else, so a
    number no column can hold never reaches a query."""
    text = str(value if value is not None else "").strip()
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        return None
    number = int(text)
    return number if 1 <= number <= MAX_ID else None


def local_path(target: str | None) -> str | None:
    """`target` when it is a path on this site ("/settings/…?…"), else None: no scheme, no host, no
    "//" or backslash (browsers read "/\\evil" as another host), and no control character, which
    would end up in a Location header (and a response that fails after its change committed)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    if has_control_characters(target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target
