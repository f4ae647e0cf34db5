"""subscriber_import and import_problem: admin CSV imports run by a worker

Revision ID: f2a9c4e7b310
Revises: e5b8c2d4f1a7
Create Date: 2026-12-10 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f2a9c4e7b310'
down_revision = 'e5b8c2d4f1a7'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'subscriber_import',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('list_id', sa.Integer(), nullable=False),
        sa.Column('created_by_id', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('filename', sa.String(length=255), nullable=False),
        sa.Column('consent_source', sa.String(length=500), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('total_rows', sa.Integer(), nullable=False),
        sa.Column('rows_done', sa.Integer(), nullable=False),
        sa.Column('imported', sa.Integer(), nullable=False),
        sa.Column('unchanged', sa.Integer(), nullable=False),
        sa.Column('skipped', sa.Integer(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('job_id', sa.String(length=64), nullable=True),
        sa.Column('heartbeat', sa.DateTime(), nullable=True),
        sa.Column('started_at', sa.DateTime(), nullable=True),
        sa.Column('finished_at', sa.DateTime(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed')",
            name=op.f('ck_subscriber_import_status'),
        ),
        sa.ForeignKeyConstraint(
            ['created_by_id'],
            ['user_account.id'],
            name=op.f('fk_subscriber_import_created_by_id_user_account'),
            ondelete='SET NULL',
        ),
        sa.ForeignKeyConstraint(
            ['list_id'],
            ['mailing_list.id'],
            name=op.f('fk_subscriber_import_list_id_mailing_list'),
            ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_subscriber_import')),
    )
    op.create_table(
        'import_problem',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('import_id', sa.Integer(), nullable=False),
        sa.Column('line', sa.Integer(), nullable=False),
        sa.Column('problem', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ['import_id'],
            ['subscriber_import.id'],
            name=op.f('fk_import_problem_import_id_subscriber_import'),
            ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_import_problem')),
    )
    with op.batch_alter_table('import_problem', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_import_problem_import_id'), ['import_id'], unique=False)


def downgrade():
    with op.batch_alter_table('import_problem', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_import_problem_import_id'))
    op.drop_table('import_problem')
    op.drop_table('subscriber_import')
