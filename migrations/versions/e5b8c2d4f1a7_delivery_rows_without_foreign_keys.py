"""Delivery rows without foreign keys (deletes followed by triggers), partial indexes

A large fan-out writes a delivery row per recipient; PostgreSQL checked each
row's three foreign keys one by one, and kept two indexes on every row that
only sent or failed rows need. See service/models.py (Delivery) and
service/delivery_cascade.py.

Revision ID: e5b8c2d4f1a7
Revises: e15a7c0d4b21
Create Date: 2026-12-09 08:00:00.000000

"""
from alembic import op
import sqlalchemy as sa

from service import batch_counts, delivery_cascade


# revision identifiers, used by Alembic.
revision = 'e5b8c2d4f1a7'
down_revision = 'e15a7c0d4b21'
branch_labels = None
depends_on = None

FOREIGN_KEYS = (
    ('fk_delivery_issue_id_issue', 'issue_id', 'issue'),
    ('fk_delivery_batch_id_delivery_batch', 'batch_id', 'delivery_batch'),
    ('fk_delivery_subscriber_id_subscriber', 'subscriber_id', 'subscriber'),
)
SENT = sa.text('sent_at IS NOT NULL')
FAILED = sa.text("status = 'failed'")


def _rebuilding(connection):
    """SQLite rebuilds the table in batch mode, and its triggers go with the old one."""
    return connection.dialect.name == 'sqlite'


def upgrade():
    connection = op.get_bind()
    if _rebuilding(connection):
        batch_counts.uninstall(connection)
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        for name, _, _ in FOREIGN_KEYS:
            batch_op.drop_constraint(name, type_='foreignkey')
        batch_op.drop_index('ix_delivery_issue_status')
        batch_op.drop_index('ix_delivery_issue_sent_at')
    if _rebuilding(connection):
        batch_counts.install(connection)
    op.create_index(
        'ix_delivery_issue_sent_at', 'delivery', ['issue_id', 'sent_at'],
        postgresql_where=SENT, sqlite_where=SENT,
    )
    op.create_index(
        'ix_delivery_issue_failed', 'delivery', ['issue_id'],
        postgresql_where=FAILED, sqlite_where=FAILED,
    )
    delivery_cascade.install(connection)


def downgrade():
    connection = op.get_bind()
    delivery_cascade.uninstall(connection)
    op.drop_index('ix_delivery_issue_failed', table_name='delivery')
    op.drop_index('ix_delivery_issue_sent_at', table_name='delivery')
    if _rebuilding(connection):
        batch_counts.uninstall(connection)
    # Rows whose parent went while there were no foreign keys could not be kept under them.
    for _, column, parent in FOREIGN_KEYS:
        connection.exec_driver_sql(
            f'DELETE FROM delivery WHERE {column} NOT IN (SELECT id FROM {parent})'
        )
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        for name, column, parent in FOREIGN_KEYS:
            batch_op.create_foreign_key(name, parent, [column], ['id'], ondelete='CASCADE')
        batch_op.create_index('ix_delivery_issue_status', ['issue_id', 'status'])
        batch_op.create_index('ix_delivery_issue_sent_at', ['issue_id', 'sent_at'])
    if _rebuilding(connection):
        batch_counts.install(connection)
