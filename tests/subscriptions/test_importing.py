"""The chunked importer (service/subscriptions/importing.py), on both databases.

What a line becomes is tested through the CLI in test_transfer.py; here, what
the chunks must not change: the consent chain, a repetition across chunks,
a resumed import, a concurrent twin of a new address, the order of the report.
"""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select

from service import ledger
from service.extensions import db
from service.models import ConsentEvent, MailingList, Subscriber, Subscription
from service.people_csv import ImportRefused
from service.subscriptions import importing
from tests.conftest import process_signups


@pytest.fixture
def zpravodaj(app) -> MailingList:
    return db.session.scalar(select(MailingList).filter_by(slug="zpravodaj"))


@pytest.fixture
def small_chunks(monkeypatch) -> None:
    """Three lines per chunk, so a short file crosses several chunk boundaries."""
    monkeypatch.setattr(importing, "CHUNK_ROWS", 3)
    monkeypatch.setattr(importing, "_IN_LIMIT", 2)  # and several IN lists per chunk


def run(text: str, mailing_list: MailingList, **options) -> importing.ImportReport:
    return importing.import_csv(io.StringIO(text, newline=""), mailing_list, "Mailchimp", **options)


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model)) or 0


def test_chunks_report_every_line_in_order_and_repetitions_across_chunks(zpravodaj, small_chunks):
    text = (
        "email,name\n"
        "jana@seznam.cz,Jana\n"  # line 2
        "spatna-adresa,X\n"  # 3
        "petr@seznam.cz,Petr\n"  # 4
        "eva@seznam.cz,Eva\n"  # 5, second chunk
        "JANA@seznam.cz,Jana znovu\n"  # 6: line 2's address, another chunk
        "ivo@seznam.cz,Ivo\n"  # 7
        "olga@seznam.cz,Olga\n"  # 8, third chunk
    )
    seen = []
    report = run(text, zpravodaj, on_chunk=lambda chunk: seen.append(chunk.rows))
    assert seen == [3, 3, 1]
    assert report.rows == 7
    assert report.imported == 5
    assert report.problems == [
        (3, "neplatná adresa 'spatna-adresa'"),
        (6, "opakuje adresu z řádku 2"),
    ]
    assert count(Subscription) == count(ConsentEvent) == 5


def test_imported_events_continue_each_persons_chain(client, zpravodaj, runner, small_chunks):
    client.post("/subscribe", json={"email": "jana@seznam.cz"})  # pending, with a sign-up event
    process_signups()
    jana = db.session.scalar(select(Subscriber).filter_by(email="jana@seznam.cz"))
    signup_hash = db.session.scalar(
        select(ConsentEvent.event_hash).where(ConsentEvent.subscriber_id == jana.id)
    )

    report = run("email\npetr@seznam.cz\njana@seznam.cz\neva@seznam.cz\n", zpravodaj)

    assert report.imported == 3
    assert db.session.scalar(
        select(Subscription.status).where(Subscription.subscriber_id == jana.id)
    ) == "confirmed"  # fmt: skip
    imported = db.session.scalars(
        select(ConsentEvent).where(ConsentEvent.action == "import").order_by(ConsentEvent.id)
    ).all()
    assert {e.subscriber_id: e.previous_hash for e in imported}[jana.id] == signup_hash
    assert [e.previous_hash for e in imported if e.subscriber_id != jana.id] == [None, None]
    with db.engine.connect() as connection:
        assert ledger.verify(connection).intact
    assert runner.invoke(args=["consent", "verify"]).exit_code == 0


def test_a_resumed_import_skips_the_rows_done_but_still_knows_their_addresses(zpravodaj):
    text = "email\njana@seznam.cz\npetr@seznam.cz\njana@seznam.cz\neva@seznam.cz\n"
    report = run(text, zpravodaj, skip=2)
    assert report.rows == 2
    assert report.imported == 1  # eva; jana's line 2 was imported before the interruption
    assert report.problems == [(4, "opakuje adresu z řádku 2")]
    assert db.session.scalars(select(Subscriber.email)).all() == ["eva@seznam.cz"]


def test_a_new_address_created_meanwhile_makes_the_chunk_run_again(zpravodaj, monkeypatch):
    """A sign-up job commits the same new address between the chunk's read and its
    insert: the insert fails on the unique key, and the chunk runs again from its read."""
    known = importing.Importer._known
    calls = []

    def twin_appears(self, lines):
        calls.append(len(lines))
        if len(calls) == 1:
            with db.engine.begin() as other:  # another transaction, committed first
                other.execute(
                    Subscriber.__table__.insert().values(
                        public_key="twin", email="jana@seznam.cz", email_key="jana@seznam.cz",
                        ascii_email="jana@seznam.cz", name="", created_at=db.func.now(),
                    )
                )  # fmt: skip
            return {}
        return known(self, lines)

    monkeypatch.setattr(importing.Importer, "_known", twin_appears)
    report = run("email\njana@seznam.cz\npetr@seznam.cz\n", zpravodaj)
    assert len(calls) == 2
    assert report.imported == 2
    assert count(Subscriber) == 2
    assert count(ConsentEvent) == 2


def test_a_file_that_cannot_be_read_is_refused_before_any_row(zpravodaj):
    data = b"email,name\njana@seznam.cz,Jana\n" + "petr@seznam.cz,Dvořák\n".encode("cp1250")
    with pytest.raises(ImportRefused, match="UTF-8"):
        importing.count_rows(io.BytesIO(data))
    assert importing.count_rows(io.BytesIO(b"\xef\xbb\xbfemail\r\na@seznam.cz\r\n")) == 1
    with pytest.raises(ImportRefused, match="prázdný"):
        importing.count_rows(io.BytesIO(b"  \n\n"))


def test_a_group_import_keeps_members_details(app, runner):
    runner.invoke(args=["lists", "create", "ostrava", "--name", "Ostrava", "--kind", "group"])
    group = db.session.scalar(select(MailingList).filter_by(slug="ostrava"))
    text = (
        "email,organization,institution,function\n"
        "jana@seznam.cz,Charita Ostrava,nezisková organizace,sociální pracovnice\n"
        "petr@seznam.cz,,neznámá instituce,\n"
    )
    report = run(text, group)
    assert report.imported == 1
    assert report.problems == [(3, "neznámý typ instituce 'neznámá instituce'")]
    member = db.session.scalar(select(Subscription))
    assert (member.organization, member.function) == ("Charita Ostrava", "sociální pracovnice")
    assert member.institution


def test_a_file_unreadable_further_on_keeps_the_chunks_before_and_says_why(zpravodaj, small_chunks):
    """The next chunk is read and checked in a thread while this one is written: its
    refusal still reaches the caller, after the chunks before it committed."""
    text = "email,name\na@seznam.cz,A\nb@seznam.cz,B\nc@seznam.cz,C\nd@seznam.cz,D\n"
    text += f"e@seznam.cz,{'x' * 200_000}\n"  # over the csv module's field size limit
    seen = []
    with pytest.raises(ImportRefused, match="řádek 6"):
        run(text, zpravodaj, on_chunk=lambda chunk: seen.append(chunk.rows))
    db.session.rollback()
    assert seen == [3]  # the first chunk landed; the second could not be read through
    assert count(Subscriber) == 3
