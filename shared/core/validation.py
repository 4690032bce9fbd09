"""Field-level validation shared by every form and JSON body: errors collected per field.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

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
