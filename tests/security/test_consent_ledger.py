"""The consent ledger is append-only in the database itself (issue 11, finding 7).

The attacker of the review went round the ORM: bulk `update()`/`delete()`,
raw SQL, edits of `consent_text`. Here the same statements meet the database's
triggers, on SQLite and on PostgreSQL; erasure and retention still delete
people whole through `ledger.purging`; and an attacker who drops the triggers
first leaves a broken hash chain that `zpravodaj consent verify` names.
"""

from __future__ import annotations

import hashlib
import itertools

import pytest
from flask_migrate import upgrade
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError

from service import create_app, ledger
from service.extensions import db
from service.models import ConsentEvent, ConsentText, MailingList, Subscriber
from service.schema import init_migrations
from service.subscriptions import actions
from tests.conftest import ledger_unguarded, link_to, run_jobs

REFUSED = "append-only"
CONSENT = "Souhlasím se zasíláním zpravodaje."


def sign_up_and_confirm(client, app, outbox, email: str) -> int:
    outbox.catcher.clear()
    response = client.post(
        "/subscribe",
        data={"email": email, "name": "Jana", "list": "zpravodaj"},
        headers={"User-Agent": "Mozilla/5.0 (ledger test)"},
        environ_base={"REMOTE_ADDR": "192.0.2.10"},
    )
    assert response.status_code == 202
    run_jobs(app)
    client.post(link_to(outbox.mails[-1], "/confirm/"))
    return db.session.scalar(select(Subscriber.id).filter_by(email=email))


@pytest.fixture
def history(client, app, outbox) -> list[int]:
    """Two people, each with a sign-up and a confirmation; one also unsubscribed."""
    sign_up_and_confirm(client, app, outbox, "jana@seznam.cz")
    client.post(link_to(outbox.mails[-1], "/unsubscribe/"))
    sign_up_and_confirm(client, app, outbox, "petr@seznam.cz")
    db.session.expire_all()
    return list(db.session.scalars(select(ConsentEvent.id).order_by(ConsentEvent.id)))


def refused(statement) -> str:
    """Run `statement` in the session; the database must refuse it. Returns its message."""
    with pytest.raises(DBAPIError) as caught:
        db.session.execute(statement)
        db.session.flush()
    db.session.rollback()
    assert REFUSED in str(caught.value)
    return str(caught.value)


@pytest.mark.parametrize(
    "statement",
    [
        text("UPDATE consent_event SET ip = '203.0.113.66'"),
        text("DELETE FROM consent_event"),
        text("UPDATE consent_text SET text = 'Souhlasím se vším.'"),
        text("DELETE FROM consent_text"),
        update(ConsentEvent).values(action="import", detail="podvržený souhlas"),
        delete(ConsentEvent).where(ConsentEvent.action == "unsubscribe"),
    ],
    ids=["raw-update", "raw-delete", "text-update", "text-delete", "bulk-update", "bulk-delete"],
)
def test_the_database_refuses_edits_of_the_ledger(history, statement):
    before = db.session.execute(select(ConsentEvent.id, ConsentEvent.event_hash)).all()
    refused(statement)
    assert db.session.execute(select(ConsentEvent.id, ConsentEvent.event_hash)).all() == before


def test_postgresql_refuses_truncate_too(history):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("TRUNCATE is PostgreSQL's")
    refused(text("TRUNCATE consent_event"))


def test_deleting_the_person_does_not_cascade_their_ledger_away(history):
    """ON DELETE CASCADE deletes rows too: the trigger sees those deletes as well."""
    refused(text("DELETE FROM subscriber"))
    assert db.session.scalar(select(Subscriber.id)) is not None


def test_erasure_deletes_the_whole_ledger_and_the_guard_comes_back(history):
    jana = db.session.scalar(select(Subscriber).filter_by(email="jana@seznam.cz"))
    actions.erase(jana)
    # Within the same transaction, after the sanctioned path: refused again.
    refused(text("DELETE FROM consent_event"))
    actions.erase(db.session.scalar(select(Subscriber).filter_by(email="jana@seznam.cz")))
    db.session.commit()
    left = db.session.scalars(select(ConsentEvent.subscriber_id)).all()
    assert left and jana.id not in left
    refused(text("DELETE FROM consent_event"))


def test_each_event_is_chained_to_the_persons_previous_one(history):
    events = db.session.scalars(select(ConsentEvent).order_by(ConsentEvent.id)).all()
    by_person: dict[int, list[ConsentEvent]] = {}
    for event in events:
        by_person.setdefault(event.subscriber_id, []).append(event)
    for chain in by_person.values():
        assert chain[0].previous_hash is None
        for before, after in itertools.pairwise(chain):
            assert after.previous_hash == before.event_hash
    assert len({event.event_hash for event in events}) == len(events)


def test_verify_says_an_intact_ledger_is_intact(history, runner):
    result = runner.invoke(args=["consent", "verify"])
    assert result.exit_code == 0, result.output
    assert f"zkontrolováno {len(history)} událostí" in result.output


def tamper(statement) -> None:
    with ledger_unguarded():
        db.session.execute(statement)
    db.session.commit()


def test_verify_names_an_edited_event(history, runner):
    victim = history[2]
    tamper(update(ConsentEvent).where(ConsentEvent.id == victim).values(ip="203.0.113.66"))
    result = runner.invoke(args=["consent", "verify"])
    assert result.exit_code == 1
    assert f"u události č. {victim}: obsah události byl změněn" in result.output


def test_verify_names_the_event_after_a_deleted_one(history, runner):
    jana = db.session.scalar(select(Subscriber.id).filter_by(email="jana@seznam.cz"))
    janas = db.session.scalars(
        select(ConsentEvent.id).filter_by(subscriber_id=jana).order_by(ConsentEvent.id)
    ).all()
    tamper(delete(ConsentEvent).where(ConsentEvent.id == janas[1]))  # the confirmation
    result = runner.invoke(args=["consent", "verify"])
    assert result.exit_code == 1
    assert f"u události č. {janas[2]}: nenavazuje" in result.output


def test_verify_names_an_edited_consent_text(history, runner):
    text_id = db.session.scalar(select(ConsentText.id).filter_by(kind="consent"))
    tamper(update(ConsentText).where(ConsentText.id == text_id).values(text="Souhlasím se vším."))
    result = runner.invoke(args=["consent", "verify"])
    assert result.exit_code == 1
    assert f"uložený text č. {text_id}" in result.output


def test_verify_names_an_event_whose_text_was_swapped_with_its_hash(history, runner):
    """Both the text and its stored hash changed: the events sealed the old hash."""
    text_id = db.session.scalar(select(ConsentText.id).filter_by(kind="consent"))
    forged = "Souhlasím se vším."
    tamper(
        update(ConsentText)
        .where(ConsentText.id == text_id)
        .values(text=forged, sha256=hashlib.sha256(forged.encode()).hexdigest())
    )
    first = db.session.scalar(
        select(ConsentEvent.id).filter_by(consent_text_id=text_id).order_by(ConsentEvent.id)
    )
    result = runner.invoke(args=["consent", "verify"])
    assert result.exit_code == 1
    assert f"u události č. {first}:" in result.output


def test_migration_keeps_existing_events_and_chains_them(app_config, runner):
    """A database at the revision before the ledger, holding events, upgraded to head."""
    app = create_app(app_config)
    init_migrations(app)
    with app.app_context():
        db.drop_all()
        with db.engine.begin() as connection:
            connection.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
        upgrade(revision="9b73e1d0fd9e")
        # The tables the events point to have not changed: the models can fill them.
        db.session.add_all(
            [
                MailingList(id=1, slug="zpravodaj", name="Zpravodaj"),
                ConsentText(
                    id=1,
                    kind="consent",
                    version=1,
                    sha256=hashlib.sha256(CONSENT.encode()).hexdigest(),
                    text=CONSENT,
                ),
                Subscriber(id=1, email="jana@seznam.cz", email_key="jana@seznam.cz"),
                Subscriber(id=2, email="petr@seznam.cz", email_key="petr@seznam.cz"),
            ]
        )
        db.session.commit()
        with db.engine.begin() as connection:
            for event_id, subscriber_id, action, text_id in (
                (1, 1, "signup", 1),
                (2, 2, "signup", 1),
                (3, 1, "confirm", None),
                (4, 1, "unsubscribe", None),
            ):
                connection.execute(
                    text(
                        "INSERT INTO consent_event (id, subscriber_id, list_id, action, channel,"
                        " occurred_at, ip, consent_text_id) VALUES (:id, :subscriber, 1,"
                        " :action, 'page', :at, '192.0.2.1', :text_id)"
                    ),
                    {
                        "id": event_id,
                        "subscriber": subscriber_id,
                        "action": action,
                        "at": f"2026-01-0{event_id} 10:00:00.123456",
                        "text_id": text_id,
                    },
                )
        db.session.remove()

        upgrade()

        rows = db.session.execute(
            select(
                ConsentEvent.id,
                ConsentEvent.action,
                ConsentEvent.previous_hash,
                ConsentEvent.event_hash,
            ).order_by(ConsentEvent.id)
        ).all()
        assert [(row.id, row.action) for row in rows] == [
            (1, "signup"),
            (2, "signup"),
            (3, "confirm"),
            (4, "unsubscribe"),
        ]
        hashes = {row.id: row.event_hash for row in rows}
        assert rows[0].previous_hash is None and rows[1].previous_hash is None
        assert rows[2].previous_hash == hashes[1] and rows[3].previous_hash == hashes[3]
        with db.engine.connect() as connection:
            assert ledger.verify(connection).intact
        result = app.test_cli_runner().invoke(args=["consent", "verify"])
        assert result.exit_code == 0, result.output
        refused(text("UPDATE consent_event SET ip = '203.0.113.66'"))
        refused(text("DELETE FROM consent_text"))

        db.session.remove()
        with db.engine.begin() as connection:
            connection.exec_driver_sql("DROP TABLE alembic_version")
        db.drop_all()
        db.engine.dispose()
