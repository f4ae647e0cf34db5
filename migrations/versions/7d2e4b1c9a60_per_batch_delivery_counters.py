"""Per-batch delivery counters kept by triggers, "send again" by batch, progress indexes

Revision ID: 7d2e4b1c9a60
Revises: c4e1f2a9b7d3
Create Date: 2026-12-02 08:00:00.000000

"""
from alembic import op
import sqlalchemy as sa

from service import batch_counts


# revision identifiers, used by Alembic.
revision = '7d2e4b1c9a60'
down_revision = 'c4e1f2a9b7d3'
branch_labels = None
depends_on = None

COUNTERS = ('total_count', 'sent_count', 'failed_count', 'skipped_count', 'cancelled_count')


def upgrade():
    # Plain ADD COLUMN (no batch mode): SQLite adds defaulted columns in place.
    for name in COUNTERS:
        op.add_column(
            'delivery_batch', sa.Column(name, sa.Integer(), server_default='0', nullable=False)
        )
    op.add_column(
        'delivery_batch',
        sa.Column('resend', sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    connection = op.get_bind()
    batch_counts.recount(connection)
    batch_counts.install(connection)
    op.create_index('ix_delivery_issue_sent_at', 'delivery', ['issue_id', 'sent_at'])
    op.create_index(
        'ix_consent_event_list_occurred', 'consent_event', ['list_id', 'occurred_at']
    )


def downgrade():
    op.drop_index('ix_consent_event_list_occurred', table_name='consent_event')
    op.drop_index('ix_delivery_issue_sent_at', table_name='delivery')
    batch_counts.uninstall(op.get_bind())
    with op.batch_alter_table('delivery_batch', schema=None) as batch_op:
        batch_op.drop_column('resend')
        for name in reversed(COUNTERS):
            batch_op.drop_column(name)
