"""Meetings: single dates of a series moved, cancelled, reminded and answered alone

Revision ID: f2b6c8d1a4e3
Revises: f3b9d2c7a4e1
Create Date: 2026-12-02 08:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f2b6c8d1a4e3'
down_revision = 'f3b9d2c7a4e1'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'meeting_occurrence',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('meeting_id', sa.Integer(), nullable=False),
        sa.Column('recurrence_id', sa.DateTime(), nullable=False),
        sa.Column('start', sa.DateTime(), nullable=False),
        sa.Column('end', sa.DateTime(), nullable=False),
        sa.Column('location', sa.String(length=300), nullable=False),
        sa.Column('online_url', sa.String(length=500), nullable=False),
        sa.Column('agenda', sa.Text(), nullable=False),
        sa.Column('sequence', sa.Integer(), nullable=False),
        sa.Column('changed_at', sa.DateTime(), nullable=True),
        sa.Column('cancelled_at', sa.DateTime(), nullable=True),
        sa.Column('reminder_sent_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ['meeting_id'], ['meeting.id'],
            name=op.f('fk_meeting_occurrence_meeting_id_meeting'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_meeting_occurrence')),
        sa.UniqueConstraint(
            'meeting_id', 'recurrence_id',
            name=op.f('uq_meeting_occurrence_meeting_id_recurrence_id'),
        ),
    )
    with op.batch_alter_table('issue', schema=None) as batch_op:
        batch_op.add_column(sa.Column('meeting_occurrence', sa.DateTime(), nullable=True))
    with op.batch_alter_table('meeting_response', schema=None) as batch_op:
        batch_op.add_column(sa.Column('occurrence', sa.DateTime(), nullable=True))
        batch_op.drop_constraint(
            'uq_meeting_response_meeting_id_subscriber_id', type_='unique'
        )
    # NULLs are distinct in a unique constraint: one partial index for answers
    # to the whole series, one for answers to a single date.
    op.create_index(
        'uq_meeting_response_series', 'meeting_response', ['meeting_id', 'subscriber_id'],
        unique=True,
        sqlite_where=sa.text('occurrence IS NULL'),
        postgresql_where=sa.text('occurrence IS NULL'),
    )
    op.create_index(
        'uq_meeting_response_occurrence', 'meeting_response',
        ['meeting_id', 'subscriber_id', 'occurrence'],
        unique=True,
        sqlite_where=sa.text('occurrence IS NOT NULL'),
        postgresql_where=sa.text('occurrence IS NOT NULL'),
    )


def downgrade():
    op.drop_index('uq_meeting_response_occurrence', table_name='meeting_response')
    op.drop_index('uq_meeting_response_series', table_name='meeting_response')
    op.execute('DELETE FROM meeting_response WHERE occurrence IS NOT NULL')
    with op.batch_alter_table('meeting_response', schema=None) as batch_op:
        batch_op.create_unique_constraint(
            'uq_meeting_response_meeting_id_subscriber_id', ['meeting_id', 'subscriber_id']
        )
        batch_op.drop_column('occurrence')
    with op.batch_alter_table('issue', schema=None) as batch_op:
        batch_op.drop_column('meeting_occurrence')
    op.drop_table('meeting_occurrence')
