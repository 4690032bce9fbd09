"""Usage recorded as requests arrive (Insight): per token per UTC day, and per network."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from shared.core.netaddr import network_of


def _days(make, public_id: str) -> dict[str, int]:
    from shared.core.extensions import db
    from shared.models import ApiToken, TokenDailyUsage

    with make.app.app_context():
        rows = db.session.execute(
            select(TokenDailyUsage.day, TokenDailyUsage.requests).join(ApiToken, ApiToken.id == TokenDailyUsage.token_id)
            .where(ApiToken.public_id == public_id)).all()
        return {day.isoformat(): requests for day, requests in rows}


def _networks(make, public_id: str) -> dict[str, tuple[int, datetime, datetime]]:
    from shared.core.extensions import db
    from shared.models import ApiToken, TokenNetwork

    with make.app.app_context():
        rows = db.session.execute(
            select(TokenNetwork.network, TokenNetwork.requests, TokenNetwork.first_seen_at, TokenNetwork.last_seen_at)
            .join(ApiToken, ApiToken.id == TokenNetwork.token_id).where(ApiToken.public_id == public_id)).all()
        return {network: (requests, first, last) for network, requests, first, last in rows}


def test_per_day_counts_equal_the_requests_across_midnight_utc(client, make, clock):
    issued = make.token(make.api_member(make.org(), "editor"))
    clock.current = datetime(2026, 11, 24, 23, 59, 58, tzinfo=UTC)
    for _ in range(3):
        assert client.get("/api/v1/me", headers=issued.headers).status_code == 200
    clock.advance(seconds=2)  # 00:00:00 on the 25th
    for _ in range(2):
        assert client.get("/api/v1/me", headers=issued.headers).status_code == 200
    # A refused request (scope) still counts as a use; a refused authentication does not.
    assert client.get("/api/v1/billing", headers=issued.headers).status_code == 403
    assert client.get("/api/v1/me", headers={"Authorization": "Bearer kw_nope"}).status_code == 401

    make.flush_usage()
    assert _days(make, issued.id) == {"2026-11-24": 3, "2026-11-25": 3}
    assert make.get_token(issued.id).usage_count == 6


def test_networks_group_addresses_and_keep_first_and_last_seen(client, make, clock):
    issued = make.token(make.api_member(make.org(), "editor"))
    start = clock.now()
    for address in ("198.51.100.7", "198.51.100.200"):
        client.get("/api/v1/me", headers=issued.headers, environ_base={"REMOTE_ADDR": address})
    clock.advance(minutes=5)
    client.get("/api/v1/me", headers=issued.headers, environ_base={"REMOTE_ADDR": "203.0.113.1"})
    client.get("/api/v1/me", headers=issued.headers, environ_base={"REMOTE_ADDR": "2001:db8:1:2::5"})
    client.get("/api/v1/me", headers=issued.headers, environ_base={"REMOTE_ADDR": "2001:db8:1:2:ffff::9"})

    make.flush_usage()
    networks = _networks(make, issued.id)
    assert {name: value[0] for name, value in networks.items()} == {
        "198.51.100.0/24": 2, "203.0.113.0/24": 1, "2001:db8:1:2::/64": 2}
    assert networks["198.51.100.0/24"][1:] == (start, start)
    assert networks["203.0.113.0/24"][1:] == (clock.now(), clock.now())


def test_network_of_groups_ipv4_by_24_and_ipv6_by_64():
    assert network_of("10.1.2.3") == "10.1.2.0/24"
    assert network_of("::ffff:10.1.2.3") == "10.1.2.0/24"
    assert network_of("2001:db8::1") == "2001:db8::/64"
    assert network_of("not an address") == "not an address"


def test_observed_rights_are_the_allowed_scope_and_method_pairs_of_the_last_30_days(client, make, clock):
    from shared.tokens import usage

    issued = make.token(make.api_member(make.org(), "editor"), scopes=["documents", "projects"],
                        permissions=["read", "write"])
    assert client.get("/api/v1/documents", headers=issued.headers).status_code == 200
    assert client.post("/api/v1/documents", json={"title": "A"}, headers=issued.headers).status_code == 201
    assert client.get("/api/v1/billing", headers=issued.headers).status_code == 403  # refused: not a use
    assert client.get("/api/v1/me", headers=issued.headers).status_code == 200  # no scope
    token_id = make.get_token(issued.id).id

    make.flush_usage()
    assert make.run(lambda: usage.observed_rights(token_id)) == {("documents", "GET"), ("documents", "POST")}
    clock.advance(days=29)
    client.get("/api/v1/projects", headers=issued.headers)
    make.flush_usage()
    clock.advance(days=2)
    assert make.run(lambda: usage.observed_rights(token_id)) == {("projects", "GET")}
