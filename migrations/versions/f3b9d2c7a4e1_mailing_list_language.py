"""mailing_list.language: cs or en, the language a list's issues are written in

Revision ID: f3b9d2c7a4e1
Revises: e7d4c2b1a9f0
Create Date: 2026-11-30 13:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f3b9d2c7a4e1'
down_revision = 'e7d4c2b1a9f0'
branch_labels = None
depends_on = None


def upgrade():
    # Every list so far is written in Czech.
    with op.batch_alter_table('mailing_list', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('language', sa.String(length=8), server_default='cs', nullable=False)
        )


def downgrade():
    with op.batch_alter_table('mailing_list', schema=None) as batch_op:
        batch_op.drop_column('language')
