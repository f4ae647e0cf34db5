"""The sign-up jobs: nothing lost when Redis is down or a worker dies, done once when run twice.

`POST /subscribe` stores a `SignupRequest` row and makes sure
`workers.signup.process_signups` is queued (service/subscriptions/signup.py,
service/jobs.py `signal_signups`); these
tests drive the faults with a real Redis, real worker processes and the
real database, and check the consent ledger keeps the visitor's own time,
address and browser.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from rq import Queue
from rq.registry import StartedJobRegistry
from sqlalchemy import func, select, text, update

from service import jobs as service_jobs
from service import ledger
from service.dev.processes import free_port
from service.extensions import db
from service.jobs import MAIL_QUEUE, SIGNUP_DRAIN_QUEUED, redis_connection
from service.models import ConsentEvent, OutgoingMail, SignupRequest, Subscriber, Subscription
from service.subscriptions import actions, rate_limits, signup
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


def test_a_sign_up_whose_hand_off_fails_after_storing_is_processed_later(
    client, app, outbox, monkeypatch
):
    """Redis answers the limits but the drain job cannot be queued (Redis gone just then):
    the sign-up is stored all the same (on SQLite it was committed before the hand-off),
    and the reconciler queues its drain job."""

    def redis_gone(job_id=None):
        raise RedisConnectionError("gone")

    monkeypatch.setattr(service_jobs, "enqueue_signup_drain", redis_gone)
    sign_up(client)
    assert counts()["signup_request"] == 1
    assert redis_connection().get(SIGNUP_DRAIN_QUEUED) is None  # no job named, none queued
    assert mail_queue_jobs() == []
    monkeypatch.undo()

    assert reconcile()["signup_requests"] == 1
    run_jobs(app)
    assert counts() == DONE_ONCE
    assert [m.rcpt_tos for m in outbox.mails] == [[ADDRESS]]


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


def _hold_the_sign_up():
    """A transaction of our own that a drain job's sign-up waits on, after its claim.

    PostgreSQL: a lock on the subscriber table that the new subscriber's INSERT waits
    for (rows are claimed with SKIP LOCKED, so holding the row would not stop the job,
    only make it skip the row). SQLite: our write holds the file's one write lock.
    """
    connection = db.engine.connect()
    if connection.dialect.name == "postgresql":
        connection.execute(text("LOCK TABLE subscriber IN EXCLUSIVE MODE"))
    else:
        connection.execute(text("UPDATE signup_request SET name = name"))
    return connection


def _no_other_transaction_holds_the_rows() -> bool:
    """PostgreSQL ends a killed client's transaction when it notices; until then its row is
    skipped by a drain job (and left to the reconciler's next pass)."""
    if db.engine.dialect.name != "postgresql":
        return True
    held = db.session.scalar(
        text(
            "SELECT count(*) FROM pg_locks WHERE relation = 'signup_request'::regclass"
            " AND pid <> pg_backend_pid()"
        )
    )
    db.session.commit()
    return held == 0


def _a_mail_job_started() -> bool:
    return bool(StartedJobRegistry(MAIL_QUEUE, connection=redis_connection()).get_job_ids())


def test_a_worker_killed_mid_sign_up_leaves_its_rows_to_the_next_worker_once(client, app, outbox):
    """kill -9 a real worker inside the drain job; a new worker does every sign-up, once."""
    addresses = [ADDRESS, "petr@seznam.cz", "eva@seznam.cz"]
    for address in addresses:
        sign_up(client, address)
    holder = _hold_the_sign_up()
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
    assert counts()["signup_request"] == 3  # the killed job's claim was never committed
    wait_until(_no_other_transaction_holds_the_rows, "the killed job's transaction to end")

    restarted = subprocess.run(
        [sys.executable, "-m", "service", "worker", "--burst"],
        env=worker_env(app, outbox.url),
        capture_output=True,
        timeout=120,
    )
    assert restarted.returncode == 0, restarted.stderr.decode()
    assert counts() == {
        "signup_request": 0,
        "subscriber": 3,
        "subscription": 3,
        "consent_event": 3,
        "outgoing_mail": 3,
    }
    assert sorted(m.rcpt_tos[0] for m in outbox.mails) == sorted(addresses)


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


def test_a_failing_sign_up_does_not_hold_up_the_others_and_is_retried(
    client, app, monkeypatch, outbox
):
    for address in (ADDRESS, "petr@seznam.cz", "eva@seznam.cz"):
        sign_up(client, address)
    first = db.session.scalar(select(func.min(SignupRequest.id)))
    db.session.commit()
    real = signup.act_on_request

    def failing_first(row: SignupRequest):
        if row.id == first:
            raise RuntimeError("a bug in one request")
        return real(row)

    monkeypatch.setattr(signup, "act_on_request", failing_first)
    assert process_signups() == {"done": 2, "skipped": 0, "failed": 1}
    assert db.session.scalars(select(SignupRequest.id)).all() == [first]  # kept for a retry
    db.session.commit()
    monkeypatch.undo()
    redis_connection().flushdb()  # the jobs of the first run: only the reconciler's count
    assert reconcile()["signup_requests"] == 1
    run_jobs(app)
    assert counts()["signup_request"] == 0
    assert counts()["subscriber"] == 3


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


# --- a drain job and the sign-ups in flight (issue 14) ---------------------------


def test_a_drain_job_that_starts_between_a_hand_off_and_its_commit_waits_and_does_it(
    client, app, monkeypatch
):
    """A sign-up hands its row over in its rate limits' round trip, before its commit (on
    SQLite before its INSERT too). A drain job that clears the mark in between must wait
    for the commit before it reads (signup.wait_for_sign_ups_in_flight: the sign-ups'
    lock file on SQLite, the table's lock on PostgreSQL), or the row would wait for the
    reconciler. Here the job starts at that worst moment and must do the row."""
    sqlite = db.engine.dialect.name == "sqlite"
    monkeypatch.setattr(signup, "IN_FLIGHT_WAIT_SECONDS", 120.0)  # conditions decide here
    job_waits = threading.Event()
    real_busy = signup.lock_file_busy

    def busy() -> None:
        job_waits.set()
        real_busy()

    monkeypatch.setattr(signup, "lock_file_busy", busy)

    def the_job_waits() -> bool:
        if sqlite:
            return job_waits.is_set()
        with db.engine.connect() as other:
            return bool(
                other.scalar(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE NOT granted"
                        " AND relation = 'signup_request'::regclass"
                    )
                )
            )

    done: list[dict[str, int]] = []
    jobs: list[threading.Thread] = []

    def drain() -> None:
        with app.app_context():
            try:
                done.append(process_signups())
            finally:
                db.session.remove()

    real_script = rate_limits._run_script

    def script_then_a_drain_job(limits, job_id):
        reply = real_script(limits, job_id)
        assert job_id, "the hand-off was not in the script's round trip"
        jobs.append(threading.Thread(target=drain, daemon=True))
        jobs[0].start()
        wait_until(the_job_waits, "the drain job to wait for the sign-up", abort=lambda: done)
        return reply

    monkeypatch.setattr(rate_limits, "_run_script", script_then_a_drain_job)
    sign_up(client)
    jobs[0].join(60)
    assert done == [{"done": 1, "skipped": 0, "failed": 0}]
    assert counts()["signup_request"] == 0
    assert counts()["subscriber"] == 1


def test_a_sign_up_stuck_in_flight_holds_a_drain_job_up_for_a_moment_only(app, caplog):
    """SQLite: a process that holds the sign-ups' lock file for good (stuck between its
    round trip and its commit) must not stop the drain jobs: they read after
    IN_FLIGHT_WAIT_SECONDS and say so."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL waits on its table lock, with lock_timeout")
    path = signup._lock_path()
    assert path is not None
    with open(path, "ab") as held:
        fcntl.flock(held, fcntl.LOCK_SH)  # a sign-up in flight that never ends
        assert process_signups() == {"done": 0, "skipped": 0, "failed": 0}
    assert "held their lock file too long" in caplog.text


def test_a_lock_file_that_cannot_be_opened_costs_a_round_trip_not_a_sign_up(client, app, caplog):
    """SQLite: the sign-ups' lock file unwritable (a directory gone or read-only), the
    sign-up hands over after its commit instead, and the drain job reads without waiting."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL has no lock file")
    app.extensions["zpravodaj_signup_lock_path"] = str(
        Path(app.instance_path, "no such directory", "signups.lock")
    )
    sign_up(client)
    [drain] = mail_queue_jobs()
    assert drain.startswith("signup-drain-")
    assert process_signups() == {"done": 1, "skipped": 0, "failed": 0}
    assert counts()["signup_request"] == 0
    assert caplog.text.count("cannot open the sign-ups' lock file") == 2


def test_a_drain_job_that_gives_up_waiting_leaves_a_successor(client, app, monkeypatch):
    """A sign-up still in flight when the drain job's wait runs out (its commit slow: SQLite's
    write lock busy) has no job but this one, which read past it: the job queues its
    successor, which waits again and does the row. Before, it waited for the reconciler."""
    monkeypatch.setattr(signup, "IN_FLIGHT_WAIT_SECONDS", 0.001)
    sqlite = db.engine.dialect.name == "sqlite"
    holder = db.engine.connect()
    if sqlite:
        path = signup._lock_path()
        assert path is not None
        held = os.open(path, os.O_RDONLY | os.O_CREAT)
        fcntl.flock(held, fcntl.LOCK_SH)  # a sign-up between its hand-off and its commit
    else:
        holder.execute(text("LOCK TABLE signup_request IN ROW EXCLUSIVE MODE"))
    try:
        assert process_signups() == {"done": 0, "skipped": 0, "failed": 0}
    finally:
        if sqlite:
            os.close(held)
        holder.rollback()
        holder.close()
    [successor] = mail_queue_jobs()
    assert successor.startswith("signup-drain-")
    assert redis_connection().get(SIGNUP_DRAIN_QUEUED) == successor.encode()


def test_a_replaced_lock_file_is_the_one_sign_ups_hold(client, app):
    """The lock file removed (a restore, a clean-up) while the web runs: its processes lock
    the new one, which the drain job opens, not the old one they kept open."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL has no lock file")
    sign_up(client)
    path = signup._lock_path()
    assert path is not None
    os.remove(path)
    with app.test_request_context(), signup.in_flight() as held:
        assert held
        probe = os.open(path, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(probe)


def test_a_lock_file_that_failed_to_open_never_closes_another_files_descriptor(client, app):
    """The thread's lock file closed to open another that then failed: the next sign-up
    must not close that descriptor number again, which by then is another file's (here a
    probe's; in the suite it was SQLite's database, which then read as malformed)."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL has no lock file")
    sign_up(client)  # the thread's lock file open
    real = app.extensions["zpravodaj_signup_lock_path"]
    app.extensions["zpravodaj_signup_lock_path"] = str(Path(real).parent / "gone" / "x.lock")
    sign_up(client, "petr@seznam.cz")  # closes it, fails to open the other
    probe = os.open(os.devnull, os.O_RDONLY)  # the lowest free number: the one just closed
    try:
        app.extensions["zpravodaj_signup_lock_path"] = real
        sign_up(client, "eva@seznam.cz")
        # Before: closed by the sign-up, and the number given to its new lock file.
        assert os.path.samestat(os.fstat(probe), os.stat(os.devnull))
    finally:
        with contextlib.suppress(OSError):
            os.close(probe)


# --- two drain jobs at once, and the reconciler (issue 14) ------------------------


def test_a_row_another_drain_job_holds_is_skipped_not_waited_for(client, app):
    """Before: the second job walked the same rows and waited on the first's row lock, so a
    second worker added nothing (here it waited for good on the held row)."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no row locks: one writer at a time")
    for address in (ADDRESS, "petr@seznam.cz", "eva@seznam.cz"):
        sign_up(client, address)
    first = db.session.scalar(select(func.min(SignupRequest.id)))
    db.session.commit()
    other_job = db.engine.connect()  # holds the first row as a drain job's claim does
    other_job.execute(
        text("SELECT id FROM signup_request WHERE id = :id FOR UPDATE"), {"id": first}
    )
    results: list[dict[str, int]] = []
    second = threading.Thread(target=_drain_in_thread, args=(app, results), daemon=True)
    second.start()
    try:
        second.join(timeout=60)
        assert not second.is_alive(), "the second drain job waited for the first's row"
    finally:
        other_job.rollback()
        other_job.close()
        second.join(timeout=60)
    assert results == [{"done": 2, "skipped": 0, "failed": 0}]
    assert db.session.scalars(select(SignupRequest.id)).all() == [first]
    db.session.commit()
    assert process_signups() == {"done": 1, "skipped": 0, "failed": 0}


def _drain_in_thread(app, results: list[dict[str, int]]) -> None:
    with app.app_context():
        try:
            results.append(process_signups())
        finally:
            db.session.remove()


def test_two_drain_jobs_at_once_do_every_sign_up_once(client, app, outbox):
    addresses = [f"clovek{i}@seznam.cz" for i in range(30)]
    for address in addresses:
        sign_up(client, address)
    results: list[dict[str, int]] = []
    jobs = [
        threading.Thread(target=_drain_in_thread, args=(app, results), daemon=True)
        for _ in range(2)
    ]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(timeout=120)
        assert not job.is_alive(), "a drain job did not finish"
    assert len(results) == 2
    assert sum(r["done"] for r in results) == 30
    assert sum(r["failed"] for r in results) == 0
    assert counts()["signup_request"] == 0
    mails = db.session.scalars(select(OutgoingMail.recipient)).all()
    db.session.commit()
    assert sorted(mails) == sorted(addresses)  # one confirmation mail each, none twice


def test_the_reconciler_queues_one_drain_job_for_a_backlog(client, app, outbox):
    """Before: one job per stored row (here 25)."""
    for i in range(25):
        sign_up(client, f"clovek{i}@seznam.cz")
    redis_connection().flushdb()  # their hand-off lost (a flushed or restarted Redis)
    assert reconcile()["signup_requests"] == 1
    [drain] = mail_queue_jobs()
    assert drain.startswith("signup-drain-")
    assert reconcile()["signup_requests"] == 0  # it is queued and has not started
    assert mail_queue_jobs() == [drain]
    run_jobs(app)
    assert counts()["signup_request"] == 0
    assert len(outbox.mails) == 25


def test_a_drain_job_lost_after_its_hand_off_holds_up_no_backlog(client, app, outbox):
    """The key says a drain job is queued, but that job was taken by a worker killed before
    it started (RQ keeps it 'queued' in its work-in-progress list) or lost from Redis: the
    reconciler queues another instead of waiting for the key to expire."""
    sign_up(client)
    [lost] = mail_queue_jobs()
    assert redis_connection().get(SIGNUP_DRAIN_QUEUED) == lost.encode()
    Queue(MAIL_QUEUE, connection=redis_connection()).remove(lost)  # still "queued" itself
    assert reconcile()["signup_requests"] == 1
    [drain] = mail_queue_jobs()
    assert drain != lost
    run_jobs(app)
    assert counts() == DONE_ONCE
