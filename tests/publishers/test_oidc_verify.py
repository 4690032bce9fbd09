"""Verifying CI identity tokens against a local OIDC issuer: signature, claims, issuers, key cache."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from datetime import UTC, datetime

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from shared.core.config import ConfigError, build_config
from shared.publishers import oidc
from shared.publishers.oidc import (
    IssuerUnavailable,
    OidcRefused,
    RefusalReason,
    conditions_match,
    trusted_issuers,
    verify_oidc_token,
)
from tests.publishers.issuer import JWKS_PATH, b64, new_ec_key, new_rsa_key, public_jwk


@pytest.fixture
def verify(oidc_issuer):
    """verify(token) with the local issuer allowed and audience `keyward` expected."""

    def run(token: str, *, allowed=None, audiences=("keyward",)):
        allowed = trusted_issuers(oidc_issuer.url) if allowed is None else allowed
        return verify_oidc_token(token, allowed_issuers=allowed, audience_for=lambda issuer: audiences)

    return run


def refusal(verify, token: str, **options) -> OidcRefused:
    with pytest.raises(OidcRefused) as caught:
        verify(token, **options)
    return caught.value


# --------------------------------------------------------------------------- accepted tokens


def test_rs256_token_verifies_and_returns_its_claims(verify, mint, oidc_issuer, clock):
    token = mint("rsa-1", jti="job-42", repository="acme/widgets")

    identity = verify(token)

    assert identity.issuer == oidc_issuer.url
    assert identity.jti == "job-42"
    assert identity.audiences == ("keyward",)
    assert identity.claims["repository"] == "acme/widgets"
    assert identity.expires_at == datetime(2026, 11, 23, 12, 5, tzinfo=UTC)


def test_es256_token_verifies(verify, mint):
    assert verify(mint("ec-1")).claims["sub"] == "repo:acme/widgets:ref:refs/heads/main"


def test_audience_list_holding_the_expected_audience_is_accepted(verify, mint):
    identity = verify(mint(aud=["sigstore", "keyward"]))

    assert identity.audiences == ("sigstore", "keyward")


# --------------------------------------------------------------------------- signature and algorithm


def test_token_signed_by_an_unpublished_key_is_refused_as_signature(verify, mint):
    forged = mint("rsa-1", key=new_ec_key(), algorithm="ES256")
    assert refusal(verify, forged).reason == RefusalReason.SIGNATURE

    other_rsa = mint("rsa-1", key=new_rsa_key())
    assert refusal(verify, other_rsa).reason == RefusalReason.SIGNATURE


def test_tampered_payload_is_refused_as_signature(verify, mint):
    header, _, signature = mint().split(".")
    claims = {"iss": "x", "aud": "keyward", "repository": "evil/repo"}
    tampered = ".".join([header, b64(json.dumps(claims).encode()), signature])
    # The issuer in the tampered payload is not trusted: nothing was fetched for it.
    assert refusal(verify, tampered).reason == RefusalReason.ISSUER

    genuine = jwt.decode(mint(), options={"verify_signature": False})
    tampered = ".".join([header, b64(json.dumps({**genuine, "repository": "evil/repo"}).encode()),
                         signature])
    assert refusal(verify, tampered).reason == RefusalReason.SIGNATURE


def test_alg_none_is_refused_without_fetching_keys(verify, mint, oidc_issuer, clock):
    claims = jwt.decode(mint(), options={"verify_signature": False})
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": "rsa-1"})

    assert refusal(verify, unsigned).reason == RefusalReason.SIGNATURE
    assert oidc_issuer.total_requests == 0


def test_hs256_signed_with_the_published_public_key_is_refused(verify, mint, oidc_issuer):
    # The classic confusion attack: the public key, known to all, used as an HMAC secret.
    public_pem = oidc_issuer.keys["rsa-1"].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    claims = jwt.decode(mint(), options={"verify_signature": False})
    signing_input = ".".join([
        b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode()),
        b64(json.dumps(claims).encode()),
    ])
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()

    assert refusal(verify, f"{signing_input}.{b64(signature)}").reason == RefusalReason.SIGNATURE


def test_algorithm_that_does_not_fit_the_key_type_is_refused(verify, mint, oidc_issuer):
    # Signed ES256 by a real EC key but naming the RSA key: the kid's key decides the algorithm.
    token = mint("rsa-1", key=oidc_issuer.keys["ec-1"], algorithm="ES256")

    assert refusal(verify, token).reason == RefusalReason.SIGNATURE


def test_garbage_is_refused_as_signature(verify):
    for junk in ["", "not-a-jwt", "a.b.c", "x" * 20_000]:
        assert refusal(verify, junk).reason == RefusalReason.SIGNATURE


def test_token_without_jti_is_refused_as_signature(verify, mint):
    assert refusal(verify, mint(jti=None)).reason == RefusalReason.SIGNATURE
    assert refusal(verify, mint(jti="")).reason == RefusalReason.SIGNATURE


def test_token_without_kid_is_refused(verify, mint, oidc_issuer):
    claims = jwt.decode(mint(), options={"verify_signature": False})
    token = jwt.encode(claims, oidc_issuer.keys["rsa-1"], algorithm="RS256")

    assert refusal(verify, token).reason == RefusalReason.SIGNATURE


def test_rsa_key_shorter_than_2048_bits_is_never_used(verify, mint, oidc_issuer):
    oidc_issuer.keys["weak"] = new_rsa_key(1024)
    with pytest.warns(jwt.warnings.InsecureKeyLengthWarning):
        token = mint("weak")

    assert refusal(verify, token).reason == RefusalReason.SIGNATURE


# --------------------------------------------------------------------------- lifetime


def test_token_is_valid_until_exp_and_refused_from_then_on(verify, mint, clock):
    token = mint()
    clock.advance(minutes=4, seconds=59)
    assert verify(token).jti

    clock.advance(seconds=1)
    refused = refusal(verify, token)
    assert refused.reason == RefusalReason.EXPIRED
    assert "expired" in refused.message


def test_token_without_exp_is_refused_as_expired(verify, mint):
    assert refusal(verify, mint(exp=None)).reason == RefusalReason.EXPIRED


def test_nbf_in_the_future_is_tolerated_within_60_seconds_only(verify, mint, clock):
    soon = int(clock.now().timestamp())
    assert verify(mint(nbf=soon + 60)).jti

    refused = refusal(verify, mint(nbf=soon + 61))
    assert refused.reason == RefusalReason.EXPIRED
    assert "not valid yet" in refused.message


def test_iat_in_the_future_beyond_leeway_is_refused(verify, mint, clock):
    now = int(clock.now().timestamp())
    assert verify(mint(iat=now + 30)).jti
    assert refusal(verify, mint(iat=now + 120)).reason == RefusalReason.EXPIRED


def test_time_claims_that_are_not_numbers_are_refused(verify, mint):
    assert refusal(verify, mint(nbf="soon")).reason == RefusalReason.SIGNATURE
    assert refusal(verify, mint(exp=True)).reason == RefusalReason.SIGNATURE


# --------------------------------------------------------------------------- audience


def test_wrong_audience_is_refused(verify, mint):
    assert refusal(verify, mint(aud="someone-else")).reason == RefusalReason.AUDIENCE
    assert refusal(verify, mint(aud=None)).reason == RefusalReason.AUDIENCE


def test_audience_of_another_publisher_of_the_issuer_is_accepted(verify, mint):
    identity = verify(mint(aud="deploy-bot"), audiences=("keyward", "deploy-bot"))

    assert identity.audiences == ("deploy-bot",)


def test_issuer_without_any_expected_audience_is_refused_before_fetching(verify, mint, oidc_issuer):
    assert refusal(verify, mint(), audiences=()).reason == RefusalReason.AUDIENCE
    assert oidc_issuer.total_requests == 0


# --------------------------------------------------------------------------- issuers


def test_issuer_not_allowed_is_refused_without_any_network_request(verify, mint, oidc_issuer):
    refused = refusal(verify, mint(), allowed=trusted_issuers(None))

    assert refused.reason == RefusalReason.ISSUER
    assert oidc_issuer.total_requests == 0


def test_iss_differing_from_the_allowed_issuer_is_refused(verify, mint, oidc_issuer):
    # A trailing slash makes another issuer: `iss` must equal an allowed issuer exactly.
    assert refusal(verify, mint(iss=oidc_issuer.url + "/")).reason == RefusalReason.ISSUER
    assert refusal(verify, mint(iss=None)).reason == RefusalReason.ISSUER
    assert oidc_issuer.total_requests == 0


def test_discovery_document_naming_another_issuer_is_refused(verify, mint, oidc_issuer):
    oidc_issuer.discovery_override = {"issuer": "https://elsewhere.example",
                                      "jwks_uri": oidc_issuer.url + JWKS_PATH}

    with pytest.raises(IssuerUnavailable) as caught:
        verify(mint())
    assert caught.value.reason == RefusalReason.ISSUER
    assert oidc_issuer.jwks_fetches == 0


def test_plain_http_issuer_off_loopback_is_refused(monkeypatch, verify, mint):
    fetched = []
    monkeypatch.setattr(oidc, "_fetch_json", lambda url: fetched.append(url) or {})
    token = mint(iss="http://issuer.example")

    refused = refusal(verify, token, allowed={"http://issuer.example"})

    assert refused.reason == RefusalReason.ISSUER
    assert fetched == []


@pytest.mark.parametrize("jwks_uri", ["http://keys.example/jwks", "https://127.0.0.1:1/jwks"])
def test_jwks_uri_must_be_as_secure_as_the_issuer(verify, mint, oidc_issuer, jwks_uri):
    oidc_issuer.discovery_override = {"issuer": oidc_issuer.url, "jwks_uri": jwks_uri}

    with pytest.raises(IssuerUnavailable) as caught:
        verify(mint())
    assert "jwks_uri" in caught.value.message


def test_redirects_are_not_followed(verify, mint, oidc_issuer):
    oidc_issuer.redirects[JWKS_PATH] = oidc_issuer.url + "/elsewhere"

    with pytest.raises(IssuerUnavailable):
        verify(mint())
    assert oidc_issuer.requests["/elsewhere"] == 0


def test_trusted_issuers_are_the_builtins_plus_the_configured_ones():
    issuers = trusted_issuers(" https://gitlab.example.com , http://127.0.0.1:8080,"
                              "http://localhost:9000,http://[::1]:7000,")

    assert issuers == {"https://token.actions.githubusercontent.com", "https://gitlab.com",
                       "https://gitlab.example.com", "http://127.0.0.1:8080",
                       "http://localhost:9000", "http://[::1]:7000"}


SECRETS = {"SECRET_KEY": "s", "KEYWARD_TOKEN_PEPPER": "p"}


@pytest.mark.parametrize("entry", ["http://gitlab.example.com", "ftp://127.0.0.1", "gitlab.com",
                                   "https://user:pw@gitlab.example.com", "https://x.example/?a=1",
                                   "http://10.0.0.1", "https://x.example:port"])
def test_untrustworthy_configured_issuer_stops_the_app(entry, tmp_path):
    env = {"KEYWARD_OIDC_ISSUERS": f"https://ok.example,{entry}", **SECRETS}
    with pytest.raises(ConfigError, match=f"KEYWARD_OIDC_ISSUERS: '{re.escape(entry)}'"):
        build_config(tmp_path, env)


def test_configured_issuers_reach_the_app_config(tmp_path):
    env = {"KEYWARD_OIDC_ISSUERS": "https://gitlab.example.com", **SECRETS}
    assert build_config(tmp_path, env)["KEYWARD_OIDC_ISSUERS"] == {
        "https://token.actions.githubusercontent.com", "https://gitlab.com", "https://gitlab.example.com"}
    assert build_config(tmp_path, SECRETS)["KEYWARD_OIDC_ISSUERS"] == {
        "https://token.actions.githubusercontent.com", "https://gitlab.com"}


# --------------------------------------------------------------------------- key cache


def test_new_kid_after_rotation_triggers_exactly_one_refetch(verify, mint, oidc_issuer, clock):
    verify(mint("rsa-1"))
    assert (oidc_issuer.discovery_fetches, oidc_issuer.jwks_fetches) == (1, 1)

    new_kid = oidc_issuer.rotate()
    clock.advance(minutes=10)
    assert verify(mint(new_kid)).jti
    assert verify(mint(new_kid)).jti

    assert (oidc_issuer.discovery_fetches, oidc_issuer.jwks_fetches) == (1, 2)


def test_unknown_kid_refetches_at_most_once_a_minute(verify, mint, oidc_issuer, clock):
    verify(mint("rsa-1"))
    stranger = new_rsa_key()

    assert refusal(verify, mint("made-up", key=stranger)).reason == RefusalReason.SIGNATURE
    assert oidc_issuer.jwks_fetches == 2
    clock.advance(seconds=59)
    assert refusal(verify, mint("made-up-2", key=stranger)).reason == RefusalReason.SIGNATURE
    assert oidc_issuer.jwks_fetches == 2

    # Once the minute is over, a newly published key is found.
    kid = oidc_issuer.rotate()
    clock.advance(seconds=1)
    assert verify(mint(kid)).jti
    assert oidc_issuer.jwks_fetches == 3


def test_keys_are_fetched_again_after_an_hour(verify, mint, oidc_issuer, clock):
    verify(mint())
    clock.advance(minutes=59, seconds=59)
    verify(mint())
    assert (oidc_issuer.discovery_fetches, oidc_issuer.jwks_fetches) == (1, 1)

    clock.advance(seconds=1)
    verify(mint())
    assert (oidc_issuer.discovery_fetches, oidc_issuer.jwks_fetches) == (2, 2)


def test_withdrawn_key_stops_working_within_the_hour(verify, mint, oidc_issuer, clock):
    verify(mint("ec-1"))
    del oidc_issuer.keys["ec-1"]
    clock.advance(hours=1)

    assert refusal(verify, mint("ec-1", key=new_ec_key())).reason == RefusalReason.SIGNATURE


def test_unreachable_issuer_is_retried_only_after_a_pause(verify, mint, oidc_issuer, clock):
    oidc_issuer.failing_paths.add(JWKS_PATH)
    with pytest.raises(IssuerUnavailable) as caught:
        verify(mint())
    assert "HTTP 500" in caught.value.message

    oidc_issuer.failing_paths.clear()
    with pytest.raises(IssuerUnavailable):
        verify(mint())
    assert oidc_issuer.jwks_fetches == 1

    clock.advance(seconds=10)
    assert verify(mint()).jti
    assert oidc_issuer.jwks_fetches == 2


def test_issuer_that_is_not_listening_is_unavailable(verify, mint, oidc_issuer):
    oidc_issuer.close()

    with pytest.raises(IssuerUnavailable):
        verify(mint())


def test_concurrent_first_requests_fetch_the_keys_once(verify, mint, oidc_issuer):
    tokens = [mint() for _ in range(8)]
    results: list = []
    start = threading.Barrier(len(tokens))

    def run(token):
        start.wait()
        results.append(verify(token).jti)

    threads = [threading.Thread(target=run, args=(token,)) for token in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 8
    assert (oidc_issuer.discovery_fetches, oidc_issuer.jwks_fetches) == (1, 1)


def test_jwks_entries_of_other_types_or_uses_are_ignored(verify, mint, oidc_issuer, monkeypatch):
    published = oidc_issuer.jwks

    def jwks():
        keys = published()["keys"]
        encryption = {**public_jwk(oidc_issuer.keys["rsa-1"], "enc-1"), "use": "enc"}
        hmac_key = {"kty": "oct", "kid": "oct-1", "k": b64(b"secret"), "alg": "HS256"}
        return {"keys": [*keys, encryption, hmac_key, "junk", {"kty": "RSA"}]}

    monkeypatch.setattr(oidc_issuer, "jwks", jwks)

    assert verify(mint("rsa-1")).jti
    assert refusal(verify, mint("enc-1", key=oidc_issuer.keys["rsa-1"])).reason == "signature"


# --------------------------------------------------------------------------- conditions


def test_conditions_match_only_exact_string_claims():
    claims = {"repository": "acme/widgets", "ref": "refs/heads/main", "run_number": 7}

    assert conditions_match({"repository": "acme/widgets", "ref": "refs/heads/main"}, claims)
    assert not conditions_match({"repository": "Acme/Widgets"}, claims)
    assert not conditions_match({"repository": "acme/widgets", "environment": "prod"}, claims)
    assert not conditions_match({"run_number": "7"}, claims)
    assert not conditions_match({}, claims)


def test_refusal_reasons_are_the_api_vocabulary():
    assert {reason.value for reason in RefusalReason} == {
        "signature", "expired", "audience", "issuer", "no_matching_publisher", "replayed"}
