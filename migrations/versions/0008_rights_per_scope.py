"""Rights per scope: api_tokens.rights replaces the scopes and permissions lists

Every existing token keeps exactly what it could do: its scopes × permissions become the same
pairs, {scope: permissions} for each of its scopes. The old columns are dropped, so nothing can
go on deciding from a cross product that a per-scope token no longer means.

Revision ID: 0008
Revises: 0006
Create Date: 2026-11-25 09:00:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0006'
branch_labels = None
depends_on = None

# The order tokens show their labels in (shared.identity.roles), frozen here: a migration must
# not change meaning when the application's lists change later.
KNOWN_SCOPES = ("documents", "projects", "templates", "analytics", "billing", "tokens")
KNOWN_PERMISSIONS = ("read", "write", "delete")


def _ordered(labels, known):
    given = list(dict.fromkeys(labels))
    return [label for label in known if label in given] + [label for label in given if label not in known]


def cross_product(scopes, permissions):
    permissions = _ordered(permissions or [], KNOWN_PERMISSIONS)
    return {scope: list(permissions) for scope in _ordered(scopes or [], KNOWN_SCOPES)}


def _tokens(*columns):
    return sa.table('api_tokens', sa.column('id', sa.Integer()), *columns)


def upgrade():
    # A row written without rights (by code older than this revision) grants nothing.
    op.add_column('api_tokens', sa.Column('rights', sa.JSON(), nullable=False,
                                          server_default=sa.text("'{}'")))
    tokens = _tokens(sa.column('scopes', sa.JSON()), sa.column('permissions', sa.JSON()),
                     sa.column('rights', sa.JSON()))
    connection = op.get_bind()
    rows = connection.execute(sa.select(tokens.c.id, tokens.c.scopes, tokens.c.permissions)).all()
    for token_id, scopes, permissions in rows:
        connection.execute(tokens.update().where(tokens.c.id == token_id)
                           .values(rights=cross_product(scopes, permissions)))
    op.drop_column('api_tokens', 'scopes')
    op.drop_column('api_tokens', 'permissions')


def downgrade():
    # Lists can only say a cross product. Never widen on the way back: `scopes` are the keys and
    # `permissions` only those held on every scope (a token whose rights differ per scope loses
    # some; none gains any).
    op.add_column('api_tokens', sa.Column('permissions', sa.JSON(), nullable=False,
                                          server_default=sa.text("'[]'")))
    op.add_column('api_tokens', sa.Column('scopes', sa.JSON(), nullable=False,
                                          server_default=sa.text("'[]'")))
    tokens = _tokens(sa.column('scopes', sa.JSON()), sa.column('permissions', sa.JSON()),
                     sa.column('rights', sa.JSON()))
    connection = op.get_bind()
    for token_id, rights in connection.execute(sa.select(tokens.c.id, tokens.c.rights)).all():
        held = [set(permissions) for permissions in (rights or {}).values()]
        common = set.intersection(*held) if held else set()
        first = next(iter((rights or {}).values()), [])
        connection.execute(tokens.update().where(tokens.c.id == token_id).values(
            scopes=list(rights or {}), permissions=[label for label in first if label in common]))
    op.drop_column('api_tokens', 'rights')
