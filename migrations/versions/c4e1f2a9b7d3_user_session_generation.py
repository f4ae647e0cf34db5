"""user_account.session_generation: signing out ends every session of the account

Revision ID: c4e1f2a9b7d3
Revises: 5c1f0e7a2b9d
Create Date: 2026-11-30 05:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c4e1f2a9b7d3'
down_revision = '5c1f0e7a2b9d'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('user_account', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('session_generation', sa.Integer(), server_default='0', nullable=False)
        )


def downgrade():
    with op.batch_alter_table('user_account', schema=None) as batch_op:
        batch_op.drop_column('session_generation')
