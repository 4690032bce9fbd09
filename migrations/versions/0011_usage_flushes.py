"""Usage tallies applied in batches: how far each source's batches reached the database

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25 09:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('usage_flushes',
    sa.Column('source', sa.String(length=120), nullable=False),
    sa.Column('last_batch', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('source')
    )


def downgrade():
    op.drop_table('usage_flushes')
