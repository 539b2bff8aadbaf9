"""Kiosk tokens: read-only links to team boards for wall screens

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 09:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    # Only the token's SHA-256 is stored; its first characters are kept to tell tokens apart.
    op.create_table('kiosk_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=60), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=12), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_kiosk_tokens_created_by_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_kiosk_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_kiosk_tokens_token_hash'))
    )
    op.create_table('kiosk_token_teams',
    sa.Column('kiosk_token_id', sa.Integer(), nullable=False),
    sa.Column('team_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['kiosk_token_id'], ['kiosk_tokens.id'], name=op.f('fk_kiosk_token_teams_kiosk_token_id_kiosk_tokens'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_kiosk_token_teams_team_id_teams'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('kiosk_token_id', 'team_id', name=op.f('pk_kiosk_token_teams'))
    )


def downgrade():
    op.drop_table('kiosk_token_teams')
    op.drop_table('kiosk_tokens')
