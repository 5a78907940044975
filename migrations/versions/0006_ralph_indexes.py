"""Ralph's tick at 100k beads: indexes for the two queries that scanned every open or blocked bead

block_error_loops filters `status = 'open' AND dispatch_count >= N` and recover_provider_blocks
`status = 'blocked' AND block_kind IN (...) AND updated_at <= t`; through the plain status index each
read every open (15 %) or blocked (5 %) bead's row. With these they read only their matches.

Revision ID: 0006_ralph_indexes
Revises: 0005_team_features
Create Date: 2026-12-02 15:20:00.000000

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = '0006_ralph_indexes'
down_revision = '0005_team_features'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('beads', schema=None) as batch_op:
        batch_op.create_index('ix_beads_dispatch_count', ['status', 'dispatch_count'], unique=False)
        batch_op.create_index('ix_beads_block_kind', ['status', 'block_kind', 'updated_at'], unique=False)


def downgrade():
    with op.batch_alter_table('beads', schema=None) as batch_op:
        batch_op.drop_index('ix_beads_block_kind')
        batch_op.drop_index('ix_beads_dispatch_count')
