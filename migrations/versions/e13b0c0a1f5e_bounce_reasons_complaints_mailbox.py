"""bounce reasons and raw reports, complaints, processed mailbox messages (issue 13)

Revision ID: e13b0c0a1f5e
Revises: e8d4b6a1c2f0
Create Date: 2026-11-30 07:50:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e13b0c0a1f5e'
down_revision = 'e8d4b6a1c2f0'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('bounce', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reason', sa.String(length=16), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('raw', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('about_us', sa.Boolean(), nullable=False, server_default='0'))

    op.create_table('complaint',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subscriber_id', sa.Integer(), nullable=True),
    sa.Column('list_id', sa.Integer(), nullable=True),
    sa.Column('issue_id', sa.Integer(), nullable=True),
    sa.Column('feedback_type', sa.String(length=32), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['issue_id'], ['issue.id'], name=op.f('fk_complaint_issue_id_issue'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['list_id'], ['mailing_list.id'], name=op.f('fk_complaint_list_id_mailing_list'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscriber.id'], name=op.f('fk_complaint_subscriber_id_subscriber'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_complaint')),
    sa.UniqueConstraint('fingerprint', name=op.f('uq_complaint_fingerprint'))
    )
    with op.batch_alter_table('complaint', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_complaint_issue_id'), ['issue_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_complaint_subscriber_id'), ['subscriber_id'], unique=False)
        batch_op.create_index('ix_complaint_received', ['received_at'], unique=False)

    op.create_table('mailbox_message',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('mailbox', sa.String(length=255), nullable=False),
    sa.Column('uidvalidity', sa.BigInteger(), nullable=False),
    sa.Column('uid', sa.BigInteger(), nullable=False),
    sa.Column('message_id', sa.String(length=255), nullable=False),
    sa.Column('processed_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mailbox_message')),
    sa.UniqueConstraint('mailbox', 'uidvalidity', 'uid', name=op.f('uq_mailbox_message_mailbox_uidvalidity_uid'))
    )
    with op.batch_alter_table('mailbox_message', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mailbox_message_message_id'), ['message_id'], unique=False)


def downgrade():
    with op.batch_alter_table('mailbox_message', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mailbox_message_message_id'))
    op.drop_table('mailbox_message')

    with op.batch_alter_table('complaint', schema=None) as batch_op:
        batch_op.drop_index('ix_complaint_received')
        batch_op.drop_index(batch_op.f('ix_complaint_subscriber_id'))
        batch_op.drop_index(batch_op.f('ix_complaint_issue_id'))
    op.drop_table('complaint')

    with op.batch_alter_table('bounce', schema=None) as batch_op:
        batch_op.drop_column('about_us')
        batch_op.drop_column('raw')
        batch_op.drop_column('reason')
