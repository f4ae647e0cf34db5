"""Sending single mails: retries, permanent refusals, and faults that must lose nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update

from service.dev.mail_catcher import MailCatcher, start_catcher
from service.dev.processes import free_port
from service.extensions import db
from service.jobs import redis_connection
from service.models import OutgoingMail
from tests.conftest import process_signups, run_jobs
from workers.mail import send_outgoing
from workers.reconcile import reconcile


def sign_up(client, email="jana@seznam.cz"):
    assert client.post("/subscribe", json={"email": email}).status_code == 202
    process_signups()  # the sign-up job's work: these tests are about the mail it queues


def mail_row() -> OutgoingMail:
    db.session.expire_all()
    return db.session.scalar(select(OutgoingMail))


def test_smtp_server_down_then_back_loses_nothing(client, app, outbox):
    app.config["SMTP_URL"] = f"smtp://127.0.0.1:{free_port()}"  # nothing listens there
    sign_up(client)
    run_jobs(app)  # first try plus RQ's retries, all refused
    row = mail_row()
    assert row.status == "queued"
    assert row.attempts == 1 + len(app.config["MAIL_RETRY_INTERVALS"])
    assert "cannot connect" in row.last_error
    assert outbox.mails == []

    app.config["SMTP_URL"] = outbox.url  # the server is back
    assert reconcile()["outgoing_mail"] == 1
    run_jobs(app)
    assert mail_row().status == "sent"
    assert len(outbox.mails) == 1


def test_temporary_refusal_is_retried(client, app, outbox):
    outbox.catcher.reject_rcpt["jana@seznam.cz"] = (451, "4.7.1 Greylisted, try again")
    sign_up(client)
    run_jobs(app)
    row = mail_row()
    assert row.status == "queued"
    assert row.last_error.startswith("451")
    outbox.catcher.reject_rcpt.clear()
    reconcile()
    run_jobs(app)
    assert mail_row().status == "sent"


def test_permanent_refusal_is_recorded_not_retried(client, app, outbox):
    outbox.catcher.reject_rcpt["jana@seznam.cz"] = (550, "5.1.1 No such user")
    sign_up(client)
    run_jobs(app)
    row = mail_row()
    assert row.status == "failed"
    assert row.attempts == 1
    assert row.last_error == "550 5.1.1 No such user"
    assert reconcile()["outgoing_mail"] == 0


def test_redis_flushed_before_sending_loses_nothing(client, app, outbox):
    sign_up(client)
    redis_connection().flushall()
    assert redis_connection().dbsize() == 0
    run_jobs(app)  # a worker reconciles when it starts: the database knows
    assert mail_row().status == "sent"
    assert len(outbox.mails) == 1


def test_reconciler_reenqueues_after_a_flush(client, app, outbox):
    sign_up(client)
    redis_connection().flushall()
    assert reconcile()["outgoing_mail"] == 1
    assert reconcile()["outgoing_mail"] == 0  # its job is in Redis again
    run_jobs(app)
    assert len(outbox.mails) == 1


def test_mail_enqueued_while_redis_was_down_is_sent_later(client, app, outbox):
    real_url = app.config["REDIS_URL"]
    from redis import Redis

    app.extensions["redis"] = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    sign_up(client)  # the form still answers: the database is the source of truth
    assert mail_row().status == "queued"
    app.extensions["redis"] = Redis.from_url(real_url)
    reconcile()
    run_jobs(app)
    assert len(outbox.mails) == 1


def test_reconciler_leaves_mails_with_a_live_job_alone(client, app, outbox):
    sign_up(client)
    assert reconcile()["outgoing_mail"] == 0  # its job is still queued
    run_jobs(app)
    assert len(outbox.mails) == 1


def test_sending_twice_sends_once(client, app, outbox):
    sign_up(client)
    mail_id = mail_row().id
    assert send_outgoing(mail_id) == "sent"
    assert send_outgoing(mail_id) == "skipped"
    run_jobs(app)  # the enqueued job too
    assert len(outbox.mails) == 1


class SlowCatcher(MailCatcher):
    """Accepts the connection, then sits on DATA: a mail in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.in_data = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        self.in_data.set()
        await asyncio.sleep(60)
        return "451 too slow"


def worker_env(app, smtp_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE", "REDIS", "SMTP"))}
    env.update(
        DATABASE_URL=app.config["DATABASE_URL"],
        REDIS_URL=app.config["REDIS_URL"],
        SMTP_URL=smtp_url,
        SECRET_KEY=app.config["SECRET_KEY"],
        MAIL_FROM=app.config["MAIL_FROM"],
        MAIL_CLAIM_LEASE_SECONDS="1",
        RECONCILE_GRACE_SECONDS="0",
        RECONCILE_INTERVAL="1",
        SMTP_TIMEOUT="5",
    )
    return env


def test_worker_killed_mid_send_loses_nothing(client, app, outbox):
    """kill -9 a real worker process while its mail is in flight; a new worker finishes it."""
    slow = SlowCatcher()
    controller = start_catcher(slow)
    sign_up(client)
    worker = subprocess.Popen(
        [sys.executable, "-m", "service", "worker"],
        env=worker_env(app, f"smtp://127.0.0.1:{controller.port}"),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert slow.in_data.wait(30), "the worker never reached DATA"
        assert mail_row().status == "sending"
        os.killpg(worker.pid, signal.SIGKILL)  # the worker and its work horse
        worker.wait(10)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        controller.stop()

    # Let the claim lease (1 s here) run out without waiting for it: the claim is older.
    db.session.execute(
        update(OutgoingMail).values(claimed_at=OutgoingMail.claimed_at - timedelta(minutes=1))
    )
    db.session.commit()
    restarted = subprocess.run(
        [sys.executable, "-m", "service", "worker", "--burst"],
        env=worker_env(app, outbox.url),
        capture_output=True,
        timeout=60,
    )
    assert restarted.returncode == 0, restarted.stderr.decode()
    row = mail_row()
    assert row.status == "sent"
    assert row.attempts == 2
    assert [m.rcpt_tos for m in outbox.mails] == [["jana@seznam.cz"]]


@pytest.mark.parametrize("smtputf8_server", [True, False])
def test_local_part_with_diacritics_depends_on_the_smtp_server(
    client, app, outbox, smtputf8_server
):
    from aiosmtpd.controller import Controller

    from tests.conftest import forget_smtputf8_capability
    from workers.transport import app_transport

    port = free_port()
    catcher = MailCatcher()
    controller = Controller(
        catcher, hostname="127.0.0.1", port=port, enable_SMTPUTF8=smtputf8_server
    )
    controller.start()
    try:
        app.config["SMTP_URL"] = f"smtp://127.0.0.1:{port}"
        # Before any worker has talked to the server, nobody knows: refuse.
        refused = client.post("/subscribe", json={"email": "jiří.novák@seznam.cz"})
        assert refused.status_code == 422
        with app_transport() as transport:
            transport.connect()  # what every worker does at start
        forget_smtputf8_capability(app)
        answer = client.post("/subscribe", json={"email": "jiří.novák@seznam.cz"})
        if not smtputf8_server:
            assert answer.status_code == 422
            assert answer.json["errors"] == {"email": "Neplatný e-mail."}
            return
        assert answer.status_code == 202
        run_jobs(app)
        assert catcher.mails[0].rcpt_tos == ["jiří.novák@seznam.cz"]
        assert "jiří.novák@seznam.cz" in catcher.mails[0].data.decode("utf-8")
    finally:
        controller.stop()


def test_smtputf8_setting_overrides_the_server(client, app):
    app.config["SMTPUTF8"] = "on"
    assert client.post("/subscribe", json={"email": "jiří@seznam.cz"}).status_code == 202
    app.config["SMTPUTF8"] = "off"
    assert client.post("/subscribe", json={"email": "zdeněk@seznam.cz"}).status_code == 422


def test_a_confirmation_refused_with_no_such_mailbox_is_recorded_as_a_hard_bounce(
    client, app, outbox
):
    from service.models import Bounce, Subscription

    outbox.catcher.reject_rcpt["preklep@seznam.cz"] = (550, "5.1.1 <preklep@seznam.cz> unknown")
    sign_up(client, "preklep@seznam.cz")
    run_jobs(app)
    assert mail_row().status == "failed"
    bounce = db.session.scalar(select(Bounce))
    assert (bounce.kind, bounce.status, bounce.outgoing_mail_id) == ("hard", "5.1.1", mail_row().id)
    assert db.session.scalar(select(Subscription.status)) == "bounced"


def test_server_slow_to_answer_does_not_let_the_senders_claim_run_out(app, client, monkeypatch):
    """The server holds its answer to the mail past MAIL_CLAIM_LEASE_SECONDS (it may take
    SMTP_DATA_TIMEOUT, 10 minutes). The sending job's lease thread keeps the claim fresh,
    so the reconciler does not hand the mail to a second job, which would send it again."""
    import workers.mail
    import workers.reconcile
    from tests.waiting import wait_for, wait_until
    from tests.workers.test_delivery_races import HoldingSink, another_process

    app.config["MAIL_CLAIM_LEASE_SECONDS"] = 3  # renewed every half second
    sink = HoldingSink(nth=1)
    controller = start_catcher(sink)
    app.config["SMTP_URL"] = f"smtp://127.0.0.1:{controller.port}"
    sign_up(client)
    mail_id = mail_row().id
    outcome = []

    def first_job() -> None:
        with another_process(app):
            outcome.append(send_outgoing(mail_id))

    thread = threading.Thread(target=first_job, name="first-job", daemon=True)
    thread.start()
    try:
        wait_until(sink.holding.is_set, "the first job to be inside its SMTP exchange")
        first_claim = mail_row().claimed_at
        # From here on the engine's clock reads later than the lease: any claim not
        # renewed since counts as abandoned.
        later = timedelta(seconds=app.config["MAIL_CLAIM_LEASE_SECONDS"] + 1)
        for module in (workers.mail, workers.reconcile):
            real = module.utcnow
            monkeypatch.setattr(module, "utcnow", lambda real=real: real() + later)
        renewed = wait_for(lambda: mail_row().claimed_at != first_claim, timeout=10)
        db.session.commit()
        requeued = reconcile()["outgoing_mail"]
        second = send_outgoing(mail_id)  # a second job for the same mail
    finally:
        sink.released.set()
        thread.join(60)
        controller.stop()

    assert [m.rcpt_tos for m in sink.mails] == [["jana@seznam.cz"]], "sent once"
    assert renewed, "the claim stood still while the server took its time"
    assert (requeued, second, outcome) == (0, "skipped", ["sent"])
    assert mail_row().status == "sent"


def test_a_mail_job_is_not_killed_while_the_server_takes_its_time(client, app, outbox):
    """RQ's default job timeout (180 s) is shorter than SMTP_DATA_TIMEOUT (600 s):
    a job killed while waiting for the answer would leave the mail to be sent
    again. The mail job has no RQ timeout; its renewed claim notices a dead worker."""
    from rq.job import Job

    from service.jobs import outgoing_mail_job_id

    client.post("/subscribe", data={"email": "jana@seznam.cz", "list": "zpravodaj"})
    process_signups()
    mail_id = db.session.scalars(select(OutgoingMail.id)).one()
    job = Job.fetch(outgoing_mail_job_id(mail_id), connection=redis_connection())
    assert job.timeout == -1
    assert app.config["SMTP_DATA_TIMEOUT"] > 180


@pytest.mark.parametrize("outcome", ["transient", "sent"])
def test_a_worker_whose_claim_was_taken_leaves_the_new_holders_record(
    client, app, outbox, monkeypatch, outcome
):
    """A worker frozen past MAIL_CLAIM_LEASE_SECONDS comes back after another has
    claimed and sent the mail: its late "try later" (or its own "sent") must not
    overwrite that record; before, a late 451 set the sent mail back to queued."""
    import workers.mail
    from workers.smtp import TransientFailure

    sign_up(client)
    mail_id = mail_row().id
    later = mail_row().created_at + timedelta(hours=1)

    def taken_over_meanwhile(mail, *_args, **_kwargs):
        with db.engine.begin() as other_worker:  # the next holder claims and sends it
            other_worker.execute(
                update(OutgoingMail)
                .where(OutgoingMail.id == mail.id)
                .values(status="sent", claimed_at=later, sent_at=later)
            )
        if outcome == "transient":
            raise TransientFailure("451 4.3.0 try again later")

    monkeypatch.setattr(workers.mail, "_send_keeping_the_claim", taken_over_meanwhile)
    assert send_outgoing(mail_id) == "claim lost"
    row = mail_row()
    assert (row.status, row.claimed_at, row.last_error) == ("sent", later, None)


def test_reconciler_with_nothing_to_do_writes_nothing(app, database_url):
    """On SQLite an UPDATE or DELETE takes the one write lock even when it matches
    nothing: the reconciler of every worker's tick waited out the busy timeout behind
    any long write (an import's chunk, a test's held transaction), then failed with
    "database is locked", for work there was none of."""
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL locks rows, not the database")
    import sqlite3

    holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process's long write
    try:
        db.session.execute(text("PRAGMA busy_timeout=100"))  # fail fast if it waits at all
        assert reconcile()["outgoing_mail"] == 0
        assert reconcile()["signup_requests"] == 0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
