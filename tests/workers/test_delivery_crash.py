"""kill -9 a real worker process mid-issue: a new worker finishes it by itself.

Real processes (`python -m service worker`), a real Redis and a real SMTP
sink on loopback; the only shortened setting is the lease (how long a
silent batch stays claimed), so the test runs in seconds, not minutes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from sqlalchemy import func, select

from service.dev.mail_catcher import MailCatcher, start_catcher
from service.extensions import db
from service.issues import sending
from service.jobs import redis_connection
from service.models import Delivery, DeliveryBatch, Issue, MailingList, Subscriber
from tests.conftest import add_confirmed_subscribers
from tests.deliverability.keys import dkim_settings
from tests.waiting import wait_until
from tests.workers.test_outgoing_mail import worker_env

RECIPIENTS = 300


class SlowSink(MailCatcher):
    """Keeps every mail, then takes a while to answer: many messages are in flight over time."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.received = threading.Condition()

    async def handle_DATA(self, server, session, envelope):
        answer = await super().handle_DATA(server, session, envelope)
        with self.received:
            self.received.notify_all()
        await asyncio.sleep(self.delay)
        return answer

    def wait_for(self, count: int, timeout: float) -> bool:
        with self.received:
            return self.received.wait_for(lambda: len(self.mails) >= count, timeout)


def start_worker(app, smtp_url: str, log: Path | None = None, **settings: str) -> subprocess.Popen:
    """A real worker process with short leases and timeouts; its stderr to `log` if given."""
    env = worker_env(app, smtp_url)
    env.update(BATCH_SIZE="50", BATCH_LEASE_SECONDS="3", SMTP_TIMEOUT="2", RECONCILE_INTERVAL="1")
    env.update(settings)
    return subprocess.Popen(
        [sys.executable, "-m", "service", "worker"],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb") if log is not None else subprocess.DEVNULL,
    )


def stop(worker: subprocess.Popen, sig=signal.SIGKILL) -> None:
    """Stop a worker with `sig`. A warm shutdown (SIGTERM) lets the batch in hand
    finish, which can take long on a loaded machine; how it stops is not what these
    tests check, so after a minute it is killed rather than failing the test.

    SIGKILL goes to its work horse too: RQ puts the horse in a process group of its
    own (`os.setpgrp`), so killing the worker's group leaves the horse sending."""
    if worker.poll() is None:
        horses = work_horses(worker.pid) if sig == signal.SIGKILL else []
        os.killpg(worker.pid, sig)
        for horse in horses:
            with contextlib.suppress(ProcessLookupError):
                os.kill(horse, signal.SIGKILL)
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(60)


def work_horses(pid: int) -> list[int]:
    """The worker's children: its work horse while it runs a job."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in children.split()]


def issue_status(issue_id: int) -> str:
    db.session.expire_all()
    status = db.session.scalar(select(Issue.status).where(Issue.id == issue_id))
    db.session.commit()
    return status


def start_issue() -> int:
    add_confirmed_subscribers("zpravodaj", RECIPIENTS)
    mailing_list = db.session.scalar(select(MailingList).filter_by(slug="zpravodaj"))
    fields, _ = sending.validate_fields("Zpravodaj 12/2026", "Text vydání.", "")
    issue = sending.create_issue(mailing_list, fields, None)
    db.session.commit()
    sending.send_now(issue)
    db.session.commit()
    return issue.id


def wait_until_sent(issue_id: int, what: str, timeout: float) -> None:
    wait_until(lambda: issue_status(issue_id) == "sent", what, timeout=timeout, interval=0.3)


def assert_everyone_once_at_most_one_twice(mails) -> None:
    got = collections.Counter(r for m in mails for r in m.rcpt_tos)
    assert set(got) == {f"odberatel{n}@example.cz" for n in range(RECIPIENTS)}, "somebody lost"
    twice = [address for address, n in got.items() if n > 1]
    assert len(twice) <= 1, f"sent twice: {twice}"
    assert max(got.values()) <= 2


def test_worker_killed_mid_issue_a_new_worker_completes_it(app):
    sink = SlowSink(delay=0.01)
    controller = start_catcher(sink)
    smtp_url = f"smtp://127.0.0.1:{controller.port}"
    try:
        issue_id = start_issue()
        first = start_worker(app, smtp_url)
        try:
            assert sink.wait_for(60, timeout=60), "the first worker never got going"
        finally:
            stop(first)  # kill -9 the worker and its work horse, mid-batch
        sent_before = len(sink.mails)
        assert sent_before < RECIPIENTS
        assert issue_status(issue_id) == "sending"

        second = start_worker(app, smtp_url)
        try:
            wait_until_sent(issue_id, "the issue to complete by itself", timeout=120)
        finally:
            stop(second, signal.SIGTERM)
    finally:
        controller.stop()
    assert_everyone_once_at_most_one_twice(sink.mails)


class KillingSink(MailCatcher):
    """At the `at`-th message's end of DATA, before answering it, kills -9 `worker`
    and its work horse: the worker is then between that message's final dot and
    its answer (where a worker might do the next copy's work meanwhile)."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at
        self.worker: subprocess.Popen | None = None
        self.killed_at: str | None = None

    async def handle_DATA(self, server, session, envelope):
        answer = await super().handle_DATA(server, session, envelope)
        if len(self.mails) == self.at and self.worker is not None:
            stop(self.worker)
            [self.killed_at] = envelope.rcpt_tos
        return answer


def test_worker_killed_between_a_dot_and_its_answer_leaves_that_message_alone_in_flight(app):
    """DKIM on: kill -9 while the server holds the 20th message's answer. The
    database says the 20th "sending", all before it "sent", the 21st "pending"
    (never claimed); a new worker sends the rest, and only the 20th may arrive
    twice."""
    sink = KillingSink(at=20)
    controller = start_catcher(sink)
    smtp_url = f"smtp://127.0.0.1:{controller.port}"
    try:
        issue_id = start_issue()
        sink.worker = start_worker(app, smtp_url, **dkim_settings())
        try:
            wait_until(lambda: sink.killed_at, "the kill at the 20th message", interval=0.1)
        finally:
            stop(sink.worker)
        db.session.expire_all()
        statuses = {
            address: status
            for address, status in db.session.execute(
                select(Subscriber.email, Delivery.status)
                .join(Delivery, Delivery.subscriber_id == Subscriber.id)
                .order_by(Delivery.id)
            )
        }
        db.session.commit()
        order = list(statuses)
        at = order.index(sink.killed_at)
        assert at == 19
        assert statuses[sink.killed_at] == "sending"
        assert {statuses[address] for address in order[:at]} == {"sent"}
        assert {statuses[address] for address in order[at + 1 :]} == {"pending"}

        second = start_worker(app, smtp_url, **dkim_settings())
        try:
            wait_until_sent(issue_id, "the issue to complete by itself", timeout=120)
        finally:
            stop(second, signal.SIGTERM)
    finally:
        controller.stop()
    assert_everyone_once_at_most_one_twice(sink.mails)
    got = collections.Counter(r for m in sink.mails for r in m.rcpt_tos)
    assert {address for address, n in got.items() if n > 1} <= {sink.killed_at}


def test_redis_flushed_while_workers_send_loses_nothing(app):
    sink = SlowSink(delay=0.005)
    controller = start_catcher(sink)
    smtp_url = f"smtp://127.0.0.1:{controller.port}"
    try:
        issue_id = start_issue()
        worker = start_worker(app, smtp_url)
        try:
            assert sink.wait_for(40, timeout=60)
            redis_connection().flushdb()  # queued batch jobs and the worker's own keys vanish
            wait_until_sent(issue_id, "the issue to complete by itself", timeout=120)
        finally:
            stop(worker, signal.SIGTERM)
    finally:
        controller.stop()
    assert_everyone_once_at_most_one_twice(sink.mails)


def most_tries_of_a_batch(issue_id: int) -> int:
    db.session.expire_all()
    tries = db.session.scalar(
        select(func.max(DeliveryBatch.attempts)).where(DeliveryBatch.issue_id == issue_id)
    )
    db.session.commit()
    return tries or 0


def test_mail_server_down_then_back_the_issue_resumes_by_itself(app):
    """No operator action: RQ's Retry and the reconciler keep trying until the server is back."""
    from service.dev.processes import free_port

    port = free_port("127.0.0.1")  # nothing listens here yet
    issue_id = start_issue()
    worker = start_worker(
        app, f"smtp://127.0.0.1:{port}", MAIL_RETRY_INTERVALS="1,2", SMTP_TIMEOUT="1"
    )
    sink = SlowSink(delay=0)
    controller = None
    try:
        # The first try and both of RQ's retries (after 1 s and 2 s) of a batch were refused.
        wait_until(
            lambda: most_tries_of_a_batch(issue_id) >= 3, "the worker's retries", interval=0.3
        )
        db.session.expire_all()
        errors = set(
            db.session.scalars(
                select(DeliveryBatch.last_error).where(
                    DeliveryBatch.issue_id == issue_id,
                    DeliveryBatch.attempts > 0,
                    DeliveryBatch.status == "queued",  # tried and handed back, not in a try now
                )
            )
        )
        db.session.commit()
        assert errors and all(e.startswith(f"cannot connect to 127.0.0.1:{port}") for e in errors)
        assert issue_status(issue_id) == "sending"
        controller = start_catcher(sink, port=port)  # the server is back
        wait_until_sent(issue_id, "the issue to resume by itself", timeout=120)
    finally:
        stop(worker, signal.SIGTERM)
        if controller is not None:
            controller.stop()
    # Refused connections leave no message in flight: everyone gets it exactly once. The
    # 1 s SMTP_TIMEOUT is not how long the worker waits for the sink's answer to a whole
    # message (SMTP_DATA_TIMEOUT): when it was, a sink slowed down by a loaded machine
    # had its message sent again, and one recipient got the issue twice.
    got = collections.Counter(r for m in sink.mails for r in m.rcpt_tos)
    assert got == collections.Counter(f"odberatel{n}@example.cz" for n in range(RECIPIENTS))
    db.session.expire_all()
    statuses = db.session.scalars(select(Delivery.status).where(Delivery.issue_id == issue_id))
    assert collections.Counter(statuses) == {"sent": RECIPIENTS}
