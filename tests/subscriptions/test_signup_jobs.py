"""The sign-up jobs: nothing lost when Redis is down or a worker dies, done once when run twice.

`POST /subscribe` stores a `SignupRequest` row and makes sure
`workers.signup.process_signups` is queued (service/subscriptions/signup.py,
service/jobs.py `signal_signups`); these
tests drive the faults with a real Redis, real worker processes and the
real database, and check the consent ledger keeps the visitor's own time,
address and browser.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta

from redis import Redis
from rq import Queue
from rq.registry import StartedJobRegistry
from sqlalchemy import func, select, text, update

from service import ledger
from service.dev.processes import free_port
from service.extensions import db
from service.jobs import MAIL_QUEUE, SIGNUP_DRAIN_QUEUED, redis_connection
from service.models import ConsentEvent, OutgoingMail, SignupRequest, Subscriber, Subscription
from service.subscriptions import actions
from tests.conftest import run_jobs
from tests.waiting import exited, wait_until
from tests.workers.test_outgoing_mail import worker_env
from workers import signup as signup_jobs
from workers.reconcile import reconcile
from workers.signup import process_signup, process_signups

ADDRESS = "jana@seznam.cz"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"


def sign_up(client, address: str = ADDRESS) -> None:
    response = client.post(
        "/subscribe",
        data={"email": address, "name": "Jana"},
        headers={"User-Agent": BROWSER},
        environ_base={"REMOTE_ADDR": "192.0.2.44"},
    )
    assert response.status_code == 202


def counts() -> dict[str, int]:
    db.session.expire_all()
    found = {
        model.__tablename__: db.session.scalar(select(func.count()).select_from(model))
        for model in (SignupRequest, Subscriber, Subscription, ConsentEvent, OutgoingMail)
    }
    db.session.commit()
    return found


DONE_ONCE = {
    "signup_request": 0,
    "subscriber": 1,
    "subscription": 1,
    "consent_event": 1,
    "outgoing_mail": 1,
}


def test_a_sign_up_made_while_redis_is_down_is_processed_later(client, app, outbox):
    real = app.extensions["redis"]
    app.extensions["redis"] = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    sign_up(client)  # the form still answers: the database is the source of truth
    assert counts()["signup_request"] == 1
    app.extensions["redis"] = real
    assert real.dbsize() == 0  # the job never reached Redis

    assert reconcile()["signup_requests"] == 1
    assert reconcile()["signup_requests"] == 0  # its job is queued now
    run_jobs(app)
    assert counts() == DONE_ONCE
    assert [m.rcpt_tos for m in outbox.mails] == [[ADDRESS]]
    assert "Potvrďte prosím odběr" in outbox.mails[0].message["Subject"]


def test_a_flushed_redis_loses_no_sign_up(client, app, outbox):
    sign_up(client)
    redis_connection().flushall()
    run_jobs(app)  # a worker reconciles when it starts: the database knows
    assert counts() == DONE_ONCE
    assert len(outbox.mails) == 1


def test_the_job_run_twice_signs_up_once(client, app, outbox):
    sign_up(client)
    request_id = db.session.scalar(select(SignupRequest.id))
    db.session.commit()
    assert process_signup(request_id) == "done"
    assert process_signup(request_id) == "skipped"
    run_jobs(app)  # the enqueued job too
    assert counts() == DONE_ONCE
    assert len(outbox.mails) == 1


def test_the_ledger_records_when_where_and_with_what_the_visitor_signed_up(client, app):
    sign_up(client)
    # The job runs later than the request: as if the workers were busy for a while.
    asked_at = db.session.scalar(select(SignupRequest.requested_at)) - timedelta(minutes=7)
    db.session.execute(update(SignupRequest).values(requested_at=asked_at))
    db.session.commit()
    run_jobs(app)
    event = db.session.scalar(select(ConsentEvent))
    assert event.action == "signup"
    assert event.occurred_at == asked_at
    assert (event.ip, event.user_agent, event.channel) == ("192.0.2.44", BROWSER, "page")
    assert event.consent_text.kind == "consent"
    assert event.message_id == db.session.scalar(select(OutgoingMail.message_id))
    subscription = db.session.scalar(select(Subscription))
    assert subscription.subscribed_at == event.occurred_at
    with db.engine.connect() as connection:
        assert ledger.verify(connection).intact


def test_erasure_takes_a_sign_up_still_waiting_for_its_job(client, app):
    sign_up(client)
    run_jobs(app)
    sign_up(client)  # again, and erased before its job runs
    actions.erase(db.session.scalar(select(Subscriber)))
    db.session.commit()
    assert counts()["signup_request"] == 0


def _hold_the_request_row(request_id: int):
    """A transaction of our own that has written the request row: the job's claim waits on it."""
    connection = db.engine.connect()
    connection.execute(
        text("UPDATE signup_request SET name = name WHERE id = :id"), {"id": request_id}
    )
    return connection


def _a_mail_job_started() -> bool:
    return bool(StartedJobRegistry(MAIL_QUEUE, connection=redis_connection()).get_job_ids())


def test_a_worker_killed_mid_sign_up_leaves_it_to_the_next_worker_once(client, app, outbox):
    """kill -9 a real worker inside the sign-up job; a new worker does the sign-up, once."""
    sign_up(client)
    request_id = db.session.scalar(select(SignupRequest.id))
    db.session.commit()
    holder = _hold_the_request_row(request_id)
    worker = subprocess.Popen(
        [sys.executable, "-m", "service", "worker"],
        env=worker_env(app, outbox.url),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(_a_mail_job_started, "the worker to take the job", abort=lambda: exited(worker))
        os.killpg(worker.pid, signal.SIGKILL)  # the worker and its work horse, mid-job
        worker.wait(10)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        holder.rollback()
        holder.close()
    assert counts()["signup_request"] == 1  # the killed job's claim was never committed

    restarted = subprocess.run(
        [sys.executable, "-m", "service", "worker", "--burst"],
        env=worker_env(app, outbox.url),
        capture_output=True,
        timeout=120,
    )
    assert restarted.returncode == 0, restarted.stderr.decode()
    assert counts() == DONE_ONCE
    assert [m.rcpt_tos for m in outbox.mails] == [[ADDRESS]]


# --- the hand-off: one queued job works through the stored sign-ups (issue 14) ---------


def mail_queue_jobs() -> list[str]:
    return Queue(MAIL_QUEUE, connection=redis_connection()).get_job_ids()


def test_sign_ups_while_a_job_is_queued_add_no_job_and_that_job_does_them_all(client, app, outbox):
    sign_up(client)
    [drain] = mail_queue_jobs()
    assert drain.startswith("signup-drain-")
    sign_up(client, "petr@seznam.cz")
    sign_up(client, "eva@seznam.cz")
    assert mail_queue_jobs() == [drain]  # one small Redis command each, no job of their own
    run_jobs(app)
    assert counts()["signup_request"] == 0
    assert counts()["subscriber"] == 3
    assert sorted(m.rcpt_tos[0] for m in outbox.mails) == [
        "eva@seznam.cz", ADDRESS, "petr@seznam.cz"
    ]  # fmt: skip


def test_a_sign_up_after_the_job_started_queues_the_next_one(client, app):
    sign_up(client)
    [first] = mail_queue_jobs()
    run_jobs(app)  # it ran and cleared the mark before it read the rows
    assert redis_connection().get(SIGNUP_DRAIN_QUEUED) is None
    sign_up(client, "petr@seznam.cz")
    [second] = [job for job in mail_queue_jobs() if job.startswith("signup-drain-")]
    assert second != first
    run_jobs(app)
    assert counts()["signup_request"] == 0


def test_a_failing_sign_up_does_not_hold_up_the_others(client, app, monkeypatch):
    for address in (ADDRESS, "petr@seznam.cz", "eva@seznam.cz"):
        sign_up(client, address)
    first = db.session.scalar(select(func.min(SignupRequest.id)))
    db.session.commit()
    real = signup_jobs.process_signup

    def failing_first(request_id: int) -> str:
        if request_id == first:
            raise RuntimeError("a bug in one request")
        return real(request_id)

    monkeypatch.setattr(signup_jobs, "process_signup", failing_first)
    assert process_signups() == {"done": 2, "skipped": 0, "failed": 1}
    assert db.session.scalars(select(SignupRequest.id)).all() == [first]  # left to the reconciler
    db.session.commit()


def test_a_run_out_of_time_hands_the_rest_to_a_new_job(client, app, monkeypatch):
    for address in (ADDRESS, "petr@seznam.cz"):
        sign_up(client, address)
    run_jobs_queued = mail_queue_jobs()
    redis_connection().delete(*[f"rq:job:{job}" for job in run_jobs_queued])
    redis_connection().delete(f"rq:queue:{MAIL_QUEUE}")
    monkeypatch.setattr(signup_jobs, "DRAIN_SECONDS", 0.0)  # out of time at once
    assert process_signups() == {"done": 0, "skipped": 0, "failed": 0}
    [successor] = mail_queue_jobs()
    assert successor.startswith("signup-drain-")
    monkeypatch.undo()
    run_jobs(app)
    assert counts()["signup_request"] == 0
