"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from service import create_app
from service.clock import utcnow
from service.extensions import db
from service.schema import init_migrations


def test_migrations_match_the_models(app_config):
    app = create_app(app_config)
    init_migrations(app)
    with app.app_context():
        db.drop_all()
        with db.engine.begin() as connection:
            connection.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
        upgrade()
        with db.engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), db.metadata)
        assert diff == []
        downgrade(revision="base")
        upgrade()
        with db.engine.begin() as connection:
            connection.exec_driver_sql("DROP TABLE alembic_version")
        db.drop_all()
        db.engine.dispose()


STATES_REVISION = "9b73e1d0fd9e"


def _fill_with_rows() -> dict[str, int]:
    """One row in every table the states migration rebuilds (on SQLite), linked as in life."""
    from service.models import (
        ConsentText,
        Delivery,
        DeliveryBatch,
        Issue,
        MailingList,
        OutgoingMail,
        Subscriber,
        Subscription,
        Suppression,
        User,
    )

    group = MailingList(slug="skupina", name="Skupina", kind="group", visibility="invite")
    subscriber = Subscriber(email="jana@example.org", email_key="jana@example.org")
    subscription = Subscription(subscriber=subscriber, mailing_list=group, status="requested")
    user = User(email="admin@example.org", password_hash="x", role="admin")
    mail = OutgoingMail(
        kind="confirmation",
        sender="a@example.org",
        recipient="jana@example.org",
        message_id="<m@example.org>",
        raw=b"raw",
        status="sent",
    )
    db.session.add_all([group, subscriber, subscription, user, mail])
    db.session.add(ConsentText(kind="privacy", version=1, sha256="0" * 64, text="Zásady"))
    db.session.add(Suppression(address_hash="1" * 64, reason="withdrawn"))
    db.session.flush()
    # A Core insert: only the columns given and those with defaults, not ones added
    # to the model after that revision (Issue.meeting_occurrence).
    inserted = db.session.execute(
        Issue.__table__.insert().values(
            list_id=group.id, subject="Vydání", status="sending", meeting_method="REQUEST"
        )
    )
    issue_id = inserted.inserted_primary_key[0]
    batch = DeliveryBatch(issue_id=issue_id, status="running")
    db.session.add(batch)
    db.session.flush()
    delivery = Delivery(
        issue_id=issue_id, batch_id=batch.id, subscriber_id=subscriber.id, status="skipped"
    )
    db.session.add(delivery)
    db.session.flush()
    # Only the columns of that revision: later ones add to the model (issue 13).
    db.session.execute(
        text(
            "INSERT INTO bounce (subscriber_id, delivery_id, kind, status, diagnostic,"
            " fingerprint, received_at) VALUES (:s, :d, 'soft', '', '', 'f', :at)"
        ),
        {"s": subscriber.id, "d": delivery.id, "at": utcnow()},
    )
    db.session.commit()
    return _counts()


def _counts() -> dict[str, int]:
    """Rows per table holding any, of the tables the database has at its revision
    (a table added later, still empty, changes nothing; one emptied shows)."""
    with db.engine.connect() as connection:
        present = set(inspect(connection).get_table_names())
        counts = {
            name: connection.exec_driver_sql(f'SELECT count(*) FROM "{name}"').scalar()
            for name in db.metadata.tables
            if name in present
        }
    return {name: count for name, count in counts.items() if count}


def _insert_unknown_status(connection) -> None:
    connection.exec_driver_sql("UPDATE subscription SET status = 'archived'")


def test_states_migration_keeps_rows_and_refuses_unknown_values(app_config):
    """Upgrade a database holding rows (SQLite rebuilds each table: nothing may cascade
    away), then downgrade and upgrade again; the CHECKs refuse an unknown status."""
    from sqlalchemy.exc import IntegrityError

    app = create_app(app_config)
    init_migrations(app)
    with app.app_context():
        db.drop_all()
        with db.engine.begin() as connection:
            connection.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
        upgrade(revision="1a83a27dd9d5")
        before = _fill_with_rows()
        assert all(before[name] for name in ("subscription", "delivery", "bounce"))
        db.session.remove()

        upgrade()
        assert _counts() == before
        with pytest.raises(IntegrityError), db.engine.begin() as connection:
            _insert_unknown_status(connection)

        downgrade(revision="1a83a27dd9d5")
        assert _counts() == before
        with db.engine.connect() as connection:
            _insert_unknown_status(connection)  # no CHECK any more
            connection.rollback()

        upgrade(revision=STATES_REVISION)
        assert _counts() == before
        with pytest.raises(IntegrityError), db.engine.begin() as connection:
            _insert_unknown_status(connection)
        with db.engine.connect() as connection:
            statuses = connection.exec_driver_sql("SELECT status FROM subscription").scalars()
            assert list(statuses) == ["requested"]

        db.session.remove()
        upgrade()  # drop_all drops in the order of the models' schema, the head's
        with db.engine.begin() as connection:
            connection.exec_driver_sql("DROP TABLE alembic_version")
        db.drop_all()
        db.engine.dispose()
