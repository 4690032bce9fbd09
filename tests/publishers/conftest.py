"""Fixtures for trusted publishers: a local OIDC issuer on loopback and a JWT minter.

The issuer is a tiny threaded HTTP server on 127.0.0.1 (a random port) serving a discovery
document and a JWKS made with `cryptography`; it counts every request by path, can rotate keys
and can be told to fail, so cache and refetch rules are observable from outside.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from shared.publishers import oidc

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/jwks"


def new_rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def new_ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def algorithm_for(private_key) -> str:
    return "RS256" if isinstance(private_key, rsa.RSAPrivateKey) else "ES256"


def public_jwk(private_key, kid: str) -> dict:
    if isinstance(private_key, rsa.RSAPrivateKey):
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    else:
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig", "alg": algorithm_for(private_key)}


class LocalIssuer:
    """An OIDC issuer at `self.url`; `self.keys` maps kid -> private key, all of them published."""

    def __init__(self, keys: dict):
        self.keys = dict(keys)
        self.requests: Counter[str] = Counter()
        self._count_lock = threading.Lock()
        self.discovery_override: dict | None = None
        self.failing_paths: set[str] = set()
        self.redirects: dict[str, str] = {}
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                with issuer._count_lock:
                    issuer.requests[self.path] += 1
                if self.path in issuer.redirects:
                    self.send_response(302)
                    self.send_header("Location", issuer.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path in issuer.failing_paths:
                    return self._answer(500, {"error": "down"})
                if self.path == DISCOVERY_PATH:
                    return self._answer(200, issuer.discovery())
                if self.path == JWKS_PATH:
                    return self._answer(200, issuer.jwks())
                return self._answer(404, {"error": "not found"})

            def _answer(self, status: int, document: dict) -> None:
                body = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def discovery(self) -> dict:
        if self.discovery_override is not None:
            return self.discovery_override
        return {"issuer": self.url, "jwks_uri": self.url + JWKS_PATH}

    def jwks(self) -> dict:
        return {"keys": [public_jwk(key, kid) for kid, key in list(self.keys.items())]}

    @property
    def discovery_fetches(self) -> int:
        return self.requests[DISCOVERY_PATH]

    @property
    def jwks_fetches(self) -> int:
        return self.requests[JWKS_PATH]

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def rotate(self) -> str:
        """Publish one more key (as an issuer does before signing with it); returns its kid."""
        kid = f"ec-{uuid.uuid4().hex[:8]}"
        self.keys[kid] = new_ec_key()
        return kid

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


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


class PublisherHelper:
    def __init__(self, client, make, oidc_issuer, plan: str = "business"):
        self.client, self.make, self.issuer = client, make, oidc_issuer
        self.org = make.org(plan)
        self.owner = make.api_member(self.org, "owner")
        self.key = self.manager(self.owner)

    def manager(self, member):
        return self.make.token(member, scopes=["tokens", "documents", "projects"],
                               permissions=["read", "write", "delete"], expires_at=None)

    def body(self, **fields) -> dict:
        return {"name": "CI deploy", "issuer": self.issuer.url,
                "conditions": {"repository": "acme/widgets", "ref": "refs/heads/main"},
                "rights": {"documents": ["read"]}, **fields}

    def register(self, key=None, expect: int = 201, **fields) -> dict:
        response = self.client.post("/api/v1/trusted-publishers", json=self.body(**fields),
                                    headers=(key or self.key).headers)
        assert response.status_code == expect, response.get_json()
        return response.get_json()

    def exchange(self, jwt_value: str, **extra):
        return self.client.post("/api/v1/oidc/exchange", json={"token": jwt_value, **extra})
