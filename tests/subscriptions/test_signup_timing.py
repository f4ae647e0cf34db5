"""Sign-up must not tell by its work whether an address is known (issue 11, finding 8).

No timing is asserted here (bench/signup_timing.py prints the medians of a
new and a known address and their ratio); instead the requests for a new, a
pending, a confirmed, an unsubscribed and a suppressed address must run the
same SQL statements, in the same order (seen by SQLAlchemy's
before_cursor_execute event, and for the sign-up's own INSERT, which skips
SQLAlchemy's execution, by `DriverStatement.execute`), and hand over to the
same job. The work that
does differ runs in that job (service/subscriptions/signup.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from flask import render_template, template_rendered
from flask_babel import refresh
from rq import Queue
from sqlalchemy import event, select, update

from service import consent
from service.clock import utcnow
from service.database import DriverStatement
from service.extensions import db
from service.jobs import MAIL_QUEUE, SIGNUP_DRAIN_QUEUED, redis_connection
from service.models import MailingList, SignupRequest, Subscriber, Subscription
from service.suppression import suppress
from tests.conftest import process_signups

NEW = "novy.ctenar@seznam.cz"
PENDING = "ceka.na.potvrzeni@seznam.cz"
CONFIRMED = "potvrzena.ctenarka@seznam.cz"
UNSUBSCRIBED = "odhlasena@seznam.cz"
SUPPRESSED = "vymazana@seznam.cz"


@contextmanager
def statements() -> Iterator[list[str]]:
    """The SQL statements run inside the block, in order, with their parameters left out."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append(re.sub(r"\s+", " ", statement).strip())

    run_by_the_driver = DriverStatement.execute

    def record_driver_statement(statement: DriverStatement, cursor, values):
        seen.append(re.sub(r"\s+", " ", statement.sql).strip())
        return run_by_the_driver(statement, cursor, values)

    event.listen(db.engine, "before_cursor_execute", record)
    DriverStatement.execute = record_driver_statement  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        DriverStatement.execute = run_by_the_driver  # type: ignore[method-assign]
        event.remove(db.engine, "before_cursor_execute", record)


def queued_jobs() -> list[tuple[str, str]]:
    """(function, queue) of each job waiting on the mail queue."""
    mail_queue = Queue(MAIL_QUEUE, connection=redis_connection())
    return [(job.func_name, job.origin) for job in mail_queue.get_jobs()]


def no_job_queued() -> None:
    """The same starting point for every sign-up watched: no sign-up job queued yet (with
    one queued, a sign-up queues none; either way the same whatever the address)."""
    Queue(MAIL_QUEUE, connection=redis_connection()).empty()
    redis_connection().delete(SIGNUP_DRAIN_QUEUED)


def sign_up_and_watch(
    client, address: str, fields: dict | None = None, *, as_json: bool = False
) -> tuple[list[str], list[tuple[str, str]]]:
    no_job_queued()
    before = queued_jobs()
    body = {"email": address, **(fields or {})}
    post = {"json": body} if as_json else {"data": body}
    with statements() as seen:
        response = client.post(
            "/subscribe", headers={"Origin": "https://www.socialnibydleni.example"}, **post
        )
    assert response.status_code == 202
    return seen, queued_jobs()[len(before) :]


def known_addresses(client) -> None:
    """A pending, a confirmed, an unsubscribed and an erased (suppressed) address."""
    for address in (PENDING, CONFIRMED, UNSUBSCRIBED):
        assert client.post("/subscribe", data={"email": address}).status_code == 202
    process_signups()
    for address, status in ((CONFIRMED, "confirmed"), (UNSUBSCRIBED, "unsubscribed")):
        subscriber_id = select(Subscriber.id).filter_by(email_key=address).scalar_subquery()
        db.session.execute(
            update(Subscription)
            .where(Subscription.subscriber_id == subscriber_id)
            .values(status=status, confirmed_at=utcnow())
        )
    suppress(SUPPRESSED, "erased")
    db.session.commit()


def test_every_kind_of_address_costs_the_same_statements_and_enqueue(client):
    known_addresses(client)
    sign_up_and_watch(client, "zahrati@seznam.cz")  # warm-up: first-use queries

    watched = {
        address: sign_up_and_watch(client, address)
        for address in (NEW, PENDING, CONFIRMED, UNSUBSCRIBED, SUPPRESSED)
    }
    new_statements, new_jobs = watched[NEW]
    assert new_jobs == [("workers.signup.process_signups", MAIL_QUEUE)]
    # One INSERT, of the request row, whatever the address; nothing else is written.
    writes = [s for s in new_statements if not s.startswith("SELECT")]
    assert len(writes) == 1
    assert writes[0].startswith("INSERT INTO signup_request")
    for address, (seen, jobs) in watched.items():
        assert seen == new_statements, address
        assert jobs == new_jobs, address


def test_the_embedded_form_and_the_api_do_the_same_constant_work(client):
    known_addresses(client)
    sign_up_and_watch(client, "zahrati@seznam.cz")
    for fields, as_json in (({"form": "embed"}, False), ({"list": ["zpravodaj"]}, True)):
        new = sign_up_and_watch(client, "jiny.novy@seznam.cz", fields, as_json=as_json)
        known = sign_up_and_watch(client, CONFIRMED, fields, as_json=as_json)
        assert new == known


def test_the_job_does_the_work_that_differs(client):
    known_addresses(client)
    sign_up_and_watch(client, NEW)
    sign_up_and_watch(client, CONFIRMED)
    assert db.session.scalar(select(Subscriber).filter_by(email_key=NEW)) is None
    assert len(db.session.scalars(select(SignupRequest)).all()) == 2
    assert process_signups() == 2
    new = db.session.scalar(select(Subscriber).filter_by(email_key=NEW))
    assert [s.status for s in new.subscriptions] == ["pending"]
    confirmed = db.session.scalar(select(Subscriber).filter_by(email_key=CONFIRMED))
    assert [s.status for s in confirmed.subscriptions] == ["confirmed"]
    assert db.session.scalars(select(SignupRequest)).all() == []


# --- what a sign-up's request no longer redoes each time (issue 14) -------------------

ENGLISH = {"Accept-Language": "en"}


def test_the_answer_page_is_rendered_once_per_language_and_form(client, app):
    rendered: list[str] = []

    def record(sender, template, context, **extra) -> None:
        rendered.append(template.name)

    template_rendered.connect(record, app)
    czech = [client.post("/subscribe", data={"email": f"a{i}@seznam.cz"}) for i in range(3)]
    english = client.post("/subscribe", data={"email": "b@seznam.cz"}, headers=ENGLISH)
    embed = client.post("/subscribe", data={"email": "c@seznam.cz", "form": "embed"})
    assert {r.status_code for r in (*czech, english, embed)} == {202}
    assert len({r.data for r in czech}) == 1
    assert rendered.count("public/check_mailbox.html") == 2  # Czech once, English once
    assert rendered.count("public/check_mailbox_embed.html") == 1
    with app.test_request_context("/subscribe", method="POST"):
        refresh()  # the language of this request, not of the test's app context before it
        assert czech[0].text == render_template("public/check_mailbox.html")
    with app.test_request_context("/subscribe", method="POST", headers=ENGLISH):
        refresh()
        assert english.text == render_template("public/check_mailbox.html")
    assert '<html lang="cs">' in czech[0].text and '<html lang="en">' in english.text
    assert 'class="embed"' in embed.text and 'class="embed"' not in czech[0].text


def test_a_sign_up_without_the_forms_hash_records_the_text_of_its_language(client):
    for number, headers in enumerate(({}, ENGLISH, {}, ENGLISH)):
        response = client.post(
            "/subscribe", json={"email": f"x{number}@seznam.cz"}, headers=headers
        )
        assert response.status_code == 202
    rows = db.session.scalars(select(SignupRequest).order_by(SignupRequest.id)).all()
    texts = [db.session.get(consent.ConsentText, row.consent_text_id) for row in rows]
    assert [row.language for row in rows] == ["cs", "en", "cs", "en"]
    assert texts[0].id == texts[2].id != texts[1].id == texts[3].id
    assert texts[0].text.startswith("Odesláním formuláře") and texts[1].text.startswith(
        "By sending"
    )


def test_a_list_changed_since_this_process_saw_it_is_looked_up_again(client):
    """The list's id this process remembers is only a hint: the INSERT checks it, and a
    list deleted, renamed or replaced since then is treated as before (issue 14)."""

    def sign_up(slug: str, address: str):
        return client.post("/subscribe", json={"email": address, "list": [slug]})

    assert sign_up("novinky", "a@seznam.cz").status_code == 202  # looked up, remembered
    assert sign_up("novinky", "b@seznam.cz").status_code == 202  # the checked INSERT alone
    news = db.session.scalar(select(MailingList).filter_by(slug="novinky"))
    news.slug = "novinky-stare"  # renamed
    db.session.commit()
    gone = sign_up("novinky", "c@seznam.cz")
    assert gone.status_code == 422
    assert gone.json["errors"] == {"list": "Tento odběr neexistuje."}
    db.session.add(MailingList(slug="novinky", name="Nové novinky"))  # the slug, a new list
    db.session.commit()
    assert sign_up("novinky", "d@seznam.cz").status_code == 202
    news.kind = "group"  # the old one is a group now: its slug is no newsletter either
    db.session.commit()
    assert sign_up("novinky-stare", "e@seznam.cz").status_code == 422
    rows = db.session.scalars(select(SignupRequest).order_by(SignupRequest.id)).all()
    new_id = db.session.scalar(select(MailingList.id).filter_by(slug="novinky"))
    assert [(r.email, r.list_ids) for r in rows] == [
        ("a@seznam.cz", [news.id]), ("b@seznam.cz", [news.id]), ("d@seznam.cz", [new_id])
    ]  # fmt: skip
