"""Token format, checksum, hashing and masking."""

from __future__ import annotations

import re
import zlib

import pytest

from shared.tokens import format as token_format


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield


def test_secret_is_prefix_56_random_hex_and_crc32(ctx):
    secret = token_format.generate_secret()
    assert re.fullmatch(r"kw_[0-9a-f]{64}", secret)
    body, check = secret[3:59], secret[59:]
    assert check == f"{zlib.crc32(body.encode()) & 0xFFFFFFFF:08x}"
    assert token_format.is_well_formed(secret)


def test_secrets_do_not_repeat(ctx):
    assert len({token_format.generate_secret() for _ in range(500)}) == 500


@pytest.mark.parametrize("mutate", [
    lambda s: s[:-1] + ("0" if s[-1] != "0" else "1"),  # checksum off by one digit
    lambda s: s[:10] + ("a" if s[10] != "a" else "b") + s[11:],  # body changed
    lambda s: s.upper(),
    lambda s: s[:3] + s[3:].upper(),
    lambda s: s + "0",
    lambda s: s[:-1],
    lambda s: "xx_" + s[3:],
    lambda s: s.replace("kw_", "kw-"),
    lambda s: s[:20] + " " + s[21:],
])
def test_malformed_values_fail_the_format_check(ctx, mutate):
    assert not token_format.is_well_formed(mutate(token_format.generate_secret()))


def test_prefix_is_configurable(make, app_with):
    app = app_with(KEYWARD_TOKEN_PREFIX="acme_")
    with app.app_context():
        secret = token_format.generate_secret()
        assert secret.startswith("acme_") and token_format.is_well_formed(secret)
        assert not token_format.is_well_formed("kw_" + secret[5:])


def test_hash_is_hmac_with_pepper(app_with):
    first = app_with(KEYWARD_TOKEN_PEPPER="one")
    second = app_with(KEYWARD_TOKEN_PEPPER="two")
    with first.app_context():
        secret = token_format.generate_secret()
        a = token_format.hash_secret(secret)
    with second.app_context():
        b = token_format.hash_secret(secret)
    assert a != b and len(a) == 64 and secret not in a


def test_only_hash_and_last_four_are_stored(make):
    org = make.org()
    issued = make.token(make.member(org, "editor"))
    row = make.get_token(issued.id)
    stored = " ".join(str(getattr(row, column.key)) for column in row.__table__.columns)
    assert issued.secret not in stored
    assert issued.secret[3:59] not in stored
    assert row.display_suffix == issued.secret[-4:]


def test_mask_shows_prefix_dots_and_last_four(make, app):
    issued = make.token(make.member(make.org(), "editor"))
    with app.app_context():
        assert token_format.mask(make.get_token(issued.id)) == "kw_••••" + issued.secret[-4:]
