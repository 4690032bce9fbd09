"""A webhook endpoint's delivery lease: at most one delivery in flight per endpoint

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25 09:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('webhook_endpoints', schema=None) as batch_op:
        batch_op.add_column(sa.Column('delivering_until', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('webhook_endpoints', schema=None) as batch_op:
        batch_op.drop_column('delivering_until')
