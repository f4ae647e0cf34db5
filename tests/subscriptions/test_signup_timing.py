"""Sign-up must not tell by its work whether an address is known (issue 11, finding 8).

No timing is asserted here (bench/signup_timing.py prints the two medians and
their ratio); instead the request for a new address and for a confirmed one
must run the same SQL statements (count and kind, seen by SQLAlchemy's
before_cursor_execute event) and enqueue the same job.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from rq import Queue
from sqlalchemy import event, update

from service.clock import utcnow
from service.extensions import db
from service.jobs import MAIL_QUEUE, redis_connection
from service.models import Subscription

KNOWN = "potvrzena.ctenarka@seznam.cz"


@contextmanager
def statement_kinds() -> Iterator[Counter]:
    """Kinds of the SQL statements run inside the block: SELECT, INSERT, UPDATE, SAVEPOINT…"""
    kinds: Counter = Counter()

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        words = re.findall(r"[A-Z]+", statement.lstrip().upper())
        # The first word and the table a write touches (SELECTs by their FROM).
        table = re.search(r"(?:INTO|UPDATE|FROM)\s+\"?(\w+)", statement, re.IGNORECASE)
        kinds[(words[0] if words else "", table.group(1) if table else "")] += 1

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield kinds
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def queued_jobs() -> list[str]:
    mail_queue = Queue(MAIL_QUEUE, connection=redis_connection())
    return [job.func_name for job in mail_queue.get_jobs()]


def sign_up_and_watch(client, address: str) -> tuple[Counter, list[str]]:
    before = queued_jobs()
    with statement_kinds() as kinds:
        response = client.post("/subscribe", data={"email": address})
    assert response.status_code == 202
    return kinds, queued_jobs()[len(before) :]


@pytest.mark.xfail(
    strict=True,
    reason="issue 11 finding 8 is still open: a new address inserts the subscriber, "
    "its subscription and a consent event that a confirmed one does not",
)
def test_a_new_and_a_confirmed_address_cost_the_same_statements_and_enqueue(client):
    assert client.post("/subscribe", data={"email": KNOWN}).status_code == 202
    db.session.execute(update(Subscription).values(status="confirmed", confirmed_at=utcnow()))
    db.session.commit()
    sign_up_and_watch(client, "zahrati@seznam.cz")  # warm-up: first-use queries

    new_kinds, new_jobs = sign_up_and_watch(client, "novy.ctenar@seznam.cz")
    known_kinds, known_jobs = sign_up_and_watch(client, KNOWN)
    assert new_jobs == known_jobs == ["workers.mail.send_outgoing"]
    assert new_kinds == known_kinds
