"""consent ledger: a hash chain per subscriber, and triggers refusing edits

Revision ID: 5c1f0e7a2b9d
Revises: 9b73e1d0fd9e
Create Date: 2026-11-30 05:45:00.000000

Existing events are chained in id order, per subscriber, before the triggers
go on. The hash format and the trigger statements come from service/ledger.py
on purpose: what `zpravodaj consent verify` checks and what `db.create_all()`
installs must be exactly what this migration made. A later change to either
is a new migration (and a new CHAIN_VERSION for the hash), never an edit.
"""
from alembic import op
import sqlalchemy as sa

from service import ledger


# revision identifiers, used by Alembic.
revision = '5c1f0e7a2b9d'
down_revision = '9b73e1d0fd9e'
branch_labels = None
depends_on = None

consent_text = sa.table(
    'consent_text', sa.column('id', sa.Integer), sa.column('sha256', sa.String)
)
consent_event = sa.table(
    'consent_event',
    sa.column('id', sa.Integer),
    sa.column('subscriber_id', sa.Integer),
    sa.column('list_id', sa.Integer),
    sa.column('action', sa.String),
    sa.column('channel', sa.String),
    sa.column('occurred_at', sa.DateTime),
    sa.column('ip', sa.String),
    sa.column('user_agent', sa.String),
    sa.column('origin', sa.String),
    sa.column('consent_text_id', sa.Integer),
    sa.column('privacy_text_id', sa.Integer),
    sa.column('message_id', sa.String),
    sa.column('detail', sa.Text),
    sa.column('previous_hash', sa.String),
    sa.column('event_hash', sa.String),
)


def upgrade():
    with op.batch_alter_table('consent_event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('previous_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('event_hash', sa.String(length=64), nullable=True))
    _chain_existing_events(op.get_bind())
    # On SQLite this rebuilds the table: before the triggers, which a rebuild drops.
    with op.batch_alter_table('consent_event', schema=None) as batch_op:
        batch_op.alter_column('event_hash', existing_type=sa.String(length=64), nullable=False)
    ledger.install(op.get_bind())


def downgrade():
    ledger.uninstall(op.get_bind())
    with op.batch_alter_table('consent_event', schema=None) as batch_op:
        batch_op.drop_column('event_hash')
        batch_op.drop_column('previous_hash')


def _chain_existing_events(bind) -> None:
    texts = dict(bind.execute(sa.select(consent_text.c.id, consent_text.c.sha256)).all())
    heads = {}
    rows = bind.execute(sa.select(consent_event).order_by(consent_event.c.id)).mappings().all()
    for row in rows:
        fields = {name: row[name] for name in ledger.HASHED_COLUMNS}
        fields['consent_text'] = texts.get(row['consent_text_id'])
        fields['privacy_text'] = texts.get(row['privacy_text_id'])
        previous = heads.get(row['subscriber_id'])
        digest = ledger.event_hash(previous, fields)
        bind.execute(
            consent_event.update()
            .where(consent_event.c.id == row['id'])
            .values(previous_hash=previous, event_hash=digest)
        )
        heads[row['subscriber_id']] = digest
