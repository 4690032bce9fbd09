"""Fixtures for trusted publishers: a local OIDC issuer on loopback and a JWT minter.

The issuer itself, its keys and PublisherHelper live in tests/publishers/issuer.py.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import jwt
import pytest

from shared.publishers import oidc
from tests.publishers.issuer import LocalIssuer, PublisherHelper, algorithm_for, new_ec_key, new_rsa_key


@pytest.fixture(scope="session")
def issuer_keys():
    """Made once per run: RSA 2048 generation is slow enough to notice per test."""
    return {"rsa-1": new_rsa_key(), "ec-1": new_ec_key()}


@pytest.fixture(autouse=True)
def empty_key_cache():
    oidc.clear_key_cache()
    yield
    oidc.clear_key_cache()


@pytest.fixture
def oidc_issuer(issuer_keys):
    issuer = LocalIssuer(issuer_keys)
    yield issuer
    issuer.close()


@pytest.fixture
def mint(oidc_issuer, clock):
    """mint(kid="rsa-1", **claims) -> a JWT signed by the local issuer, timed by the test clock.

    Claims default to a GitHub-like job token; pass `claim=None` to leave a claim out, `key=` and
    `algorithm=` to sign with something else, `headers=` to add header fields.
    """

    def make(kid: str = "rsa-1", *, key=None, algorithm: str | None = None,
             headers: dict | None = None, **overrides) -> str:
        issued = clock.now()
        claims = {
            "iss": oidc_issuer.url,
            "aud": "keyward",
            "sub": "repo:acme/widgets:ref:refs/heads/main",
            "repository": "acme/widgets",
            "ref": "refs/heads/main",
            "jti": str(uuid.uuid4()),
            "iat": int(issued.timestamp()),
            "nbf": int(issued.timestamp()),
            "exp": int((issued + timedelta(minutes=5)).timestamp()),
        }
        claims.update(overrides)
        claims = {name: value for name, value in claims.items() if value is not None}
        signing_key = key if key is not None else oidc_issuer.keys[kid]
        return jwt.encode(claims, signing_key, algorithm=algorithm or algorithm_for(signing_key),
                          headers={"kid": kid, **(headers or {})})

    return make


# --------------------------------------------------------------------------- the app side


@pytest.fixture
def app_config(app_config, oidc_issuer):
    """The app trusts the local issuer (as KEYWARD_OIDC_ISSUERS would make it)."""
    return {**app_config, "KEYWARD_OIDC_ISSUERS": oidc.trusted_issuers(oidc_issuer.url)}


@pytest.fixture
def publishers(app, client, make, oidc_issuer):
    """A business org with an owner holding a management token, and helpers to register
    publishers and exchange identity tokens through the API."""
    return PublisherHelper(client, make, oidc_issuer)
