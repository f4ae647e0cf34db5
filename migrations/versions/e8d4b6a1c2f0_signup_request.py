"""signup_request: a sign-up as posted, waiting for the job that acts on it

Revision ID: e8d4b6a1c2f0
Revises: 7d2e4b1c9a60
Create Date: 2026-11-30 07:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e8d4b6a1c2f0'
down_revision = '7d2e4b1c9a60'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'signup_request',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('email', sa.String(length=320), nullable=False),
        sa.Column('email_key', sa.String(length=320), nullable=False),
        sa.Column('ascii_email', sa.String(length=320), nullable=True),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('list_ids', sa.JSON(), nullable=False),
        sa.Column('consent_text_id', sa.Integer(), nullable=False),
        sa.Column('channel', sa.String(length=32), nullable=False),
        sa.Column('ip', sa.String(length=45), nullable=True),
        sa.Column('user_agent', sa.String(length=512), nullable=True),
        sa.Column('origin', sa.String(length=255), nullable=True),
        sa.Column('language', sa.String(length=8), nullable=False),
        sa.Column('requested_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ['consent_text_id'],
            ['consent_text.id'],
            name=op.f('fk_signup_request_consent_text_id_consent_text'),
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_signup_request')),
    )
    with op.batch_alter_table('signup_request', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_signup_request_email_key'), ['email_key'], unique=False
        )
        batch_op.create_index(
            batch_op.f('ix_signup_request_requested_at'), ['requested_at'], unique=False
        )


def downgrade():
    with op.batch_alter_table('signup_request', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signup_request_requested_at'))
        batch_op.drop_index(batch_op.f('ix_signup_request_email_key'))
    op.drop_table('signup_request')
