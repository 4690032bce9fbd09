"""The token format: `kw_` + 56 random hex + 8 hex CRC32, hashed with the server pepper, masked.

A leaf: it knows nothing of the database, so scanners' rules and the hot path share it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib
from typing import TYPE_CHECKING

from shared.core import current

if TYPE_CHECKING:
    from shared.models import ApiToken


SECRET_HEX = 56  # 224 bits from the CSPRNG


CHECKSUM_HEX = 8  # CRC32 of those 56 characters


def _prefix() -> str:
    return current.app().config["KEYWARD_TOKEN_PREFIX"]


def _checksum(body: str) -> str:
    return f"{zlib.crc32(body.encode()) & 0xFFFFFFFF:08x}"


def generate_secret() -> str:
    body = secrets.token_hex(SECRET_HEX // 2)
    return f"{_prefix()}{body}{_checksum(body)}"


_BODY = re.compile(r"[0-9a-f]{64}")


def is_well_formed(value: str) -> bool:
    """Canonical form and a matching checksum; decided without touching the database."""
    prefix = _prefix()
    if not value.startswith(prefix):
        return False
    rest = value[len(prefix):]
    if len(rest) != SECRET_HEX + CHECKSUM_HEX or not _BODY.fullmatch(rest):
        return False
    body, check = rest[:SECRET_HEX], rest[SECRET_HEX:]
    return hmac.compare_digest(_checksum(body), check)


def hash_secret(value: str) -> str:
    """HMAC-SHA256 with the server pepper: a stolen database alone cannot verify guesses."""
    pepper = current.app().config["KEYWARD_TOKEN_PEPPER"].encode()
    return hmac.new(pepper, value.encode(), hashlib.sha256).hexdigest()


MASK = "••••"


def mask(token: ApiToken) -> str:
    return f"{_prefix()}{MASK}{token.display_suffix}"


# Anything shaped like a secret value: a run of 64 or more hex characters (a token's 56 + 8, an
# invitation's 64), in any letter case (an upper-cased token is one lower() away from the real
# one), wherever it stands: a value glued to more hex is still that value.
_SECRET_SHAPED = re.compile(r"[0-9a-fA-F]{64,}")


def mask_secrets(text: str) -> str:
    """`text` with every token-shaped value masked as tokens are displayed: whatever precedes it
    stays (the `kw_` prefix), the value becomes •••• and its last 4 characters. For text that
    comes from outside and is kept or logged: a leak report's URL, an access log's path, Referer
    or User-Agent. A commit hash (40 hex) is left alone."""
    return _SECRET_SHAPED.sub(lambda found: MASK + found.group()[-4:], text)


PUBLIC_ID = re.compile(r"tok_[0-9a-f]{16}")


def new_public_id() -> str:
    return "tok_" + secrets.token_hex(8)
