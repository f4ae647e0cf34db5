"""Meetings: titles, recurrence, members' answers (RSVP, calendar replies) and attendance

Revision ID: e15a7c0d4b21
Revises: e13b0c0a1f5e
Create Date: 2026-11-30 08:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e15a7c0d4b21'
down_revision = 'e13b0c0a1f5e'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('meeting', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('title', sa.String(length=200), server_default='', nullable=False)
        )
        batch_op.add_column(
            sa.Column('rrule', sa.String(length=200), server_default='', nullable=False)
        )
    op.create_table(
        'meeting_response',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('meeting_id', sa.Integer(), nullable=False),
        sa.Column('subscriber_id', sa.Integer(), nullable=False),
        sa.Column('partstat', sa.String(length=16), nullable=False),
        sa.Column('note', sa.String(length=500), nullable=False),
        sa.Column('channel', sa.String(length=16), nullable=False),
        sa.Column('sequence', sa.Integer(), nullable=False),
        sa.Column('responded_at', sa.DateTime(), nullable=True),
        sa.Column('attended', sa.Boolean(), nullable=True),
        sa.CheckConstraint(
            "partstat IN ('NEEDS-ACTION', 'ACCEPTED', 'TENTATIVE', 'DECLINED')",
            name=op.f('ck_meeting_response_partstat'),
        ),
        sa.CheckConstraint(
            "channel IN ('web', 'calendar', 'coordinator')",
            name=op.f('ck_meeting_response_channel'),
        ),
        sa.ForeignKeyConstraint(
            ['meeting_id'], ['meeting.id'],
            name=op.f('fk_meeting_response_meeting_id_meeting'), ondelete='CASCADE',
        ),
        sa.ForeignKeyConstraint(
            ['subscriber_id'], ['subscriber.id'],
            name=op.f('fk_meeting_response_subscriber_id_subscriber'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_meeting_response')),
        sa.UniqueConstraint(
            'meeting_id', 'subscriber_id',
            name=op.f('uq_meeting_response_meeting_id_subscriber_id'),
        ),
    )


def downgrade():
    op.drop_table('meeting_response')
    with op.batch_alter_table('meeting', schema=None) as batch_op:
        batch_op.drop_column('rrule')
        batch_op.drop_column('title')
