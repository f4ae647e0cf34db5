"""meeting.follows_id: a series split off another links to it (RELATED-TO, the admin's links)

Revision ID: c9e4a7d2b6f1
Revises: b7e3a1c9d5f2
Create Date: 2026-11-30 19:20:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c9e4a7d2b6f1'
down_revision = 'b7e3a1c9d5f2'
branch_labels = None
depends_on = None


def upgrade():
    # Series split before this have no link: nothing recorded which series followed which.
    with op.batch_alter_table('meeting', schema=None) as batch_op:
        batch_op.add_column(sa.Column('follows_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f('fk_meeting_follows_id_meeting'), 'meeting', ['follows_id'], ['id'],
            ondelete='SET NULL',
        )


def downgrade():
    with op.batch_alter_table('meeting', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_meeting_follows_id_meeting'), type_='foreignkey')
        batch_op.drop_column('follows_id')
