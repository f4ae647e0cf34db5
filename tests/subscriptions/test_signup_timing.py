"""Sign-up must not tell by its work whether an address is known (issue 11, finding 8).

No timing is asserted here (bench/signup_timing.py prints the medians of a
new and a known address and their ratio); instead the requests for a new, a
pending, a confirmed, an unsubscribed and a suppressed address must run the
same SQL statements, in the same order (seen by SQLAlchemy's
before_cursor_execute event), and enqueue the same job. The work that does
differ runs in that job (service/subscriptions/signup.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from rq import Queue
from sqlalchemy import event, select, update

from service.clock import utcnow
from service.extensions import db
from service.jobs import MAIL_QUEUE, redis_connection
from service.models import SignupRequest, Subscriber, Subscription
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

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def queued_jobs() -> list[tuple[str, str]]:
    """(function, queue) of each job waiting on the mail queue."""
    mail_queue = Queue(MAIL_QUEUE, connection=redis_connection())
    return [(job.func_name, job.origin) for job in mail_queue.get_jobs()]


def sign_up_and_watch(
    client, address: str, fields: dict | None = None, *, as_json: bool = False
) -> tuple[list[str], list[tuple[str, str]]]:
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
    assert new_jobs == [("workers.signup.process_signup", MAIL_QUEUE)]
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
