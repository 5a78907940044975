"""team features: analytics, budgets, activity and notifications, motivations, pairing

Revision ID: 0005_team_features
Revises: 0004_step_claims
Create Date: 2026-12-01 19:59:26.590064

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = '0005_team_features'
down_revision = '0004_step_claims'
branch_labels = None
depends_on = None


# One section per domain, so each can be adjusted on its own while this revision is unreleased.


def upgrade():
    _upgrade_analytics()
    _upgrade_budgets()
    _upgrade_activity()
    _upgrade_motivations()
    _upgrade_engine()


def downgrade():
    _downgrade_engine()
    _downgrade_motivations()
    _downgrade_activity()
    _downgrade_budgets()
    _downgrade_analytics()


def _upgrade_analytics():
    """LLM requests and the price table (app/models/analytics.py)"""
    op.create_table('llm_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=True),
    sa.Column('bead_id', sa.Integer(), nullable=True),
    sa.Column('agent_id', sa.Integer(), nullable=True),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('seq', sa.Integer(), nullable=True),
    sa.Column('persona', sa.String(length=64), nullable=True),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('provider', sa.String(length=200), nullable=True),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('prompt_tokens', sa.Integer(), nullable=False),
    sa.Column('completion_tokens', sa.Integer(), nullable=False),
    sa.Column('latency_ms', sa.Float(), nullable=False),
    sa.Column('cost_usd', sa.Float(), nullable=False),
    sa.Column('estimated', sa.Boolean(), nullable=False),
    sa.Column('priced', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_llm_requests'))
    )
    with op.batch_alter_table('llm_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_llm_requests_bead_id'), ['bead_id'], unique=False)
        batch_op.create_index('ix_llm_requests_model_ts', ['model', 'ts'], unique=False)
        batch_op.create_index('ix_llm_requests_project_ts', ['project_id', 'ts'], unique=False)
        batch_op.create_index(batch_op.f('ix_llm_requests_ts'), ['ts'], unique=False)
    op.create_table('model_prices',
    sa.Column('pattern', sa.String(length=200), nullable=False),
    sa.Column('prompt_usd_per_mtok', sa.Float(), nullable=False),
    sa.Column('completion_usd_per_mtok', sa.Float(), nullable=False),
    sa.Column('updated_by', sa.String(length=64), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('pattern', name=op.f('pk_model_prices'))
    )


def _downgrade_analytics():
    op.drop_table('model_prices')
    with op.batch_alter_table('llm_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_llm_requests_ts'))
        batch_op.drop_index('ix_llm_requests_project_ts')
        batch_op.drop_index('ix_llm_requests_model_ts')
        batch_op.drop_index(batch_op.f('ix_llm_requests_bead_id'))
    op.drop_table('llm_requests')


def _upgrade_budgets():
    """budgets and reservations (app/models/budgets.py)"""
    op.create_table('budgets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('scope', sa.String(length=40), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('bead_id', sa.Integer(), nullable=True),
    sa.Column('daily_usd', sa.Float(), nullable=True),
    sa.Column('total_usd', sa.Float(), nullable=True),
    sa.Column('daily_tokens', sa.BigInteger(), nullable=True),
    sa.Column('total_tokens', sa.BigInteger(), nullable=True),
    sa.Column('spent_usd', sa.Float(), nullable=False),
    sa.Column('spent_tokens', sa.BigInteger(), nullable=False),
    sa.Column('day', sa.String(length=10), nullable=False),
    sa.Column('day_usd', sa.Float(), nullable=False),
    sa.Column('day_tokens', sa.BigInteger(), nullable=False),
    sa.Column('reserved_usd', sa.Float(), nullable=False),
    sa.Column('reserved_tokens', sa.BigInteger(), nullable=False),
    sa.Column('exhausted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_by', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['bead_id'], ['beads.id'], name=op.f('fk_budgets_bead_id_beads'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_budgets_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_budgets')),
    sa.UniqueConstraint('scope', name=op.f('uq_budgets_scope'))
    )
    with op.batch_alter_table('budgets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_budgets_bead_id'), ['bead_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_budgets_project_id'), ['project_id'], unique=False)
    op.create_table('budget_reservations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('budget_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=100), nullable=False),
    sa.Column('tokens', sa.BigInteger(), nullable=False),
    sa.Column('usd', sa.Float(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['budget_id'], ['budgets.id'], name=op.f('fk_budget_reservations_budget_id_budgets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_budget_reservations')),
    sa.UniqueConstraint('budget_id', 'key', name='uq_budget_reservations_budget_key')
    )
    with op.batch_alter_table('budget_reservations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_budget_reservations_created_at'), ['created_at'], unique=False)


def _downgrade_budgets():
    with op.batch_alter_table('budget_reservations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_budget_reservations_created_at'))
    op.drop_table('budget_reservations')
    with op.batch_alter_table('budgets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_budgets_project_id'))
        batch_op.drop_index(batch_op.f('ix_budgets_bead_id'))
    op.drop_table('budgets')


def _upgrade_activity():
    """activity feed, notifications, preferences, webhook deliveries (app/models/activity.py)"""
    op.create_table('activity',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('type', sa.String(length=40), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=True),
    sa.Column('bead_id', sa.Integer(), nullable=True),
    sa.Column('agent_id', sa.Integer(), nullable=True),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('data', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.String(length=40), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_activity')),
    sa.UniqueConstraint('event_id', name=op.f('uq_activity_event_id'))
    )
    with op.batch_alter_table('activity', schema=None) as batch_op:
        batch_op.create_index('ix_activity_aggregate', ['actor', 'type', 'project_id', 'last_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_activity_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_activity_project_id'), ['project_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_activity_type'), ['type'], unique=False)
    op.create_table('notification_preferences',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('types', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('min_priority', sa.Integer(), nullable=False),
    sa.Column('quiet_start', sa.String(length=5), nullable=True),
    sa.Column('quiet_end', sa.String(length=5), nullable=True),
    sa.Column('webhook_url', sa.String(length=1000), nullable=True),
    sa.Column('webhook_secret', sa.Text(), nullable=True),
    sa.Column('webhook_enabled', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_notification_preferences_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_notification_preferences'))
    )
    op.create_table('notifications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('type', sa.String(length=40), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('link', sa.String(length=300), nullable=True),
    sa.Column('priority', sa.Integer(), nullable=True),
    sa.Column('project_id', sa.Integer(), nullable=True),
    sa.Column('bead_id', sa.Integer(), nullable=True),
    sa.Column('dedup_key', sa.String(length=120), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('read_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_notifications_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notifications')),
    sa.UniqueConstraint('dedup_key', name=op.f('uq_notifications_dedup_key'))
    )
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_index('ix_notifications_user_unread', ['user_id', 'read_at', 'id'], unique=False)
    op.create_table('webhook_deliveries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('notification_id', sa.Integer(), nullable=False),
    sa.Column('url', sa.String(length=1000), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_status', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['notification_id'], ['notifications.id'], name=op.f('fk_webhook_deliveries_notification_id_notifications'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries'))
    )
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_deliveries_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_webhook_deliveries_notification_id'), ['notification_id'], unique=False)


def _downgrade_activity():
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_deliveries_notification_id'))
        batch_op.drop_index('ix_webhook_deliveries_due')
    op.drop_table('webhook_deliveries')
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index('ix_notifications_user_unread')
    op.drop_table('notifications')
    op.drop_table('notification_preferences')
    with op.batch_alter_table('activity', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_activity_type'))
        batch_op.drop_index(batch_op.f('ix_activity_project_id'))
        batch_op.drop_index(batch_op.f('ix_activity_created_at'))
        batch_op.drop_index('ix_activity_aggregate')
    op.drop_table('activity')


def _upgrade_motivations():
    """motivations and their firings (app/models/motivations.py)"""
    op.create_table('motivations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('event', sa.String(length=60), nullable=True),
    sa.Column('interval_s', sa.Integer(), nullable=True),
    sa.Column('cron', sa.String(length=100), nullable=True),
    sa.Column('idle_minutes', sa.Integer(), nullable=True),
    sa.Column('threshold', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('cooldown_s', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=True),
    sa.Column('persona', sa.String(length=64), nullable=True),
    sa.Column('bead_template', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('wake_agent', sa.Boolean(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('builtin', sa.Boolean(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('enabled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('scan_cursor', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_fired_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('fire_count', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('interval','calendar','event','idle','threshold')", name=op.f('ck_motivations_kind_valid')),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_motivations_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_motivations')),
    sa.UniqueConstraint('name', name=op.f('uq_motivations_name'))
    )
    with op.batch_alter_table('motivations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_motivations_project_id'), ['project_id'], unique=False)
    op.create_table('motivation_firings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('motivation_id', sa.Integer(), nullable=False),
    sa.Column('dedup_key', sa.String(length=120), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=True),
    sa.Column('trigger', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('bead_id', sa.Integer(), nullable=True),
    sa.Column('agent_id', sa.Integer(), nullable=True),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('fired_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['motivation_id'], ['motivations.id'], name=op.f('fk_motivation_firings_motivation_id_motivations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_motivation_firings')),
    sa.UniqueConstraint('dedup_key', name=op.f('uq_motivation_firings_dedup_key'))
    )
    with op.batch_alter_table('motivation_firings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_motivation_firings_fired_at'), ['fired_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_motivation_firings_motivation_id'), ['motivation_id'], unique=False)


def _downgrade_motivations():
    with op.batch_alter_table('motivation_firings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_motivation_firings_motivation_id'))
        batch_op.drop_index(batch_op.f('ix_motivation_firings_fired_at'))
    op.drop_table('motivation_firings')
    with op.batch_alter_table('motivations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_motivations_project_id'))
    op.drop_table('motivations')


def _upgrade_engine():
    """bead owners, pairing on runs, human turns in steps"""
    with op.batch_alter_table('beads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_beads_owner_id'), ['owner_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_beads_owner_id_users'), 'users', ['owner_id'], ['id'], ondelete='SET NULL')
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('paused_by', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('paused_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('steps', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=10), nullable=False, server_default='loop'))
        batch_op.add_column(sa.Column('author', sa.String(length=64), nullable=True))


def _downgrade_engine():
    with op.batch_alter_table('steps', schema=None) as batch_op:
        batch_op.drop_column('author')
        batch_op.drop_column('kind')
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('paused_at')
        batch_op.drop_column('paused_by')
    with op.batch_alter_table('beads', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_beads_owner_id_users'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_beads_owner_id'))
        batch_op.drop_column('owner_id')
