"""Unattended operation: Redis restarted, the SMTP relay away and back, a deploy's SIGTERM.

Real worker processes (`python -m service worker`), a Redis server of this
module's own per test (so it can be killed and started again on the same
port), and an aiosmtpd sink on loopback. Every test waits on conditions (a
row, a mail, a log line, a process exit) with generous deadlines.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from service import worker_status
from service.dev.mail_catcher import MailCatcher, start_catcher
from service.dev.processes import free_port
from service.dev.redis_server import PrivateRedis
from service.extensions import db
from service.jobs import BULK_QUEUE, MAIL_QUEUE, queue, redis_connection
from service.models import DeliveryBatch
from tests.waiting import wait_until
from tests.workers.test_delivery_crash import (
    RECIPIENTS,
    SlowSink,
    issue_status,
    start_issue,
    start_worker,
    wait_until_sent,
)
from tests.workers.test_outgoing_mail import sign_up


class RestartableRedis:
    """A private redis-server that a test can kill and start again, empty, on its port."""

    def __init__(self) -> None:
        self.server = PrivateRedis().start()
        self.port = self.server.port
        self.url = self.server.url

    def kill(self) -> None:
        self.server.kill()

    def restart(self) -> None:
        self.server = PrivateRedis(port=self.port).start()

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def own_redis() -> Iterator[RestartableRedis]:
    server = RestartableRedis()
    yield server
    server.stop()


@pytest.fixture
def redis_url(own_redis) -> str:
    """The app of these tests (and its workers) use the Redis the test may kill."""
    return own_redis.url


def processes_of(pid: int) -> list[int]:
    """`pid` and all its descendants (its work horse has a process group of its own)."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            children[int(fields[1])].append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def terminate_like_systemd(worker: subprocess.Popen) -> None:
    """SIGTERM to every process of the worker, as systemd stops a unit (KillMode=control-group)."""
    for pid in processes_of(worker.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def kill_all(worker: subprocess.Popen) -> None:
    for pid in processes_of(worker.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    worker.wait(60)


def assert_everyone_exactly_once(mails) -> None:
    got = collections.Counter(r for m in mails for r in m.rcpt_tos if r.startswith("odberatel"))
    assert got == collections.Counter(f"odberatel{n}@example.cz" for n in range(RECIPIENTS))


def log_says(path: Path, text: str) -> bool:
    return text in path.read_text(errors="replace")


# --- Redis killed and restarted ------------------------------------------------


def test_redis_killed_and_restarted_mid_issue_the_same_workers_complete_it(
    app, own_redis, tmp_path
):
    sink = SlowSink(delay=0.01)
    controller = start_catcher(sink)
    smtp_url = f"smtp://127.0.0.1:{controller.port}"
    logs = [tmp_path / f"worker{n}.log" for n in range(2)]
    workers = []
    try:
        issue_id = start_issue()
        workers = [start_worker(app, smtp_url, log) for log in logs]
        assert sink.wait_for(60, timeout=60), "the workers never got going"
        own_redis.kill()  # queued batches, RQ's registries and the workers' keys are gone
        try:
            wait_until(
                lambda: any(log_says(log, "Redis unreachable") for log in logs),
                "a worker to notice the outage", interval=0.3,
            )  # fmt: skip
        finally:
            own_redis.restart()  # empty
        wait_until_sent(issue_id, "the issue to complete by itself", timeout=180)
        assert [w.poll() for w in workers] == [None, None], "a worker quit"
    finally:
        for worker in workers:
            kill_all(worker)
        controller.stop()
    assert_everyone_exactly_once(sink.mails)
    for log in logs:
        text = log.read_text(errors="replace")
        assert "unhandled exception" not in text, text[-3000:]
    assert any(log_says(log, "Redis is back") for log in logs)


# --- the SMTP relay away and back ------------------------------------------------


def test_delivery_resumes_when_the_relay_returns_not_at_the_next_retry(app, client, tmp_path):
    """RQ's next retry is an hour away; the workers' probe releases the waiting jobs."""
    port = free_port()  # nothing listens here yet
    sign_up(client, "jana@seznam.cz")  # a confirmation mail on the `mail` queue
    issue_id = start_issue()
    worker = start_worker(
        app,
        f"smtp://127.0.0.1:{port}",
        tmp_path / "worker.log",
        MAIL_RETRY_INTERVALS="3600",
        SMTP_RECOVERY_PROBE_SECONDS="1",
        SMTP_TIMEOUT="1",
    )
    sink = SlowSink(delay=0)
    controller = None
    try:
        # Every batch and the confirmation were refused and wait on RQ's retry, an hour on.
        def all_waiting() -> bool:
            bulk = ScheduledJobRegistry(queue=queue(BULK_QUEUE)).count
            mail = ScheduledJobRegistry(queue=queue(MAIL_QUEUE)).count
            return mail == 1 and bulk == RECIPIENTS // 50

        wait_until(all_waiting, "the jobs to go to RQ's retry", interval=0.3)
        report = worker_status.read_smtp(redis_connection())
        assert report is not None and not report.ok
        assert report.error.startswith(f"cannot connect to 127.0.0.1:{port}")
        assert issue_status(issue_id) == "sending"

        controller = start_catcher(sink, port=port)  # the relay is back
        wait_until_sent(issue_id, "delivery to resume", timeout=60)
        wait_until(lambda: any("jana@seznam.cz" in m.rcpt_tos for m in sink.mails), "jana's mail")
    finally:
        kill_all(worker)
        if controller is not None:
            controller.stop()
    assert_everyone_exactly_once(sink.mails)
    assert worker_status.read_smtp(redis_connection()).ok


# --- graceful shutdown ---------------------------------------------------------


def batches_running(issue_id: int) -> int:
    db.session.expire_all()
    running = db.session.scalars(
        select(DeliveryBatch.id).where(
            DeliveryBatch.issue_id == issue_id, DeliveryBatch.status == "running"
        )
    ).all()
    db.session.commit()
    return len(running)


def test_sigterm_mid_issue_hands_over_and_nobody_gets_it_twice(app, tmp_path):
    sink = SlowSink(delay=0.02)
    controller = start_catcher(sink)
    smtp_url = f"smtp://127.0.0.1:{controller.port}"
    second = None
    try:
        issue_id = start_issue()
        first = start_worker(app, smtp_url, tmp_path / "first.log", WORKER_SHUTDOWN_SECONDS="60")
        try:
            assert sink.wait_for(60, timeout=60), "the first worker never got going"
            terminate_like_systemd(first)  # the worker, its scheduler and its work horse
            assert first.wait(120) == 0
        finally:
            if first.poll() is None:
                kill_all(first)
        sent_before = len(sink.mails)
        assert sent_before < RECIPIENTS
        # The batch in hand was handed back at once, not left claimed until its lease ran out.
        assert batches_running(issue_id) == 0
        assert issue_status(issue_id) == "sending"

        # A long lease: only the hand-over, never a lease running out, lets this one go on.
        second = start_worker(app, smtp_url, tmp_path / "second.log", BATCH_LEASE_SECONDS="600")
        wait_until_sent(issue_id, "the new worker to finish the issue", timeout=120)
    finally:
        if second is not None:
            kill_all(second)
        controller.stop()
    assert_everyone_exactly_once(sink.mails)


class StuckSink(MailCatcher):
    """Takes each message and then does not answer until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.in_data = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        answer = await super().handle_DATA(server, session, envelope)
        self.in_data.set()
        while not self.release.is_set():
            await asyncio.sleep(0.05)
        return answer


def test_a_job_stuck_mid_message_does_not_hold_the_worker_past_the_deadline(app, tmp_path):
    sink = StuckSink()
    controller = start_catcher(sink)
    try:
        start_issue()
        worker = start_worker(
            app,
            f"smtp://127.0.0.1:{controller.port}",
            tmp_path / "worker.log",
            SMTP_TIMEOUT="300",
            BATCH_LEASE_SECONDS="600",
            WORKER_SHUTDOWN_SECONDS="2",
        )
        try:
            assert sink.in_data.wait(60), "the worker never reached DATA"
            terminate_like_systemd(worker)
            worker.wait(120)
            # It exited while the server still had not answered the message in flight.
            assert not sink.release.is_set()
            assert "did not stop within WORKER_SHUTDOWN_SECONDS" in (
                (tmp_path / "worker.log").read_text(errors="replace")
            )
        finally:
            if worker.poll() is None:
                kill_all(worker)
    finally:
        sink.release.set()
        controller.stop()
