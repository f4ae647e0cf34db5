"""issue.sending_resumed_at: the sending rate counts from the last start or resume

Revision ID: b7e3a1c9d5f2
Revises: f2b6c8d1a4e3
Create Date: 2026-11-30 16:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b7e3a1c9d5f2'
down_revision = 'f2b6c8d1a4e3'
branch_labels = None
depends_on = None


def upgrade():
    # Issues from before have none: their rate reads the last minute, as it did.
    with op.batch_alter_table('issue', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sending_resumed_at', sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('issue', schema=None) as batch_op:
        batch_op.drop_column('sending_resumed_at')
