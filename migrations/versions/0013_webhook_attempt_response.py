"""A webhook attempt keeps the first kilobyte of the receiver's answer, for the delivery log

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-26 16:20:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    # A plain ADD COLUMN (no reference), which SQLite and PostgreSQL both take in place.
    op.add_column('webhook_attempts', sa.Column('response_excerpt', sa.Text(), nullable=True))


def downgrade():
    op.drop_column('webhook_attempts', 'response_excerpt')
