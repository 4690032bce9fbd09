"""Migration 0008 on a database holding tokens of the older shape (scopes × permissions lists):
every token keeps exactly what it could do, and going back never widens a token."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from flask_migrate import downgrade, upgrade

from tests.conftest import ROOT, TEST_DATABASE_URL, _worker, bearer

MIGRATIONS = str(ROOT / "migrations")
METHODS = ("GET", "POST", "PATCH", "DELETE")
METHOD_PERMISSION = {"GET": "read", "POST": "write", "PATCH": "write", "DELETE": "delete"}
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

# (name, creator, scopes, permissions, the rights it must have after the upgrade)
OLD_TOKENS = [
    ("ci", "owner", ["documents", "projects"], ["read", "write"],
     {"documents": ["read", "write"], "projects": ["read", "write"]}),
    ("manager", "owner", ["tokens"], ["read"], {"tokens": ["read"]}),
    # Unknown labels are kept, on every scope the token listed, and still grant nothing.
    ("labelled", "owner", ["documents", "x-team"], ["read", "admin"],
     {"documents": ["read", "admin"], "x-team": ["read", "admin"]}),
    # Beyond its creator's role (an editor, once more): kept as it was, the role still caps it.
    ("demoted", "editor", ["billing", "documents"], ["delete", "read"],
     {"documents": ["read", "delete"], "billing": ["read", "delete"]}),
]


@pytest.fixture
def old_database(tmp_path):
    """An empty database of its own (SQLite file, or a fresh PostgreSQL schema)."""
    if not TEST_DATABASE_URL:
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    schema = f"kw_{_worker()}_rights_migration"
    engine = sa.create_engine(TEST_DATABASE_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:
        connection.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    url = TEST_DATABASE_URL.replace("postgresql://", "postgresql+psycopg://", 1)
    yield f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    engine = sa.create_engine(TEST_DATABASE_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:
        connection.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    engine.dispose()


def _insert(connection, table: str, **values) -> int:
    """A row through the table as the database describes it (whatever the models say now)."""
    reflected = sa.Table(table, sa.MetaData(), autoload_with=connection)
    return connection.execute(reflected.insert().values(**values).returning(reflected.c.id)).scalar_one()


def _write_old_tokens(connection) -> dict[str, str]:
    """Rows as the schema at 0006 held them; returns each token's secret by name."""
    from shared.tokens.format import generate_secret, hash_secret

    org = _insert(connection, "organizations", name="Old Org", slug="old-org", plan="business",
                  credit_balance=0, policy_allow_no_expiry=True, policy_require_allowlist=False,
                  created_at=NOW)
    creators = {}
    for role in ("owner", "editor"):
        user = _insert(connection, "users", email=f"{role}@old.test", display_name=role, password_hash="x",
                       is_active=True, created_at=NOW)
        creators[role] = _insert(connection, "memberships", user_id=user, organization_id=org, role=role,
                                 created_at=NOW, token_lock=0)
    secrets = {}
    for n, (name, creator, scopes, permissions, _) in enumerate(OLD_TOKENS):
        secrets[name] = generate_secret()
        token = _insert(connection, "api_tokens", public_id=f"tok_{n:016x}", organization_id=org,
                        created_by_membership_id=creators[creator], type="personal", name=name,
                        description="", permissions=permissions, scopes=scopes, ip_allowlist=[],
                        token_hash=hash_secret(secrets[name]), display_suffix=secrets[name][-4:],
                        created_at=NOW, updated_at=NOW, expires_at=NOW + timedelta(days=3650),
                        is_active=True, usage_count=0, documents_processed=0, is_canary=False,
                        canary_trips=0)
        # Rows that point at the token survive the change of its table.
        _insert(connection, "documents", organization_id=org, title=f"by {name}", body="", status="draft",
                created_by_token_id=token, created_at=NOW, updated_at=NOW)
    return secrets


def _old_rule(role: str, scopes: list[str], permissions: list[str], scope: str, method: str) -> bool:
    """What a token of the older shape was allowed: scope and permission listed, both in the role."""
    from shared.identity import roles

    permission = METHOD_PERMISSION[method]
    return (scope in scopes and scope in roles.role_scopes(role)
            and permission in permissions and permission in roles.role_permissions(role))


def test_upgrade_gives_every_old_token_exactly_the_same_rights(old_database, app_with):
    from shared.core.extensions import db
    from shared.identity.roles import KNOWN_SCOPES
    from shared.models import ApiToken
    from shared.tokens import rights

    app = app_with(SQLALCHEMY_DATABASE_URI=old_database)
    with app.app_context():
        upgrade(directory=MIGRATIONS, revision="0006")
        with db.engine.begin() as connection:
            secrets = _write_old_tokens(connection)
        upgrade(directory=MIGRATIONS)

        tokens = {token.name: token for token in db.session.scalars(sa.select(ApiToken))}
        for name, creator, scopes, permissions, expected in OLD_TOKENS:
            token = tokens[name]
            assert token.rights == expected, name
            assert set(rights.scopes_of(token.rights)) == set(scopes)
            assert set(rights.permissions_of(token.rights)) == set(permissions)
            for scope in KNOWN_SCOPES:
                for method in METHODS:
                    assert rights.decide(token, scope, method).allowed == _old_rule(
                        creator, scopes, permissions, scope, method), (name, scope, method)
        columns = {column["name"] for column in sa.inspect(db.engine).get_columns("api_tokens")}
        assert "rights" in columns and not {"scopes", "permissions"} & columns
        db.session.remove()

    client = app.test_client()
    ci = client.get("/api/v1/documents", headers=bearer(secrets["ci"]))
    assert ci.status_code == 200
    me = client.get("/api/v1/me", headers=bearer(secrets["ci"])).get_json()["token"]
    assert me["rights"] == {"documents": ["read", "write"], "projects": ["read", "write"]}
    assert (me["scopes"], me["permissions"]) == (["documents", "projects"], ["read", "write"])
    refused = client.get("/api/v1/templates", headers=bearer(secrets["ci"]))
    assert refused.status_code == 403 and refused.get_json()["error"]["required"] == {
        "scope": "templates", "permission": "read"}


def _json(value):
    """A JSON column read with plain SQL: text on SQLite, decoded already by psycopg."""
    return json.loads(value) if isinstance(value, str) else value


def test_downgrade_never_widens_a_token(old_database, app_with):
    from shared.core.extensions import db

    app = app_with(SQLALCHEMY_DATABASE_URI=old_database)
    with app.app_context():
        upgrade(directory=MIGRATIONS)
        db.engine.dispose()
    from tests.conftest import Factory

    factory = Factory(app)
    owner = factory.member(factory.org(), "owner")
    per_scope = factory.token(owner, name="per scope",
                              rights={"documents": ["read", "write"], "projects": ["read"]})
    square = factory.token(owner, name="square", scopes=["documents", "templates"],
                           permissions=["read", "delete"])
    with app.app_context():
        downgrade(directory=MIGRATIONS, revision="0006")
        query = sa.text("SELECT public_id, scopes, permissions FROM api_tokens")
        rows = {row.public_id: (_json(row.scopes), _json(row.permissions))
                for row in db.session.execute(query)}
        db.session.remove()
        db.engine.dispose()
    # Lists can only say a cross product: only what it holds on every scope survives.
    assert rows[per_scope.id] == (["documents", "projects"], ["read"])
    # A cross product comes back whole.
    assert rows[square.id] == (["documents", "templates"], ["read", "delete"])
