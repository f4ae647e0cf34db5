"""Races in the delivery engine, made deterministic by ordering, never by sleeping.

Real parts throughout: the RQ worker (burst mode, in this process), Redis, the
aiosmtpd sink, SQLite and PostgreSQL. The other party of each race (an editor
cancelling through the API, a second worker taking a batch over) acts at a
chosen point of the first one's work: a hook on a function boundary, or the
SMTP sink's answer to the n-th message. Where the lease must run out, the
delivery engine's clock is moved forward instead of waiting for it.

- a cancel racing the fan-out: nobody is mailed after it, and the counts say
  how many were cancelled;
- a lost batch lease: another worker finishes the batch, nobody is lost, and
  the first worker stops without sending on;
- a batch handed back (an unexpected error, a pause raced by a resume): it is
  finished later with nobody lost and nobody mailed twice.
"""

from __future__ import annotations

import collections
import contextlib
from datetime import timedelta

import pytest
from sqlalchemy import func, select

import workers.delivery
from service.accounts import create_token
from service.dev.mail_catcher import start_catcher
from service.extensions import db
from service.issues import sending
from service.jobs import BULK_QUEUE, queue
from service.models import Delivery, DeliveryBatch, Issue, MailingList
from tests.conftest import add_confirmed_subscribers, run_jobs
from tests.workers import test_delivery
from workers.delivery import deliver_batch, fan_out
from workers.rate_limit import SendRateLimiter
from workers.reconcile import reconcile
from workers.smtp import SmtpTransport

SUBSCRIBERS = [f"odberatel{n}@example.cz" for n in range(14)]


class HookedCatcher(test_delivery.HookedCatcher):
    """test_delivery's catcher that acts after the n-th message, listing who got mail."""

    def recipients(self) -> list[str]:
        return [rcpt for mail in self.mails for rcpt in mail.rcpt_tos]


@pytest.fixture
def hooked_sink(app):
    """Start a HookedCatcher with `start(after)`; the workers of the test send to it."""
    controllers = []

    def start(after) -> HookedCatcher:
        catcher = HookedCatcher(after)
        controllers.append(start_catcher(catcher))
        app.config["SMTP_URL"] = f"smtp://127.0.0.1:{controllers[-1].port}"
        return catcher

    yield start
    for controller in controllers:
        controller.stop()


@contextlib.contextmanager
def another_process(app):
    """A context of its own (own database session and connection), as the web process
    or a second worker has; used inline, so the order of events is the code's order."""
    with app.app_context():
        try:
            yield
        finally:
            db.session.remove()


def editor_api(app, client, accounts):
    """POST an issue action through the real API as an editor, from another context."""
    token = create_token(accounts.editor)
    db.session.commit()

    def call(method: str, path: str):
        with another_process(app):
            response = client.open(
                path, method=method, headers={"Authorization": f"Bearer {token}"}
            )
        assert response.status_code < 300, response.get_json()
        return response.get_json()

    return call


def make_issue(subscribers: int) -> Issue:
    add_confirmed_subscribers("zpravodaj", subscribers)
    mailing_list = db.session.scalar(select(MailingList).filter_by(slug="zpravodaj"))
    fields, errors = sending.validate_fields("Zpravodaj 12/2026", "Text vydání.", "")
    assert not errors
    issue = sending.create_issue(mailing_list, fields, None)
    db.session.commit()
    return issue


def start_sending(issue: Issue) -> None:
    sending.send_now(issue)
    db.session.commit()


def issue_state(issue_id: int) -> tuple[str, dict]:
    db.session.expire_all()
    issue = db.session.get(Issue, issue_id)
    state = (issue.status, sending.delivery_counts(issue))
    db.session.commit()
    return state


def unfinished_batches(issue_id: int) -> list[str]:
    statuses = db.session.scalars(
        select(DeliveryBatch.status).where(
            DeliveryBatch.issue_id == issue_id, DeliveryBatch.status != "done"
        )
    ).all()
    db.session.commit()
    return list(statuses)


def only_batch(issue_id: int) -> int:
    batch_id = db.session.scalar(select(func.min(Delivery.batch_id)))
    assert db.session.scalar(select(func.count()).select_from(DeliveryBatch)) == 1
    db.session.commit()
    return batch_id


class Clock:
    """The delivery engine's clock, moved forward on demand (leases run out at once)."""

    def __init__(self, monkeypatch) -> None:
        self.offset = timedelta(0)
        real = workers.delivery.utcnow
        monkeypatch.setattr(workers.delivery, "utcnow", lambda: real() + self.offset)

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


def lease_runs_out(app, clock: Clock) -> None:
    clock.advance(timedelta(seconds=app.config["BATCH_LEASE_SECONDS"] + 1))


# --- a cancel racing the fan-out ------------------------------------------------


# The first slice is one chunk; the second slice's chunks are the 2nd and 3rd pages.
@pytest.mark.parametrize("cancel_at_page", [2, 3], ids=["mid-slice", "last-page-of-slice"])
def test_cancel_while_the_fan_out_writes_a_slice_leaves_nobody_pending(
    app, client, accounts, outbox, monkeypatch, cancel_at_page
):
    """The editor cancels while the fan-out is between reading its status and writing
    a batch: that batch is written after the cancel. Only the first slice's batch,
    sent before the cancel, got the mail; everyone else counts as cancelled, and no
    batch is left for a worker or the reconciler."""
    monkeypatch.setattr(workers.delivery, "FAN_OUT_CHUNK_BATCHES", 1)
    monkeypatch.setattr(workers.delivery, "FAN_OUT_CHUNKS_PER_JOB", 2)
    app.config["BATCH_SIZE"] = 3
    api = editor_api(app, client, accounts)
    issue = make_issue(len(SUBSCRIBERS))
    issue_id = issue.id
    pages = []
    real_recipients_query = workers.delivery.recipients_query

    def cancel_during_page(*args, **kwargs):
        pages.append(kwargs.get("after"))
        if len(pages) == cancel_at_page:
            api("POST", f"/api/v1/issues/{issue_id}/cancel")
        return real_recipients_query(*args, **kwargs)

    monkeypatch.setattr(workers.delivery, "recipients_query", cancel_during_page)
    start_sending(issue)
    run_jobs(app)
    assert len(pages) >= cancel_at_page  # the cancel did land inside the fan-out
    reconcile()  # what every worker runs every RECONCILE_INTERVAL: nothing to pick up
    run_jobs(app)

    assert sorted(m.rcpt_tos[0] for m in outbox.mails) == SUBSCRIBERS[:3]
    status, counts = issue_state(issue_id)
    assert status == "cancelled"
    assert counts == {
        "total": 14, "sent": 3, "failed": 0, "pending": 0, "skipped": 0, "cancelled": 11
    }  # fmt: skip
    assert unfinished_batches(issue_id) == []
    reported = api("GET", f"/api/v1/issues/{issue_id}")
    assert reported["status"] == "cancelled"
    assert reported["counts"]["pending"] == 0
    assert reported["counts"]["cancelled"] == 11


def test_cancel_while_a_batch_is_half_sent_and_slices_are_still_queued(
    app, client, accounts, outbox, hooked_sink, monkeypatch
):
    """The cancel arrives at the second message of the first batch, while another batch
    and the fan-out's continuation wait in the queue: the message in flight is the
    last one to go, and the counts say who got it and who was cancelled."""
    monkeypatch.setattr(workers.delivery, "FAN_OUT_CHUNK_BATCHES", 2)
    monkeypatch.setattr(workers.delivery, "FAN_OUT_CHUNKS_PER_JOB", 2)
    app.config["BATCH_SIZE"] = 3
    api = editor_api(app, client, accounts)
    issue = make_issue(len(SUBSCRIBERS))
    issue_id = issue.id

    def cancel_at_the_second_message(n):
        if n == 2:
            api("POST", f"/api/v1/issues/{issue_id}/cancel")

    sink = hooked_sink(cancel_at_the_second_message)
    start_sending(issue)
    run_jobs(app)
    reconcile()
    run_jobs(app)

    assert sink.recipients() == SUBSCRIBERS[:2]
    status, counts = issue_state(issue_id)
    assert status == "cancelled"
    assert counts == {
        "total": 14, "sent": 2, "failed": 0, "pending": 0, "skipped": 0, "cancelled": 12
    }  # fmt: skip


# --- a lost batch lease ---------------------------------------------------------


def test_worker_stalled_before_its_next_claim_loses_the_batch_to_another_worker(
    app, outbox, monkeypatch
):
    """Worker A stalls in the rate limiter past its lease (a long wait, a frozen VM);
    the reconciler hands the batch to worker B, which finishes it. A wakes up, finds
    the batch is no longer its own and stops: everyone got the issue exactly once."""
    app.config.update(BATCH_SIZE=6, SEND_RATE=1000.0)  # the limiter is on, never full
    clock = Clock(monkeypatch)
    issue = make_issue(6)
    start_sending(issue)
    fan_out(issue.id)
    queue(BULK_QUEUE).empty()  # worker A has taken the batch's job
    batch_id = only_batch(issue.id)
    waits = []
    real_wait = SendRateLimiter.wait

    def stall_before_the_third_claim(limiter, domain):
        real_wait(limiter, domain)
        waits.append(domain)
        if len(waits) == 3:
            # A is stuck here longer than its lease: B takes over and finishes.
            lease_runs_out(app, clock)
            with another_process(app):
                assert reconcile()["batches"] == 1
            run_jobs(app)
            assert sorted(r for m in outbox.mails for r in m.rcpt_tos) == SUBSCRIBERS[:6]

    monkeypatch.setattr(SendRateLimiter, "wait", stall_before_the_third_claim)
    assert deliver_batch(batch_id) == "stopped"

    got = collections.Counter(r for m in outbox.mails for r in m.rcpt_tos)
    assert got == collections.Counter(SUBSCRIBERS[:6])  # nobody lost, nobody twice
    status, counts = issue_state(issue.id)
    assert status == "sent"
    assert counts["sent"] == 6 and counts["pending"] == 0
    batch = db.session.get(DeliveryBatch, batch_id)
    assert (batch.status, batch.attempts) == ("done", 2)


def test_worker_that_lost_its_lease_mid_message_stops_at_its_next_heartbeat(
    app, outbox, monkeypatch
):
    """A's SMTP exchange of the third message outlasts its lease and B takes the batch
    over. B cannot know whether that message went out, so it sends it too: the one
    message in flight is the only one that may go twice (DESIGN.md §3). A's heartbeat
    then finds the batch taken and A stops; nobody else is mailed twice or lost."""
    app.config["BATCH_SIZE"] = 6
    clock = Clock(monkeypatch)
    # A heartbeat before every message (instead of every BATCH_LEASE_SECONDS / 6).
    monkeypatch.setattr(workers.delivery, "heartbeat_every", lambda: -1.0)
    issue = make_issue(6)
    start_sending(issue)
    fan_out(issue.id)
    queue(BULK_QUEUE).empty()
    batch_id = only_batch(issue.id)
    sent_by = collections.defaultdict(list)  # owner -> addresses, in order
    real_send_one = workers.delivery.BatchSender._send_one

    def slow_third_message(sender, row):
        real_send_one(sender, row)
        sent_by[sender.owner].append(row.email)
        if len(sent_by) == 1 and len(sent_by[sender.owner]) == 3:  # A's third, once
            lease_runs_out(app, clock)
            with another_process(app):
                assert reconcile()["batches"] == 1
            run_jobs(app)

    monkeypatch.setattr(workers.delivery.BatchSender, "_send_one", slow_third_message)
    assert deliver_batch(batch_id) == "lost lease"

    sent_by_a, sent_by_b = sent_by.values()
    assert (sent_by_a, sent_by_b) == (SUBSCRIBERS[:3], SUBSCRIBERS[2:6])
    got = collections.Counter(r for m in outbox.mails for r in m.rcpt_tos)
    assert got == collections.Counter([*SUBSCRIBERS[:6], SUBSCRIBERS[2]])
    status, counts = issue_state(issue.id)
    assert status == "sent"
    assert counts["sent"] == 6 and counts["pending"] == 0


# --- a batch handed back --------------------------------------------------------


def test_batch_of_a_worker_hit_by_an_unexpected_error_is_handed_back_at_once(
    app, outbox, monkeypatch
):
    """An error the engine does not expect (a bug, the database away) mid-batch: the
    batch is given back at once, not held until its lease runs out, so the reconciler
    re-enqueues it on its next round and the next worker sends only the rest."""
    app.config["BATCH_SIZE"] = 6
    issue = make_issue(6)
    start_sending(issue)
    fan_out(issue.id)
    queue(BULK_QUEUE).empty()
    batch_id = only_batch(issue.id)
    real_send = SmtpTransport.send
    calls = []

    def broken_third_send(transport, *args, **kwargs):
        calls.append(args)
        if len(calls) == 3:
            raise RuntimeError("a bug in the worker")
        return real_send(transport, *args, **kwargs)

    monkeypatch.setattr(SmtpTransport, "send", broken_third_send)
    with pytest.raises(RuntimeError, match="a bug in the worker"):
        deliver_batch(batch_id)
    monkeypatch.setattr(SmtpTransport, "send", real_send)

    batch = db.session.get(DeliveryBatch, batch_id)
    assert (batch.status, batch.owner, batch.heartbeat) == ("queued", None, None)
    db.session.commit()
    assert sorted(r for m in outbox.mails for r in m.rcpt_tos) == SUBSCRIBERS[:2]
    assert reconcile()["batches"] == 1  # no lease to wait out
    run_jobs(app)

    got = collections.Counter(r for m in outbox.mails for r in m.rcpt_tos)
    assert got == collections.Counter(SUBSCRIBERS[:6])
    status, counts = issue_state(issue.id)
    assert status == "sent"
    assert counts["sent"] == 6


def test_batch_handed_back_by_a_pause_that_a_resume_overtook_is_not_forgotten(
    app, client, accounts, hooked_sink, monkeypatch
):
    """The editor pauses and resumes while worker A is between a failed claim and its
    look at why it failed. The resume saw the batch running and did not enqueue it;
    A then hands it back. The reconciler's next round re-enqueues it and the rest go
    out, each once."""
    if db.engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers: a resume cannot commit inside A's claim")
    app.config["BATCH_SIZE"] = 6
    api = editor_api(app, client, accounts)
    issue = make_issue(6)
    issue_id = issue.id
    armed = []

    def pause_at_the_second_message(n):
        if n == 2:
            api("POST", f"/api/v1/issues/{issue_id}/pause")
            armed.append(True)

    real_select = workers.delivery.select

    def resume_after_the_failed_claim(*columns):
        if armed and len(columns) == 1 and columns[0] is Issue.status:
            armed.clear()
            api("POST", f"/api/v1/issues/{issue_id}/resume")
        return real_select(*columns)

    monkeypatch.setattr(workers.delivery, "select", resume_after_the_failed_claim)
    sink = hooked_sink(pause_at_the_second_message)
    start_sending(issue)
    run_jobs(app)

    assert sink.recipients() == SUBSCRIBERS[:2]
    status, counts = issue_state(issue_id)
    assert (status, counts["sent"], counts["pending"]) == ("sending", 2, 4)
    assert unfinished_batches(issue_id) == ["queued"]
    assert reconcile()["batches"] == 1
    run_jobs(app)

    assert collections.Counter(sink.recipients()) == collections.Counter(SUBSCRIBERS[:6])
    status, counts = issue_state(issue_id)
    assert status == "sent"
    assert counts["sent"] == 6
