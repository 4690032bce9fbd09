"""Invitations: people join an organization by accepting a single-use link

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-26 15:30:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('invitations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('partner_id', sa.Integer(), nullable=True),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('invited_by_user_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("(partner_id IS NULL) = (role NOT IN ('partner_admin', 'partner_member'))", name='ck_invitation_partner_role'),
    sa.CheckConstraint("accepted_at IS NULL OR revoked_at IS NULL", name='ck_invitation_outcome'),
    sa.CheckConstraint("role IN ('owner', 'admin', 'security_manager', 'maintainer', 'editor', 'viewer', 'partner_admin', 'partner_member')", name='ck_invitation_role'),
    sa.ForeignKeyConstraint(['invited_by_user_id'], ['users.id'], ),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], ),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    with op.batch_alter_table('invitations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_invitations_organization_id'), ['organization_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_invitations_partner_id'), ['partner_id'], unique=False)
        batch_op.create_index('uq_invitation_pending', ['organization_id', 'email'], unique=True, sqlite_where=sa.text('accepted_at IS NULL AND revoked_at IS NULL'), postgresql_where=sa.text('accepted_at IS NULL AND revoked_at IS NULL'))


def downgrade():
    with op.batch_alter_table('invitations', schema=None) as batch_op:
        batch_op.drop_index('uq_invitation_pending', sqlite_where=sa.text('accepted_at IS NULL AND revoked_at IS NULL'), postgresql_where=sa.text('accepted_at IS NULL AND revoked_at IS NULL'))
        batch_op.drop_index(batch_op.f('ix_invitations_partner_id'))
        batch_op.drop_index(batch_op.f('ix_invitations_organization_id'))

    op.drop_table('invitations')
