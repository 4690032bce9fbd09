"""POST /api/v1/oidc/exchange against a local issuer: a CI job trades its identity token for a
short-lived token; every refusal reason, replay under concurrency, rotation, and what the minted
token may do (its rights, its expiry, no regenerate or edit, revoked with its publisher)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading

import jwt
from cryptography.hazmat.primitives import serialization

from shared.models import Event, OidcUsedJti
from shared.publishers import service
from tests.conftest import bearer
from tests.publishers.issuer import DISCOVERY_PATH, PublisherHelper, b64, new_rsa_key


def refused(response, reason: str) -> dict:
    assert response.status_code == 401, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "invalid_oidc_token" and error["reason"] == reason, error
    return error


# --------------------------------------------------------------------------- success


def test_exchange_mints_a_short_lived_token_bound_to_the_publisher(publishers, mint, clock, make, client):
    registered = publishers.register(lifetime_minutes=10)
    identity_token = mint(jti="run-1-attempt-1")

    response = publishers.exchange(identity_token)

    assert response.status_code == 201, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["trusted_publisher"] == {"id": registered["id"], "name": "CI deploy"}
    assert body["secret"].startswith("kw_")
    minted = body["token"]
    assert (minted["type"], minted["project_id"]) == ("personal", None)
    assert (minted["scopes"], minted["permissions"]) == (["documents"], ["read"])
    assert minted["expires_at"] == "2026-11-23T12:10:00Z"
    assert minted["created_by"]["id"] == publishers.owner.user_id
    assert make.get_token(minted["id"]).trusted_publisher_id is not None

    [record] = make.audit("token.exchanged")
    assert record.organization_id == publishers.org.id and record.target_id == minted["id"]
    assert record.details["claims"] == {"repository": "acme/widgets", "ref": "refs/heads/main"}
    assert record.details["sub"] == "repo:acme/widgets:ref:refs/heads/main"
    assert record.details["jti"] == "run-1-attempt-1"
    assert record.details["trusted_publisher"] == {"id": registered["id"], "name": "CI deploy"}
    signature = identity_token.rsplit(".", 1)[1]
    for event in make.audit():
        assert signature not in json.dumps(event.details)
    [event] = make.rows(Event, type="token.exchanged")
    assert event.data["token"]["id"] == minted["id"]
    assert event.data["trusted_publisher"]["id"] == registered["id"]
    assert "secret" not in json.dumps(event.data)


def test_minted_token_holds_exactly_the_publishers_rights_until_its_lifetime_ends(publishers, mint, clock,
                                                                                    client):
    publishers.register(rights={"documents": ["read"]}, lifetime_minutes=5)
    secret = publishers.exchange(mint()).get_json()["secret"]
    headers = bearer(secret)

    assert client.get("/api/v1/documents", headers=headers).status_code == 200
    write = client.post("/api/v1/documents", json={"title": "x"}, headers=headers)
    assert write.status_code == 403 and write.get_json()["error"]["code"] == "insufficient_permission"
    other_scope = client.get("/api/v1/projects", headers=headers)
    assert other_scope.status_code == 403 and other_scope.get_json()["error"]["code"] == "insufficient_scope"
    assert client.get("/api/v1/tokens", headers=headers).status_code == 403

    clock.advance(minutes=4, seconds=59)
    assert client.get("/api/v1/documents", headers=headers).status_code == 200
    clock.advance(seconds=1)
    expired = client.get("/api/v1/documents", headers=headers)
    assert expired.status_code == 401 and expired.get_json()["error"]["code"] == "token_expired"


def test_publisher_with_a_project_mints_project_tokens(publishers, mint, make):
    project = make.project(publishers.org)
    publishers.register(project_id=project, rights={"documents": ["read", "write"], "projects": ["read"]})

    minted = publishers.exchange(mint()).get_json()["token"]

    assert (minted["type"], minted["project_id"]) == ("project", project)
    assert minted["rights"] == {"documents": ["read", "write"], "projects": ["read"]}  # per scope, as registered


def test_es256_identity_tokens_are_exchanged_too(publishers, mint):
    publishers.register()
    assert publishers.exchange(mint("ec-1")).status_code == 201


# --------------------------------------------------------------------------- refusals


def test_token_signed_by_another_key_is_refused_as_signature(publishers, mint):
    publishers.register()
    refused(publishers.exchange(mint("rsa-1", key=new_rsa_key())), "signature")


def test_expired_identity_token_is_refused(publishers, mint, clock):
    publishers.register()
    token = mint()
    clock.advance(minutes=5)
    refused(publishers.exchange(token), "expired")


def test_identity_token_for_another_audience_is_refused(publishers, mint):
    publishers.register()
    refused(publishers.exchange(mint(aud="sigstore")), "audience")


def test_identity_token_of_an_untrusted_issuer_is_refused_without_fetching(publishers, mint, oidc_issuer):
    publishers.register()
    refused(publishers.exchange(mint(iss="https://ci.attacker.example")), "issuer")
    assert oidc_issuer.total_requests == 0


def test_identity_token_of_another_repository_matches_no_publisher(publishers, mint):
    publishers.register()
    refused(publishers.exchange(mint(repository="acme/widgets-fork")), "no_matching_publisher")
    refused(publishers.exchange(mint(ref="refs/heads/feature")), "no_matching_publisher")
    refused(publishers.exchange(mint(repository=None)), "no_matching_publisher")


def test_identity_token_exchanged_twice_is_refused_as_replayed_and_audited(publishers, mint, make):
    registered = publishers.register()
    token = mint(jti="once")
    assert publishers.exchange(token).status_code == 201

    error = refused(publishers.exchange(token), "replayed")

    assert "already exchanged" in error["message"]
    [record] = make.audit("token.exchange_refused")
    assert record.organization_id == publishers.org.id and record.target_id == registered["id"]
    assert record.details["reason"] == "replayed" and record.details["jti"] == "once"
    assert len(make.audit("token.exchanged")) == 1


def test_concurrent_exchanges_of_one_identity_token_mint_exactly_one_token(app, publishers, mint, make):
    publishers.register()
    token = mint()
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def attempt():
        client = app.test_client()
        barrier.wait()
        statuses.append(client.post("/api/v1/oidc/exchange", json={"token": token}).status_code)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [201, 401, 401, 401]
    assert len(make.audit("token.exchanged")) == 1
    assert len(make.rows(OidcUsedJti)) == 1


def test_alg_none_is_refused(publishers, mint):
    publishers.register()
    claims = jwt.decode(mint(), options={"verify_signature": False})
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": "rsa-1"})
    refused(publishers.exchange(unsigned), "signature")


def test_hs256_signed_with_the_published_public_key_is_refused(publishers, mint, oidc_issuer):
    publishers.register()
    public_pem = oidc_issuer.keys["rsa-1"].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    claims = jwt.decode(mint(), options={"verify_signature": False})
    signing_input = ".".join([b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode()),
                              b64(json.dumps(claims).encode())])
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()

    refused(publishers.exchange(f"{signing_input}.{b64(signature)}"), "signature")


def test_a_rotated_key_is_fetched_and_accepted(publishers, mint, oidc_issuer, clock):
    publishers.register()
    assert publishers.exchange(mint("rsa-1")).status_code == 201
    assert oidc_issuer.jwks_fetches == 1

    new_kid = oidc_issuer.rotate()
    clock.advance(minutes=2)

    assert publishers.exchange(mint(new_kid)).status_code == 201
    assert oidc_issuer.jwks_fetches == 2


def test_unreachable_issuer_answers_503_with_retry_after(publishers, mint, oidc_issuer):
    publishers.register()
    oidc_issuer.failing_paths.add(DISCOVERY_PATH)

    response = publishers.exchange(mint())

    assert response.status_code == 503 and response.headers["Retry-After"].isdigit()
    assert response.get_json()["error"]["code"] == "issuer_unavailable"


def test_refusals_are_rate_limited_per_address(app_with, mint, make, oidc_issuer):
    app = app_with(KEYWARD_OIDC_FAILURE_LIMIT="2/minute")
    client = app.test_client()
    for _ in range(2):
        refused(client.post("/api/v1/oidc/exchange", json={"token": "not-a-jwt"}), "signature")

    limited = client.post("/api/v1/oidc/exchange", json={"token": mint()})

    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert oidc_issuer.total_requests == 0


def test_every_exchange_is_rate_limited_per_address(app_with, mint):
    client = app_with(KEYWARD_OIDC_EXCHANGE_LIMIT="1/minute").test_client()
    client.post("/api/v1/oidc/exchange", json={"token": "x"})
    assert client.post("/api/v1/oidc/exchange", json={"token": mint()}).status_code == 429


def test_bad_exchange_bodies_are_400(client):
    assert client.post("/api/v1/oidc/exchange", json={}).status_code == 400
    assert client.post("/api/v1/oidc/exchange", json={"token": 5}).status_code == 400
    assert client.post("/api/v1/oidc/exchange", data="x", content_type="text/plain").status_code == 400


def test_two_matching_publishers_are_ambiguous_until_one_is_named(publishers, mint, make):
    mine = publishers.register(name="mine")
    other_org = make.org("business")
    other = publishers.manager(make.api_member(other_org, "owner"))
    theirs = publishers.register(key=other, name="theirs")

    error = refused(publishers.exchange(mint()), "no_matching_publisher")
    assert "ambiguous" in error["message"]

    named = publishers.exchange(mint(), trusted_publisher_id=mine["id"])
    assert named.status_code == 201 and named.get_json()["trusted_publisher"]["id"] == mine["id"]
    assert make.get_token(named.get_json()["token"]["id"]).organization_id == publishers.org.id
    assert publishers.exchange(mint(), trusted_publisher_id=theirs["id"]).status_code == 201
    refused(publishers.exchange(mint(), trusted_publisher_id="tp_0000000000000000"), "no_matching_publisher")


def test_publisher_of_a_removed_member_matches_nothing(publishers, mint, make, app):
    admin = make.api_member(publishers.org, "admin")
    publishers.register(key=publishers.manager(admin))

    def remove():
        from shared.core.extensions import db
        from shared.identity import accounts
        from shared.models import Membership

        accounts.remove_member(db.session.get(Membership, admin.id))

    make.run(remove)
    refused(publishers.exchange(mint()), "no_matching_publisher")


def test_organization_policy_still_applies_to_the_minted_token(publishers, mint, make):
    registered = publishers.register()

    def require_allowlist():
        from shared.core.extensions import db
        from shared.models import Organization

        db.session.get(Organization, publishers.org.id).policy_require_allowlist = True
        db.session.commit()

    make.run(require_allowlist)
    response = publishers.exchange(mint())

    assert response.status_code == 400
    assert "CI deploy" in response.get_json()["error"]["message"]
    [record] = make.audit("token.exchange_refused")
    assert record.target_id == registered["id"] and record.details["reason"] == "invalid_request"
    assert make.rows(OidcUsedJti) == []  # nothing was used up: the job may retry once it is fixed


def test_minted_tokens_neither_count_toward_nor_are_stopped_by_the_free_plan_limit(client, make, mint,
                                                                                     oidc_issuer):
    free = PublisherHelper(client, make, oidc_issuer, plan="free")
    free.register()
    for _ in range(9):  # with the management token: the member's 10 tokens
        free.manager(free.owner)
    one_more = {"name": "one more", "scopes": ["documents"], "permissions": ["read"]}
    full = client.post("/api/v1/tokens", json=one_more, headers=free.key.headers)
    assert full.status_code == 409

    assert free.exchange(mint()).status_code == 201
    assert free.exchange(mint()).status_code == 201

    client.delete(f"/api/v1/tokens/{free.key.id}", headers=free.key.headers)
    other = free.manager(free.owner)  # room for exactly one again: the minted tokens take none
    assert client.post("/api/v1/tokens", json=one_more, headers=other.headers).status_code == 409


# --------------------------------------------------------------------------- the minted token's life


def test_minted_token_cannot_be_regenerated_or_edited(publishers, mint, client):
    publishers.register()
    minted = publishers.exchange(mint()).get_json()["token"]
    headers = publishers.key.headers

    regenerate = client.post(f"/api/v1/tokens/{minted['id']}/regenerate", headers=headers)
    assert regenerate.status_code == 409
    assert regenerate.get_json()["error"]["code"] == "trusted_publisher_token"
    edit = client.patch(f"/api/v1/tokens/{minted['id']}", json={"name": "longer lived"}, headers=headers)
    assert edit.status_code == 409 and edit.get_json()["error"]["code"] == "trusted_publisher_token"
    # Taking rights away stays possible.
    assert client.post(f"/api/v1/tokens/{minted['id']}/deactivate", headers=headers).status_code == 200
    assert client.delete(f"/api/v1/tokens/{minted['id']}", headers=headers).status_code == 200


def test_deleting_a_publisher_revokes_its_live_tokens_and_stops_exchanges(publishers, mint, client, make):
    registered = publishers.register()
    publishers.register(name="other repository", conditions={"repository": "acme/other"})
    first = publishers.exchange(mint()).get_json()
    second = publishers.exchange(mint()).get_json()
    assert client.get("/api/v1/documents", headers=bearer(first["secret"])).status_code == 200
    listed = client.get("/api/v1/trusted-publishers", headers=publishers.key.headers).get_json()
    live = {item["name"]: item["live_tokens"] for item in listed["items"]}
    assert live == {"CI deploy": 2, "other repository": 0}

    deleted = client.delete(f"/api/v1/trusted-publishers/{registered['id']}", headers=publishers.key.headers)

    assert deleted.status_code == 200
    assert sorted(deleted.get_json()["revoked"]) == sorted([first["token"]["id"], second["token"]["id"]])
    for minted in (first, second):
        answer = client.get("/api/v1/documents", headers=bearer(minted["secret"]))
        assert answer.status_code == 401 and answer.get_json()["error"]["code"] == "invalid_api_key"
        assert make.get_token(minted["token"]["id"]).revoked_reason == service.REVOKED_WITH_PUBLISHER
    [record] = make.audit("trusted_publisher.deleted")
    assert sorted(record.details["revoked"]) == sorted(deleted.get_json()["revoked"])
    assert len(make.rows(Event, type="token.revoked")) == 2
    refused(publishers.exchange(mint()), "no_matching_publisher")
    assert client.get("/api/v1/trusted-publishers", headers=publishers.key.headers).get_json()["total"] == 1
    again = client.delete(f"/api/v1/trusted-publishers/{registered['id']}", headers=publishers.key.headers)
    assert again.status_code == 404


def test_sweep_forgets_used_jtis_once_their_identity_tokens_expired(publishers, mint, clock, make, app):
    from shared.worker.queue import sweep

    publishers.register()
    publishers.exchange(mint())  # expires in 5 minutes
    clock.advance(minutes=5)
    make.run(sweep)
    assert len(make.rows(OidcUsedJti)) == 1  # kept a while past expiry (servers' clocks differ)

    clock.advance(seconds=service.USED_JTI_MARGIN.total_seconds() + 1)
    make.run(sweep)
    assert make.rows(OidcUsedJti) == []


def test_minted_tokens_raise_no_expiry_reminders_or_dormant_deactivations(publishers, mint, clock, make):
    from shared.models import Notification, Organization
    from shared.worker.queue import sweep

    def deactivate_unused_after_one_day():
        from shared.core.extensions import db

        db.session.get(Organization, publishers.org.id).policy_deactivate_unused_days = 1
        db.session.commit()

    make.run(deactivate_unused_after_one_day)
    publishers.register()
    minted = publishers.exchange(mint()).get_json()["token"]

    make.run(sweep)  # due "expires tomorrow" for any other token
    clock.advance(minutes=20)
    make.run(sweep)  # expired
    clock.advance(days=2)
    make.run(sweep)  # unused for the policy's day

    assert make.rows(Notification) == []
    token_id = make.get_token(minted["id"]).id
    assert [e.type for e in make.rows(Event, token_id=token_id)] == ["token.created", "token.exchanged"]
    assert make.get_token(minted["id"]).is_active
