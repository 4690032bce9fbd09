"""Trusted-publisher test helpers: a local OIDC issuer on loopback, its keys, and the app side
(registering publishers and exchanging identity tokens through the API).

The issuer is a tiny threaded HTTP server on 127.0.0.1 (a random port) serving a discovery
document and a JWKS made with `cryptography`; it counts every request by path, can rotate keys
and can be told to fail, so cache and refetch rules are observable from outside.

A plain module (neither a test module nor a conftest): conftest.py and the tests import from here.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

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


def b64(data: bytes) -> str:
    """Base64url without padding, as in a JWT's segments."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --------------------------------------------------------------------------- the app side


class PublisherHelper:
    """An org with an owner holding a management token; registers publishers that trust `oidc_issuer`
    and exchanges identity tokens, through the API."""

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
