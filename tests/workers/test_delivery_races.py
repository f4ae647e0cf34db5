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

import asyncio
import collections
import contextlib
import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

import workers.delivery
from service.accounts import create_token
from service.clock import utcnow
from service.dev.mail_catcher import MailCatcher, start_catcher
from service.extensions import db
from service.issues import sending
from service.jobs import BULK_QUEUE, queue
from service.models import Delivery, DeliveryBatch, Issue, MailingList
from tests.conftest import add_confirmed_subscribers, run_jobs
from tests.waiting import wait_for, wait_until
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


def freeze_heartbeats(monkeypatch) -> None:
    """The worker's lease thread (service/lease.py) does not renew within the test: its
    whole process is frozen (a stopped VM), not just waiting on the SMTP server."""
    monkeypatch.setattr(workers.delivery, "heartbeat_every", lambda: 3600.0)


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
    freeze_heartbeats(monkeypatch)
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


def test_worker_frozen_mid_message_past_its_lease_stops_at_its_next_claim(app, outbox, monkeypatch):
    """A's whole process freezes during the third message, past its lease (a slow SMTP
    server alone does not lose it: see the next test), and B takes the batch over. B
    cannot know whether that message went out, so it sends it too: the one message in
    flight is the only one that may go twice, as after a kill (DESIGN.md §3). A wakes,
    records its message, finds the batch taken at its next claim and stops; nobody
    else is mailed twice or lost."""
    app.config["BATCH_SIZE"] = 6
    clock = Clock(monkeypatch)
    freeze_heartbeats(monkeypatch)
    issue = make_issue(6)
    start_sending(issue)
    fan_out(issue.id)
    queue(BULK_QUEUE).empty()
    batch_id = only_batch(issue.id)
    sent_by = collections.defaultdict(list)  # owner -> addresses, in order
    real_send_one = workers.delivery.BatchSender._send_one

    def slow_third_message(sender, row, *rest):
        real_send_one(sender, row, *rest)
        sent_by[sender.owner].append(row.email)
        if len(sent_by) == 1 and len(sent_by[sender.owner]) == 3:  # A's third, once
            lease_runs_out(app, clock)
            with another_process(app):
                assert reconcile()["batches"] == 1
            run_jobs(app)

    monkeypatch.setattr(workers.delivery.BatchSender, "_send_one", slow_third_message)
    assert deliver_batch(batch_id) == "stopped"

    sent_by_a, sent_by_b = sent_by.values()
    assert (sent_by_a, sent_by_b) == (SUBSCRIBERS[:3], SUBSCRIBERS[2:6])
    got = collections.Counter(r for m in outbox.mails for r in m.rcpt_tos)
    assert got == collections.Counter([*SUBSCRIBERS[:6], SUBSCRIBERS[2]])
    status, counts = issue_state(issue.id)
    assert status == "sent"
    assert counts["sent"] == 6 and counts["pending"] == 0


# --- a slow SMTP server and the lease -------------------------------------------


class HoldingSink(MailCatcher):
    """Holds its answer to the n-th message until the test releases it: a worker is
    then inside one SMTP exchange for as long as the test needs, with no clock."""

    def __init__(self, nth: int) -> None:
        super().__init__()
        self.nth = nth
        self.seen = 0
        self.holding = threading.Event()
        self.released = threading.Event()
        self.late_answer: str | None = None  # None: keep the message and accept it

    async def handle_DATA(self, server, session, envelope):
        self.seen += 1
        if self.seen != self.nth:
            return await super().handle_DATA(server, session, envelope)
        self.holding.set()
        await asyncio.get_running_loop().run_in_executor(None, self.released.wait, 60)
        if self.late_answer is not None:
            return self.late_answer
        return await super().handle_DATA(server, session, envelope)

    def recipients(self) -> list[str]:
        return [rcpt for mail in self.mails for rcpt in mail.rcpt_tos]


@pytest.fixture
def holding_sink(app):
    """Start a HoldingSink with `start(nth)`; the workers of the test send to it."""
    controllers = []

    def start(nth: int) -> HoldingSink:
        catcher = HoldingSink(nth)
        controllers.append(start_catcher(catcher))
        app.config["SMTP_URL"] = f"smtp://127.0.0.1:{controllers[-1].port}"
        return catcher

    yield start
    for controller in controllers:
        controller.stop()


def worker_a(app, batch_id: int) -> tuple[threading.Thread, list]:
    """deliver_batch(batch_id) in a thread with a context of its own; its result
    (or exception) lands in the returned list."""
    outcome: list = []

    def run() -> None:
        with another_process(app):
            try:
                outcome.append(deliver_batch(batch_id))
            except Exception as exc:
                outcome.append(exc)

    thread = threading.Thread(target=run, name="worker-a", daemon=True)
    thread.start()
    return thread, outcome


def heartbeat_of(batch_id: int):
    db.session.expire_all()
    heartbeat = db.session.scalar(
        select(DeliveryBatch.heartbeat).where(DeliveryBatch.id == batch_id)
    )
    db.session.commit()
    return heartbeat


def make_the_lease_look_expired(app, batch_id: int) -> datetime:
    """Set the batch's heartbeat far into the past, as if its worker had died."""
    stale = utcnow() - timedelta(seconds=10 * app.config["BATCH_LEASE_SECONDS"])
    test_delivery._sql_on_the_side(
        app, "UPDATE delivery_batch SET heartbeat = :stale WHERE id = :id", stale=stale,
        id=batch_id,
    )  # fmt: skip
    return stale


def test_send_that_outlasts_the_lease_keeps_its_batch_and_nobody_gets_it_twice(app, holding_sink):
    """The SMTP server takes longer over A's third message than the batch lease (it
    may take SMTP_DATA_TIMEOUT, 10 minutes, to answer a whole message). A's lease
    thread renews the heartbeat meanwhile: the reconciler leaves the batch alone and a
    second worker's job for it skips it, so the message A is sending is not sent again
    by B. Before the lease thread, the heartbeat stood still during the exchange and B
    took over and sent that message a second time."""
    app.config.update(BATCH_SIZE=6, BATCH_LEASE_SECONDS=6)  # renewed every second
    sink = holding_sink(nth=3)
    issue = make_issue(6)
    start_sending(issue)
    fan_out(issue.id)
    queue(BULK_QUEUE).empty()  # worker A has taken the batch's job
    batch_id = only_batch(issue.id)
    thread, outcome = worker_a(app, batch_id)
    try:
        wait_until(sink.holding.is_set, "A to be inside its third SMTP exchange")
        stale = make_the_lease_look_expired(app, batch_id)
        # A live holder renews it; before the fix nothing did (then B takes over below).
        renewed = wait_for(lambda: heartbeat_of(batch_id) > stale, timeout=15)
        with another_process(app):
            reenqueued = reconcile()["batches"]
        with another_process(app):
            b_result = deliver_batch(batch_id)  # worker B, with a job for the same batch
    finally:
        sink.released.set()
        thread.join(60)

    got = collections.Counter(sink.recipients())
    assert got == collections.Counter(SUBSCRIBERS[:6]), "nobody lost, nobody twice"
    assert renewed, "the heartbeat stood still while A waited on the SMTP server"
    assert (reenqueued, b_result, outcome) == (0, "skipped", ["done"])
    status, counts = issue_state(issue.id)
    assert status == "sent"
    assert counts["sent"] == 6 and counts["pending"] == 0


def test_batch_lease_is_kept_while_the_issue_s_skeleton_is_rendered(app, outbox, monkeypatch):
    """Rendering the issue (a large one, with attachments, on a loaded machine) may take
    longer than the lease: the lease thread runs from the claim on, so the reconciler
    leaves the batch alone meanwhile. Before, it started only after the rendering and
    the batch's first reads, and a stale-looking batch was given to a second worker."""
    app.config.update(BATCH_SIZE=6, BATCH_LEASE_SECONDS=6)  # renewed every second
    issue = make_issue(3)
    start_sending(issue)
    fan_out(issue.id)
    queue(BULK_QUEUE).empty()
    batch_id = only_batch(issue.id)
    render = workers.delivery.skeleton_for
    seen: list = []

    def slow_render(*args, **kwargs):
        stale = make_the_lease_look_expired(app, batch_id)
        seen.append(wait_for(lambda: heartbeat_of(batch_id) > stale, timeout=15))
        return render(*args, **kwargs)

    monkeypatch.setattr(workers.delivery, "skeleton_for", slow_render)
    workers.delivery._skeletons.clear()  # rendered anew, as in a fresh work horse
    assert deliver_batch(batch_id) == "done"
    assert seen == [True], "the heartbeat stood still while the skeleton was rendered"
    assert sorted(m.rcpt_tos[0] for m in outbox.mails) == SUBSCRIBERS[:3]


def test_worker_whose_batch_was_taken_stops_when_its_lease_thread_finds_out(
    app, holding_sink, monkeypatch
):
    """While A waits on the server, another worker takes the batch (here: an UPDATE of
    its owner). A's lease thread finds the batch no longer A's; A records the message
    it sent and stops before the next one, leaving the rest to the new owner."""
    app.config.update(BATCH_SIZE=6, BATCH_LEASE_SECONDS=6)  # renewed every second
    renewals: list[bool] = []
    real_renewal = workers.delivery._BatchHeartbeat.__call__

    def noted_renewal(heartbeat):
        renewals.append(real_renewal(heartbeat))
        return renewals[-1]

    monkeypatch.setattr(workers.delivery._BatchHeartbeat, "__call__", noted_renewal)
    sink = holding_sink(nth=3)
    issue = make_issue(6)
    start_sending(issue)
    fan_out(issue.id)
    queue(BULK_QUEUE).empty()
    batch_id = only_batch(issue.id)
    thread, outcome = worker_a(app, batch_id)
    try:
        wait_until(sink.holding.is_set, "A to be inside its third SMTP exchange")
        test_delivery._sql_on_the_side(
            app, "UPDATE delivery_batch SET owner = 'worker-b' WHERE id = :id", id=batch_id
        )
        wait_until(lambda: False in renewals, "A's lease thread to find the batch taken")
    finally:
        sink.released.set()
        thread.join(60)

    assert outcome == ["lost lease"]
    assert sink.recipients() == SUBSCRIBERS[:3]
    db.session.expire_all()
    statuses = db.session.scalars(
        select(Delivery.status).where(Delivery.batch_id == batch_id).order_by(Delivery.id)
    ).all()
    assert statuses == ["sent"] * 3 + ["pending"] * 3  # the third recorded, no fourth sent


def test_late_refusal_of_a_frozen_worker_does_not_undo_the_new_holders_record(
    app, holding_sink, monkeypatch
):
    """A's process freezes inside its third SMTP exchange past the lease; B takes the
    batch over, sends every message and records them. Then A's server finally says
    "try later" (451) about that message. A must not record it as pending again over
    B's "sent" (the message would be sent a third time, and the counts go wrong)."""
    app.config["BATCH_SIZE"] = 6
    freeze_heartbeats(monkeypatch)
    sink = holding_sink(nth=3)
    issue = make_issue(6)
    start_sending(issue)
    fan_out(issue.id)
    queue(BULK_QUEUE).empty()
    batch_id = only_batch(issue.id)
    thread, outcome = worker_a(app, batch_id)
    try:
        wait_until(sink.holding.is_set, "A to be inside its third SMTP exchange")
        make_the_lease_look_expired(app, batch_id)
        with another_process(app):
            assert deliver_batch(batch_id) == "done"  # B, which sends all six
        sink.late_answer = "451 4.3.0 Try again later"
    finally:
        sink.released.set()
        thread.join(60)

    assert outcome == ["stopped"]  # A's next claim found the batch taken
    assert collections.Counter(sink.recipients()) == collections.Counter(SUBSCRIBERS[:6])
    status, counts = issue_state(issue.id)
    assert status == "sent"
    assert counts["sent"] == 6 and counts["pending"] == 0
    db.session.expire_all()
    statuses = db.session.scalars(select(Delivery.status).where(Delivery.batch_id == batch_id))
    assert collections.Counter(statuses) == {"sent": 6}


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
