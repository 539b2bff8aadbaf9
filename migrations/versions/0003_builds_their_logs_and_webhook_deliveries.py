"""Builds and deployments, build logs, webhook deliveries, stored secrets, cluster credentials, team resource defaults

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 19:47:00.200296

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    # Clusters get their credentials (kept encrypted in stored_secrets), CA and last check; teams their
    # namespace quota and container defaults. Server defaults fill the rows that exist.
    with op.batch_alter_table('clusters', schema=None) as batch_op:
        batch_op.add_column(sa.Column('auth_kind', sa.String(length=20), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('ca_pem', sa.Text(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('verify_tls', sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column('checked_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('check_result', sa.JSON(), nullable=False, server_default='{}'))
    with op.batch_alter_table('teams', schema=None) as batch_op:
        batch_op.add_column(sa.Column('resource_defaults', sa.JSON(), nullable=False, server_default='{}'))

    op.create_table('stored_secrets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('team_id', sa.Integer(), nullable=True),
    sa.Column('username', sa.String(length=200), nullable=False),
    sa.Column('ciphertext', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_stored_secrets_team_id_teams'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stored_secrets')),
    sa.UniqueConstraint('name', name=op.f('uq_stored_secrets_name'))
    )
    with op.batch_alter_table('stored_secrets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stored_secrets_team_id'), ['team_id'], unique=False)

    
    op.create_table('hook_deliveries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=40), nullable=False),
    sa.Column('event_id', sa.String(length=100), nullable=False),
    sa.Column('outcome', sa.String(length=200), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_hook_deliveries')),
    sa.UniqueConstraint('source', 'event_id', name=op.f('uq_hook_deliveries_source_event_id'))
    )
    with op.batch_alter_table('hook_deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_hook_deliveries_received_at'), ['received_at'], unique=False)

    op.create_table('builds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('application_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('state', sa.Enum('queued', 'triggered', 'running', 'succeeded', 'failed', 'aborted', 'error', name='build_state', native_enum=False, length=20), nullable=False),
    sa.Column('commit_sha', sa.String(length=64), nullable=False),
    sa.Column('commit_message', sa.Text(), nullable=False),
    sa.Column('commit_author', sa.String(length=200), nullable=False),
    sa.Column('commit_url', sa.String(length=500), nullable=False),
    sa.Column('branch', sa.String(length=200), nullable=False),
    sa.Column('pushed_by', sa.String(length=200), nullable=False),
    sa.Column('ci_system', sa.String(length=40), nullable=False),
    sa.Column('ci_queue_id', sa.String(length=80), nullable=False),
    sa.Column('ci_number', sa.Integer(), nullable=True),
    sa.Column('ci_url', sa.String(length=500), nullable=False),
    sa.Column('log_size', sa.Integer(), nullable=False),
    sa.Column('ci_console_offset', sa.Integer(), nullable=False),
    sa.Column('image_repository', sa.String(length=300), nullable=False),
    sa.Column('image_tag', sa.String(length=128), nullable=False),
    sa.Column('image_digest', sa.String(length=100), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['application_id'], ['applications.id'], name=op.f('fk_builds_application_id_applications'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_builds')),
    sa.UniqueConstraint('application_id', 'number', name=op.f('uq_builds_application_id_number'))
    )
    with op.batch_alter_table('builds', schema=None) as batch_op:
        batch_op.create_index('ix_builds_application_id_created_at', ['application_id', 'created_at'], unique=False)

    # The webhook finds the application of a repository by the system's id for it.
    with op.batch_alter_table('application_resources', schema=None) as batch_op:
        batch_op.create_index('ix_application_resources_system_external_id', ['system', 'external_id'], unique=False)

    op.create_table('build_log_chunks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('build_id', sa.Integer(), nullable=False),
    sa.Column('offset', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['build_id'], ['builds.id'], name=op.f('fk_build_log_chunks_build_id_builds'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_build_log_chunks')),
    sa.UniqueConstraint('build_id', 'offset', name=op.f('uq_build_log_chunks_build_id_offset'))
    )

    op.create_table('deployments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('application_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('environment', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('state', sa.Enum('committed', 'synced', 'healthy', 'degraded', 'failed', 'timed_out', 'superseded', name='deployment_state', native_enum=False, length=20), nullable=False),
    sa.Column('build_id', sa.Integer(), nullable=True),
    sa.Column('image_repository', sa.String(length=300), nullable=False),
    sa.Column('image_tag', sa.String(length=128), nullable=False),
    sa.Column('image_digest', sa.String(length=100), nullable=False),
    sa.Column('source_commit', sa.String(length=64), nullable=False),
    sa.Column('deploy_commit', sa.String(length=64), nullable=False),
    sa.Column('requested_by', sa.String(length=200), nullable=False),
    sa.Column('sync_status', sa.String(length=40), nullable=False),
    sa.Column('health_status', sa.String(length=40), nullable=False),
    sa.Column('pods', sa.String(length=40), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('synced_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('healthy_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['application_id'], ['applications.id'], name=op.f('fk_deployments_application_id_applications'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['build_id'], ['builds.id'], name=op.f('fk_deployments_build_id_builds'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deployments')),
    sa.UniqueConstraint('application_id', 'number', name=op.f('uq_deployments_application_id_number'))
    )
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.create_index('ix_deployments_application_id_environment', ['application_id', 'environment', 'number'], unique=False)


def downgrade():
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.drop_index('ix_deployments_application_id_environment')
    op.drop_table('deployments')
    with op.batch_alter_table('teams', schema=None) as batch_op:
        batch_op.drop_column('resource_defaults')
    with op.batch_alter_table('clusters', schema=None) as batch_op:
        for column in ('check_result', 'checked_at', 'verify_tls', 'ca_pem', 'auth_kind'):
            batch_op.drop_column(column)
    op.drop_table('stored_secrets')
    
    op.drop_table('build_log_chunks')
    with op.batch_alter_table('application_resources', schema=None) as batch_op:
        batch_op.drop_index('ix_application_resources_system_external_id')
    with op.batch_alter_table('builds', schema=None) as batch_op:
        batch_op.drop_index('ix_builds_application_id_created_at')

    op.drop_table('builds')
    with op.batch_alter_table('hook_deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_hook_deliveries_received_at'))

    op.drop_table('hook_deliveries')
    
