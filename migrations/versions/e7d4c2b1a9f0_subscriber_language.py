"""subscriber.language: cs or en, the language of their mails and personal pages

Revision ID: e7d4c2b1a9f0
Revises: f2a9c4e7b310
Create Date: 2026-11-30 08:20:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e7d4c2b1a9f0'
down_revision = 'f2a9c4e7b310'
branch_labels = None
depends_on = None


def upgrade():
    # Everyone signed up so far did so on the Czech pages.
    with op.batch_alter_table('subscriber', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('language', sa.String(length=8), server_default='cs', nullable=False)
        )


def downgrade():
    with op.batch_alter_table('subscriber', schema=None) as batch_op:
        batch_op.drop_column('language')
