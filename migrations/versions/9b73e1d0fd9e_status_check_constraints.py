"""status and kind columns hold only their enum's values (CHECK constraints)

Revision ID: 9b73e1d0fd9e
Revises: 1a83a27dd9d5
Create Date: 2026-11-26 09:00:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '9b73e1d0fd9e'
down_revision = '1a83a27dd9d5'
branch_labels = None
depends_on = None

# The values as of this revision (service/models.py has the enums); written
# out here so that the migration does not change when the enums grow.
CHECKS = {
    'mailing_list': {
        'kind': ('newsletter', 'group'),
        'visibility': ('public', 'invite'),
    },
    'subscription': {
        'status': ('pending', 'confirmed', 'unsubscribed', 'bounced', 'requested', 'declined'),
    },
    'consent_text': {'kind': ('consent', 'group_consent', 'privacy')},
    'outgoing_mail': {'status': ('queued', 'sending', 'sent', 'failed')},
    'suppression': {'reason': ('erased', 'bounced', 'withdrawn')},
    'bounce': {'kind': ('hard', 'soft')},
    'user_account': {'role': ('admin', 'editor', 'coordinator')},
    'issue': {
        'status': ('draft', 'scheduled', 'sending', 'paused', 'sent', 'cancelled'),
        'meeting_method': ('REQUEST', 'CANCEL'),
    },
    'delivery_batch': {'status': ('queued', 'running', 'done')},
    'delivery': {'status': ('pending', 'sending', 'sent', 'failed', 'skipped', 'cancelled')},
}


def _condition(column, values):
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade():
    # On SQLite each table is rebuilt (batch mode), rows copied; env.py turns
    # foreign keys off meanwhile, so dropping the old table cascades nowhere.
    for table, columns in CHECKS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column, values in columns.items():
                batch_op.create_check_constraint(
                    op.f(f'ck_{table}_{column}'), _condition(column, values)
                )


def downgrade():
    for table, columns in reversed(CHECKS.items()):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in columns:
                batch_op.drop_constraint(op.f(f'ck_{table}_{column}'), type_='check')
