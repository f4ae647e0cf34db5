"""The per-message claim overlapping the SMTP exchange, seen from the SMTP server.

On PostgreSQL the worker sends the statement that records message N-1 as sent
and claims message N, and does N's envelope (MAIL FROM, RCPT TO) while the
database runs and commits it; it waits for the result before DATA. These tests
watch from the sink (aiosmtpd, real database, real worker) that:

- when the server has a whole message (its end of DATA), the database already
  says the previous one was sent and this one is claimed;
- a claim that fails while the envelope is out (an unsubscribe, a pause, the
  recipient's server refusing the address of someone who just left) ends in
  RSET: the server never gets that message, and no refusal is recorded.

On SQLite the claim still runs before any SMTP (no round trip to overlap), and
the same tests hold there.

Between a message's final dot and the server's answer to it, the worker
composes and DKIM-signs the next message (CPU work only; its claim still comes
after the answer, in the next statement). The tests with `signatures` watch
that from the sink too: the next message is signed while this one's answer is
held back, and the database still says this one "sending", the next "pending".
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import create_engine, func, select, text

import workers.delivery
import workers.pg_claims
from service.deliverability.dkim import DkimError, DkimSigner
from service.dev.mail_catcher import MailCatcher, start_catcher
from service.extensions import db
from service.issues import sending
from service.models import Bounce, Delivery, DeliveryBatch, Issue
from tests.conftest import add_confirmed_subscribers, run_jobs
from tests.deliverability.keys import dkim_settings
from tests.waiting import TIMEOUT
from tests.workers.test_delivery import _sql_on_the_side, make_issue, send

ADDRESSES = [f"odberatel{n}@example.cz" for n in range(8)]


class WatchingCatcher(MailCatcher):
    """Logs the SMTP commands of each transaction and, at each message's end of DATA
    (before answering it), the statuses of the issue's deliveries, read on a
    connection of its own; `after(n)` then acts after the n-th message."""

    def __init__(self, database_url: str, after=None) -> None:
        super().__init__()
        self.engine = create_engine(database_url)
        self.after = after
        self.issue_id: int | None = None
        self.events: list[tuple[str, str]] = []
        self.statuses_at_data: list[tuple[str, dict[str, str]]] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.events.append(("RCPT", address))
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_RSET(self, server, session, envelope):
        self.events.append(("RSET", ""))
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        [recipient] = envelope.rcpt_tos
        self.events.append(("DATA", recipient))
        with self.engine.connect() as connection:
            statuses = dict(
                connection.execute(
                    text(
                        "SELECT s.email, d.status FROM delivery d"
                        " JOIN subscriber s ON s.id = d.subscriber_id WHERE d.issue_id = :issue"
                    ),
                    {"issue": self.issue_id},
                ).all()
            )
        self.statuses_at_data.append((recipient, statuses))
        answer = await super().handle_DATA(server, session, envelope)
        if self.after is not None:
            self.after(len(self.mails))
        return answer

    def recipients(self) -> list[str]:
        return [rcpt for mail in self.mails for rcpt in mail.rcpt_tos]


@pytest.fixture
def watching_sink(app):
    """Start a WatchingCatcher with `start(after)`; the workers of the test send to it."""
    started = []

    def start(after=None) -> WatchingCatcher:
        catcher = WatchingCatcher(app.config["SQLALCHEMY_DATABASE_URI"], after)
        controller = start_catcher(catcher)
        started.append((catcher, controller))
        app.config["SMTP_URL"] = f"smtp://127.0.0.1:{controller.port}"
        return catcher

    yield start
    for catcher, controller in started:
        controller.stop()
        catcher.engine.dispose()


class Signatures:
    """Counts the DKIM signatures the worker makes, in order, and lets another thread
    (the sink's) wait for a count. `fail_at` makes that signature (1-based) fail."""

    def __init__(self) -> None:
        self.count = 0
        self.fail_at: int | None = None
        self.changed = threading.Condition()
        self.timed_out = False

    def wait_for(self, count: int) -> bool:
        """Whether `count` signatures are made; after one wait in vain, no more waits
        (with the old order each would hold the worker's answer for the whole wait)."""
        if self.timed_out:
            return False
        with self.changed:
            done = self.changed.wait_for(lambda: self.count >= count, TIMEOUT)
        self.timed_out = not done
        return done


@pytest.fixture
def signatures(app, monkeypatch) -> Signatures:
    """DKIM on for the test's workers (in this process), every signature counted."""
    app.config.update(dkim_settings())
    watched = Signatures()
    real_call = DkimSigner.__call__

    def counted(signer, raw):
        with watched.changed:
            watched.count += 1
            number = watched.count
            watched.changed.notify_all()
        if number == watched.fail_at:
            raise DkimError("this copy cannot be signed")
        return real_call(signer, raw)

    monkeypatch.setattr(DkimSigner, "__call__", counted)
    return watched


def is_postgresql() -> bool:
    return db.engine.dialect.name == "postgresql"


def statuses() -> dict[str, str]:
    db.session.expire_all()
    rows = db.session.execute(
        text("SELECT s.email, d.status FROM delivery d JOIN subscriber s ON s.id = d.subscriber_id")
    ).all()
    db.session.commit()
    return dict(rows)


def test_at_each_end_of_data_the_previous_message_is_recorded_and_this_one_claimed(
    app, watching_sink
):
    """Three batches chained in one job: at every message's final dot the database
    says sent for everyone mailed before and sending for this one, so a worker
    killed at that moment leaves at most this one to be sent again."""
    app.config["BATCH_SIZE"] = 3
    add_confirmed_subscribers("zpravodaj", 8)
    catcher = watching_sink()
    issue = make_issue()
    catcher.issue_id = issue.id
    send(issue)
    run_jobs(app)

    assert sorted(catcher.recipients()) == ADDRESSES
    assert db.session.scalar(select(func.count()).select_from(DeliveryBatch)) == 3
    mailed_before: list[str] = []
    for recipient, seen in catcher.statuses_at_data:
        assert seen[recipient] == "sending", (recipient, seen)
        assert {seen[earlier] for earlier in mailed_before} <= {"sent"}, (recipient, seen)
        assert {
            status for address, status in seen.items() if address not in {*mailed_before, recipient}
        } <= {"pending"}, (recipient, seen)
        mailed_before.append(recipient)
    assert set(statuses().values()) == {"sent"}


def refuse_and_unsubscribe(app, catcher: WatchingCatcher, subscriber_id: int) -> None:
    """The recipient's server refuses the third address for good, and its owner
    unsubscribes while the second message is being accepted."""
    catcher.reject_rcpt[ADDRESSES[2]] = (550, "no such user")
    _sql_on_the_side(
        app, "UPDATE subscription SET status='unsubscribed' WHERE subscriber_id=:s",
        s=subscriber_id,
    )  # fmt: skip


@pytest.mark.parametrize("change", ["unsubscribe", "pause", "refused-and-unsubscribed"])
def test_a_claim_that_fails_while_the_envelope_is_out_ends_in_rset(app, watching_sink, change):
    """The change lands while the second message is at its end of DATA: the worker's
    next statement (record the second, claim the third) fails. On PostgreSQL the
    third envelope is out by the time the worker knows, so it resets the
    transaction before DATA; on SQLite no envelope goes out. Either way the server
    never gets the third message, and a refusal of someone no longer subscribed
    is not recorded as a bounce."""
    app.config["BATCH_SIZE"] = 8
    ids = add_confirmed_subscribers("zpravodaj", 8)
    issue = make_issue()
    issue_id = issue.id

    def act(n: int) -> None:
        if n != 2:
            return
        if change == "pause":
            _sql_on_the_side(app, "UPDATE issue SET status='paused' WHERE id=:i", i=issue_id)
        elif change == "unsubscribe":
            _sql_on_the_side(
                app, "UPDATE subscription SET status='unsubscribed' WHERE subscriber_id=:s",
                s=ids[2],
            )  # fmt: skip
        else:
            refuse_and_unsubscribe(app, catcher, ids[2])

    catcher = watching_sink(act)
    catcher.issue_id = issue_id
    send(issue)
    run_jobs(app)

    third = ADDRESSES[2]
    assert ("DATA", third) not in catcher.events
    third_envelope = [i for i, event in enumerate(catcher.events) if event == ("RCPT", third)]
    if is_postgresql():
        [at] = third_envelope  # sent while the claim ran, then withdrawn
        assert catcher.events[at + 1] == ("RSET", "")
    else:
        assert third_envelope == []  # the claim failed before any SMTP
    final = statuses()
    if change == "pause":
        assert catcher.recipients() == ADDRESSES[:2]
        assert final[ADDRESSES[1]] == "sent"
        assert {final[address] for address in ADDRESSES[2:]} == {"pending"}
        batch = db.session.scalars(select(DeliveryBatch)).one()
        assert (batch.status, batch.owner) == ("queued", None)
        db.session.commit()
        # Resumed, the batch sends the rest on the same terms.
        sending.resume(db.session.get_one(Issue, issue_id))
        db.session.commit()
        run_jobs(app)
        assert sorted(catcher.recipients()) == ADDRESSES
    else:
        assert sorted(catcher.recipients()) == [a for a in ADDRESSES if a != third]
        assert final[third] == "skipped"
        assert db.session.scalar(select(func.count()).select_from(Bounce)) == 0
        assert db.session.scalar(
            select(Delivery.last_error).where(Delivery.subscriber_id == ids[2])
        ) in ("unsubscribed", "no longer subscribed")
    db.session.commit()
    assert db.session.get_one(Issue, issue_id).status == "sent"


def test_claim_statement_deallocated_under_the_worker_is_prepared_again(
    app, watching_sink, monkeypatch
):
    """psycopg runs DEALLOCATE ALL on a connection after a ROLLBACK or a DROP when it
    has prepared statements of its own, which takes the overlapped claim's statement
    with them: the claim then fails before running anything, and is prepared and
    sent again; nobody is lost or mailed twice."""
    if not is_postgresql():
        pytest.skip("SQLite has no prepared statements on the server")
    app.config["BATCH_SIZE"] = 8
    add_confirmed_subscribers("zpravodaj", 8)
    catcher = watching_sink()
    issue = make_issue()
    catcher.issue_id = issue.id
    real_send = workers.pg_claims.ClaimsInFlight.send
    sends: list[int] = []

    def send_after_a_deallocate(claims, params):
        sends.append(params["claim_id"])
        if len(sends) in (3, 6):
            claims.pgconn.exec_(b"DEALLOCATE ALL")
        return real_send(claims, params)

    monkeypatch.setattr(workers.pg_claims.ClaimsInFlight, "send", send_after_a_deallocate)
    send(issue)
    run_jobs(app)

    assert len(sends) >= 10  # eight claims and the two sent again
    assert sorted(catcher.recipients()) == ADDRESSES
    assert set(statuses().values()) == {"sent"}


def test_a_wait_cut_short_leaves_the_statement_to_drain_not_to_the_pool(app, monkeypatch):
    """An exception in the middle of the wait (a signal's, say) must not mark the
    statement done: `drain` then reads its result, and the connection is clean for
    whatever runs on it next."""
    if not is_postgresql():
        pytest.skip("SQLite runs the statement at once")

    class Probe(workers.pg_claims.ClaimsInFlight):
        NAME = b"zpravodaj_test_probe"  # not the pooled connection's own statement

    # The statement waits on a lock another connection holds, so it is still running
    # when the wait is cut short, however slow the machine.
    with db.engine.connect() as holder, db.engine.connect() as connection:
        holder.exec_driver_sql("SELECT pg_advisory_lock(4242)")
        pgconn = connection.connection.driver_connection.pgconn
        claims = Probe(pgconn, "SELECT :sent_id FROM (SELECT pg_advisory_xact_lock(4242)) AS held")
        claims.prepare()
        claims.send({"sent_id": 7})
        real_wait_for = workers.pg_claims.wait_for

        def interrupted(fd: int, events: int) -> int:
            monkeypatch.setattr(workers.pg_claims, "wait_for", real_wait_for)
            raise KeyboardInterrupt

        monkeypatch.setattr(workers.pg_claims, "wait_for", interrupted)
        with pytest.raises(KeyboardInterrupt):
            claims.drain()  # waits for the statement: cut short at once
        assert claims.in_flight
        holder.exec_driver_sql("SELECT pg_advisory_unlock(4242)")
        claims.drain()
        assert not claims.in_flight
        assert connection.exec_driver_sql("SELECT 1").scalar() == 1
        connection.exec_driver_sql(f"DEALLOCATE {claims.NAME.decode()}")


def test_the_next_message_is_signed_while_the_server_holds_this_ones_answer(
    app, watching_sink, signatures
):
    """At each message's end of DATA the sink holds its answer back until the worker
    has signed the next message: it does (it composes the next copy between the dot
    and the answer, where it used to wait idle), and at that moment the database
    still says this message "sending" and the next "pending": the next one's claim
    comes only after this answer, so a pause or an unsubscribe landing now still
    stops it, and a kill -9 now leaves only this one in flight."""
    app.config["BATCH_SIZE"] = 8
    add_confirmed_subscribers("zpravodaj", 8)
    seen: list[tuple[int, bool, dict[str, str]]] = []

    def hold_the_answer(n: int) -> None:
        if n < len(ADDRESSES):
            signed = signatures.wait_for(n + 1)
            seen.append((n, signed, statuses_on_the_side(catcher)))

    catcher = watching_sink(hold_the_answer)
    issue = make_issue()
    catcher.issue_id = issue.id
    send(issue)
    run_jobs(app)

    assert sorted(catcher.recipients()) == ADDRESSES
    assert [n for n, signed, _ in seen if not signed] == []
    for n, _, statuses_then in seen:
        this, following = ADDRESSES[n - 1], ADDRESSES[n]
        assert statuses_then[this] == "sending", (n, statuses_then)
        assert statuses_then[following] == "pending", (n, statuses_then)
        assert {statuses_then[a] for a in ADDRESSES[: n - 1]} <= {"sent"}, (n, statuses_then)
    assert signatures.count == 8  # each copy signed once
    assert set(statuses().values()) == {"sent"}


def statuses_on_the_side(catcher: WatchingCatcher) -> dict[str, str]:
    """The issue's delivery statuses, read on the sink's own connection."""
    with catcher.engine.connect() as connection:
        return dict(
            connection.execute(
                text(
                    "SELECT s.email, d.status FROM delivery d"
                    " JOIN subscriber s ON s.id = d.subscriber_id WHERE d.issue_id = :issue"
                ),
                {"issue": catcher.issue_id},
            ).all()
        )


@pytest.mark.parametrize("change", ["unsubscribe", "pause"])
def test_a_change_after_the_next_message_is_signed_still_stops_it(
    app, watching_sink, signatures, change
):
    """The unsubscribe or pause lands at the second message's end of DATA, once the
    worker has composed and signed the third: the third's claim (after the second's
    answer) fails, and the server never gets the third message."""
    app.config["BATCH_SIZE"] = 8
    ids = add_confirmed_subscribers("zpravodaj", 8)
    issue = make_issue()
    issue_id = issue.id
    signed_before_the_change: list[bool] = []

    def act(n: int) -> None:
        if n != 2:
            return
        signed_before_the_change.append(signatures.wait_for(3))
        if change == "pause":
            _sql_on_the_side(app, "UPDATE issue SET status='paused' WHERE id=:i", i=issue_id)
        else:
            _sql_on_the_side(
                app, "UPDATE subscription SET status='unsubscribed' WHERE subscriber_id=:s",
                s=ids[2],
            )  # fmt: skip

    catcher = watching_sink(act)
    catcher.issue_id = issue_id
    send(issue)
    run_jobs(app)

    assert signed_before_the_change == [True]
    third = ADDRESSES[2]
    assert ("DATA", third) not in catcher.events
    final = statuses()
    assert final[ADDRESSES[1]] == "sent"
    if change == "pause":
        assert catcher.recipients() == ADDRESSES[:2]
        assert {final[address] for address in ADDRESSES[2:]} == {"pending"}
    else:
        assert sorted(catcher.recipients()) == [a for a in ADDRESSES if a != third]
        assert final[third] == "skipped"


def test_a_signing_failure_of_the_next_message_is_that_messages_own(app, watching_sink, signatures):
    """The third copy cannot be signed: the error, met while the server digested the
    second, is the third's alone (recorded failed in its turn); the second is
    recorded sent and mailed once, and the rest go on."""
    app.config["BATCH_SIZE"] = 8
    add_confirmed_subscribers("zpravodaj", 8)
    signatures.fail_at = 3
    catcher = watching_sink()
    issue = make_issue()
    catcher.issue_id = issue.id
    send(issue)
    run_jobs(app)

    third = ADDRESSES[2]
    assert catcher.recipients() == [a for a in ADDRESSES if a != third]
    final = statuses()
    assert final[third] == "failed"
    assert {final[a] for a in ADDRESSES if a != third} == {"sent"}
    assert "DKIM signing failed" in db.session.scalar(
        select(Delivery.last_error).where(Delivery.status == "failed")
    )


def test_a_failure_composing_the_next_message_leaves_this_one_recorded(
    app, watching_sink, monkeypatch
):
    """Composing the third copy fails (a bug, say) while the server digests the
    second: the second's answer is still read and recorded "sent" in the third's
    claim, and the failure stops the batch at the third, which the server never
    gets; nothing is left for a second worker to send twice but the third, which
    was never sent."""
    app.config["BATCH_SIZE"] = 8
    add_confirmed_subscribers("zpravodaj", 8)
    catcher = watching_sink()
    issue = make_issue()
    catcher.issue_id = issue.id
    real_personalise = workers.delivery.MessageSkeleton.personalise

    def personalise(skeleton, recipient, message_id):
        if recipient.address == ADDRESSES[2]:
            raise RuntimeError("cannot compose this copy")
        return real_personalise(skeleton, recipient, message_id)

    monkeypatch.setattr(workers.delivery.MessageSkeleton, "personalise", personalise)
    send(issue)
    run_jobs(app)

    assert catcher.recipients() == ADDRESSES[:2]
    final = statuses()
    assert (final[ADDRESSES[0]], final[ADDRESSES[1]]) == ("sent", "sent")
    assert final[ADDRESSES[2]] in ("sending", "pending")
    assert {final[a] for a in ADDRESSES[3:]} == {"pending"}
