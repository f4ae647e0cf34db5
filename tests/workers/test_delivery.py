"""The delivery engine with real parts: RQ worker, Redis, SMTP sink, SQLite/PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

import pytest
from sqlalchemy import func, select

import workers.delivery as workers_delivery
from service.dev.mail_catcher import MailCatcher, start_catcher
from service.extensions import db
from service.issues import sending
from service.models import (
    Bounce,
    Delivery,
    DeliveryBatch,
    Issue,
    MailingList,
    Subscriber,
    Subscription,
)
from tests.conftest import BASE_URL, add_confirmed_subscribers, link_to, run_jobs
from workers.delivery import deliver_batch, fan_out
from workers.reconcile import reconcile
from workers.smtp import TransientFailure

BODY = """Dobrý den,

v tomto vydání: **nové byty** v Ostravě a [metodika](https://socialnibydleni.example/metodika).

- první bod
- druhý bod
"""


def make_issue(slug: str = "zpravodaj", subject: str = "Zpravodaj 12/2026") -> Issue:
    mailing_list = db.session.scalar(select(MailingList).filter_by(slug=slug))
    fields, errors = sending.validate_fields(subject, BODY, "Co je nového v sociálním bydlení")
    assert not errors
    issue = sending.create_issue(mailing_list, fields, None)
    db.session.commit()
    return issue


def send(issue: Issue) -> None:
    sending.send_now(issue)
    db.session.commit()


def counts(issue: Issue) -> dict:
    db.session.expire_all()
    return sending.delivery_counts(db.session.get(Issue, issue.id))


def test_issue_reaches_every_confirmed_subscriber_exactly_once(app, outbox):
    app.config["BATCH_SIZE"] = 40
    add_confirmed_subscribers("zpravodaj", 230)
    other_list = add_confirmed_subscribers("novinky", 5, start=1000)
    issue = make_issue()
    send(issue)
    run_jobs(app)

    recipients = [rcpt for mail in outbox.mails for rcpt in mail.rcpt_tos]
    assert len(recipients) == 230
    assert len(set(recipients)) == 230
    assert not {f"odberatel{n}@example.cz" for n in range(1000, 1005)} & set(recipients)
    assert other_list
    assert counts(issue) == {
        "total": 230, "sent": 230, "failed": 0, "pending": 0, "skipped": 0, "cancelled": 0
    }  # fmt: skip
    db.session.expire_all()
    assert db.session.get(Issue, issue.id).status == "sent"


def test_pending_and_unsubscribed_subscribers_do_not_get_the_issue(app, outbox):
    ids = add_confirmed_subscribers("zpravodaj", 6)
    db.session.execute(
        Subscription.__table__.update()
        .where(Subscription.subscriber_id.in_(ids[:2]))
        .values(status="pending")
    )
    db.session.execute(
        Subscription.__table__.update()
        .where(Subscription.subscriber_id.in_(ids[2:3]))
        .values(status="unsubscribed")
    )
    db.session.commit()
    send(make_issue())
    run_jobs(app)
    assert sorted(r for m in outbox.mails for r in m.rcpt_tos) == [
        f"odberatel{n}@example.cz" for n in range(3, 6)
    ]


def test_mail_has_list_headers_and_both_parts(app, outbox):
    add_confirmed_subscribers("zpravodaj", 1)
    send(make_issue())
    run_jobs(app)
    [mail] = outbox.mails
    raw = mail.data
    msg = message_from_bytes(raw, policy=policy.default)
    header_lines = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    unsubscribe_line = next(h for h in header_lines if h.startswith(b"List-Unsubscribe: "))
    assert unsubscribe_line.startswith(
        b"List-Unsubscribe: <" + BASE_URL.encode() + b"/unsubscribe/"
    )
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in header_lines
    assert any(h.startswith(b"List-Id: ") and b"<zpravodaj." in h for h in header_lines)
    assert msg["Message-ID"].endswith("@socialnibydleni.example>")
    assert msg["Date"] and msg["From"] and msg["Subject"] == "Zpravodaj 12/2026"
    [to] = msg["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Čtenář 0", "odberatel0@example.cz")
    assert all(line.isascii() for line in header_lines)  # RFC 2047 without SMTPUTF8
    assert msg.get_content_type() == "multipart/alternative"
    text_part, html_part = msg.get_payload()
    assert text_part.get_content_type() == "text/plain"
    assert html_part.get_content_type() == "text/html"
    text, html = text_part.get_content(), html_part.get_content()
    for words in ("nové byty", "metodika", "druhý bod"):
        assert words in text and words in html
    assert "https://socialnibydleni.example/metodika" in text
    assert link_to(mail, "/unsubscribe/") in html
    assert link_to(mail, "/preferences/") in html
    assert f"{BASE_URL}/archive/zpravodaj" in text


def test_one_click_unsubscribe_takes_the_address_off_the_next_issue(app, client, outbox):
    add_confirmed_subscribers("zpravodaj", 3)
    send(make_issue())
    run_jobs(app)
    first = next(m for m in outbox.mails if m.rcpt_tos == ["odberatel1@example.cz"])
    header = first.message["List-Unsubscribe"].strip("<>")
    response = client.post(header.removeprefix(BASE_URL), data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    outbox.catcher.clear()
    send(make_issue(subject="Zpravodaj 1/2027"))
    run_jobs(app)
    assert sorted(r for m in outbox.mails for r in m.rcpt_tos) == [
        "odberatel0@example.cz",
        "odberatel2@example.cz",
    ]


# --- the life of an issue: pause, resume, cancel, schedule ---------------------


def recipients(outbox) -> list[str]:
    return sorted(r for m in outbox.mails for r in m.rcpt_tos)


def test_paused_issue_sends_nothing_until_resumed(app, outbox):
    add_confirmed_subscribers("zpravodaj", 12)
    issue = make_issue()
    send(issue)
    sending.pause(issue)
    db.session.commit()
    run_jobs(app)
    assert outbox.mails == []
    assert counts(issue)["pending"] == 12

    issue = db.session.get(Issue, issue.id)
    sending.resume(issue)
    db.session.commit()
    run_jobs(app)
    assert len(recipients(outbox)) == 12
    db.session.expire_all()
    assert db.session.get(Issue, issue.id).status == "sent"


def test_cancel_stops_and_send_again_reaches_only_those_not_reached(app, outbox):
    add_confirmed_subscribers("zpravodaj", 8)
    app.config["BATCH_SIZE"] = 3
    issue = make_issue()
    send(issue)
    fan_out(issue.id)  # the batches exist and are queued in Redis
    first_batch = db.session.scalar(select(func.min(Delivery.batch_id)))
    deliver_batch(first_batch)  # three go out before the editor cancels
    issue = db.session.get(Issue, issue.id)
    sending.cancel(issue)
    db.session.commit()
    run_jobs(app)
    assert len(recipients(outbox)) == 3
    assert counts(issue) | {"total": 8} == {
        "total": 8, "sent": 3, "failed": 0, "pending": 0, "skipped": 0, "cancelled": 5
    }  # fmt: skip

    issue = db.session.get(Issue, issue.id)
    assert sending.resend_unreached(issue) == 5
    db.session.commit()
    run_jobs(app)
    assert recipients(outbox) == sorted(f"odberatel{n}@example.cz" for n in range(8))
    db.session.expire_all()
    issue = db.session.get(Issue, issue.id)
    assert issue.status == "sent"
    with pytest.raises(sending.IssueStateError):
        sending.resend_unreached(issue)


class Clock:
    """Now, as the service (`service.clock.utcnow`, naive UTC) and RQ's scheduler see it,
    moved by hand: a test of "at its time" waits for nothing."""

    def __init__(self, monkeypatch, now: datetime) -> None:
        import sys

        import rq.scheduler

        import service.clock

        self.now = now
        real = service.clock.utcnow
        for name, module in list(sys.modules.items()):
            if name.partition(".")[0] in ("service", "workers") and (
                getattr(module, "utcnow", None) is real
            ):
                monkeypatch.setattr(module, "utcnow", self)
        monkeypatch.setattr(
            rq.scheduler, "current_timestamp", lambda: int(self.aware().timestamp())
        )

    def __call__(self) -> datetime:
        return self.now

    def aware(self) -> datetime:
        return self.now.replace(tzinfo=UTC)


def test_scheduled_issue_starts_at_its_time_through_the_rq_scheduler(app, outbox, monkeypatch):
    from rq.registry import ScheduledJobRegistry
    from rq.scheduler import RQScheduler

    from service.clock import utcnow
    from service.jobs import BULK_QUEUE, redis_connection

    clock = Clock(monkeypatch, utcnow().replace(microsecond=0))
    add_confirmed_subscribers("zpravodaj", 4)
    issue = make_issue()
    at = clock.aware() + timedelta(hours=1)
    sending.schedule(issue, at)
    db.session.commit()
    assert issue.scheduled_at == at.replace(tzinfo=None)  # stored as naive UTC
    registry = ScheduledJobRegistry(BULK_QUEUE, connection=redis_connection())
    [job_id] = registry.get_job_ids()
    assert registry.get_scheduled_time(job_id) == at

    scheduler = RQScheduler([BULK_QUEUE], connection=redis_connection())
    # What a worker started with the scheduler does. Only one scheduler holds a queue's
    # lock: one left running by an earlier test's worker made this test fail.
    assert BULK_QUEUE in scheduler.acquire_locks(), "another scheduler holds the lock"
    for not_yet in (timedelta(0), timedelta(minutes=59, seconds=58)):
        clock.now = at.replace(tzinfo=None) - timedelta(hours=1) + not_yet
        scheduler.enqueue_scheduled_jobs()  # not due yet: nothing moves
        run_jobs(app)
        assert registry.get_job_ids() == [job_id]
        assert outbox.mails == []
        db.session.expire_all()
        assert db.session.get(Issue, issue.id).status == "scheduled"

    clock.now = at.replace(tzinfo=None)  # its time has come
    scheduler.enqueue_scheduled_jobs()
    assert registry.get_job_ids() == []
    run_jobs(app)
    assert recipients(outbox) == [f"odberatel{n}@example.cz" for n in range(4)]
    db.session.expire_all()
    started = db.session.get(Issue, issue.id)
    assert started.status == "sent"
    assert started.started_at == at.replace(tzinfo=None)


def test_unscheduled_issue_is_not_started_by_its_old_job(app, outbox):
    from datetime import UTC, datetime, timedelta

    from workers.delivery import start_scheduled

    add_confirmed_subscribers("zpravodaj", 2)
    issue = make_issue()
    sending.schedule(issue, datetime.now(UTC) + timedelta(hours=1))
    db.session.commit()
    assert start_scheduled(issue.id) == "not due"
    sending.unschedule(db.session.get(Issue, issue.id))
    db.session.commit()
    assert start_scheduled(issue.id) == "not due"
    assert db.session.get(Issue, issue.id).status == "draft"


def test_schedule_in_the_past_is_refused_in_czech(app):
    from datetime import UTC, datetime, timedelta

    issue = make_issue()
    with pytest.raises(sending.IssueStateError, match="v budoucnosti"):
        sending.schedule(issue, datetime.now(UTC) - timedelta(minutes=1))


def test_snapshot_leaves_out_those_who_confirm_after_send(app, outbox):
    add_confirmed_subscribers("zpravodaj", 3)
    issue = make_issue()
    send(issue)
    late = add_confirmed_subscribers("zpravodaj", 2, start=100)
    db.session.execute(
        Subscription.__table__.update()
        .where(Subscription.subscriber_id.in_(late))
        .values(confirmed_at=issue.snapshot_at + timedelta(seconds=1))
    )  # they confirmed a moment after the editor pressed "send"
    db.session.commit()
    run_jobs(app)
    assert recipients(outbox) == [f"odberatel{n}@example.cz" for n in range(3)]


# --- refusals and faults ----------------------------------------------------


def test_permanent_refusal_is_recorded_per_recipient_and_the_rest_go_out(app, outbox):
    add_confirmed_subscribers("zpravodaj", 5)
    outbox.catcher.reject_rcpt["odberatel2@example.cz"] = (550, "5.1.1 No such user")
    issue = make_issue()
    send(issue)
    run_jobs(app)
    assert len(recipients(outbox)) == 4
    assert counts(issue)["failed"] == 1
    failed = db.session.scalar(select(Delivery).filter_by(status="failed"))
    assert "550" in failed.last_error
    db.session.expire_all()
    assert db.session.get(Issue, issue.id).status == "sent"  # finished, honestly reported


def test_no_such_mailbox_at_rcpt_is_a_hard_bounce_and_the_next_issue_skips_it(app, outbox):
    """A 5.1.1 refusal while sending says as much as a bounce would, at once."""
    add_confirmed_subscribers("zpravodaj", 3)
    outbox.catcher.reject_rcpt["odberatel1@example.cz"] = (550, "5.1.1 No such user")
    send(make_issue())
    run_jobs(app)
    bounced = db.session.scalar(select(Subscriber).filter_by(email="odberatel1@example.cz"))
    db.session.refresh(bounced)
    assert {s.status for s in bounced.subscriptions} == {"bounced"}
    (bounce,) = db.session.scalars(select(Bounce)).all()
    assert (bounce.kind, bounce.status) == ("hard", "5.1.1")
    assert bounce.delivery_id is not None
    # The admin sees the server's own answer as the report (no NUL: PostgreSQL text).
    assert bounce.reason == "address" and "5.1.1 No such user" in bounce.raw
    assert "\0" not in bounce.raw

    outbox.catcher.clear()
    send(make_issue())
    run_jobs(app)
    assert recipients(outbox) == ["odberatel0@example.cz", "odberatel2@example.cz"]


def test_a_policy_refusal_at_rcpt_counts_soft_and_suppresses_nobody_at_once(app, outbox):
    add_confirmed_subscribers("zpravodaj", 2)
    outbox.catcher.reject_rcpt["odberatel0@example.cz"] = (554, "5.7.1 Rejected by policy")
    send(make_issue())
    run_jobs(app)
    (bounce,) = db.session.scalars(select(Bounce)).all()
    assert (bounce.kind, bounce.status) == ("soft", "5.7.1")
    statuses = db.session.scalars(select(Subscription.status)).all()
    assert statuses == ["confirmed", "confirmed"]


def test_temporary_refusal_of_one_recipient_is_retried_without_resending_others(app, outbox):
    add_confirmed_subscribers("zpravodaj", 4)
    outbox.catcher.reject_rcpt["odberatel1@example.cz"] = (451, "4.7.1 Greylisted")
    issue = make_issue()
    send(issue)
    fan_out(issue.id)
    with pytest.raises(TransientFailure):
        deliver_batch(db.session.scalar(select(func.min(Delivery.batch_id))))
    assert len(recipients(outbox)) == 3
    outbox.catcher.reject_rcpt.clear()
    run_jobs(app)  # RQ's Retry (or the queued job) runs the batch again
    assert recipients(outbox) == sorted(f"odberatel{n}@example.cz" for n in range(4))
    assert counts(issue)["sent"] == 4


def test_temporary_refusals_give_up_after_the_configured_attempts(app, outbox):
    add_confirmed_subscribers("zpravodaj", 2)
    outbox.catcher.reject_rcpt["odberatel0@example.cz"] = (452, "4.2.2 Mailbox full")
    issue = make_issue()
    send(issue)
    for _ in range(4):
        run_jobs(app)
        reconcile()
    run_jobs(app)
    assert counts(issue) | {"total": 2} == {
        "total": 2, "sent": 1, "failed": 1, "pending": 0, "skipped": 0, "cancelled": 0
    }  # fmt: skip
    db.session.expire_all()
    assert db.session.get(Issue, issue.id).status == "sent"


def test_smtp_server_down_then_back_the_issue_resumes_by_itself(app, outbox):
    from collections import Counter

    from rq.registry import FailedJobRegistry

    from service.dev.processes import free_port
    from service.jobs import BULK_QUEUE, redis_connection

    add_confirmed_subscribers("zpravodaj", 6)
    down = free_port("127.0.0.1")
    app.config["SMTP_URL"] = f"smtp://127.0.0.1:{down}"  # nobody listens
    issue = make_issue()
    send(issue)
    run_jobs(app)  # the first try and every retry: connection refused

    # Every try happened and failed: the first and one per MAIL_RETRY_INTERVALS.
    tries = 1 + len(app.config["MAIL_RETRY_INTERVALS"])
    db.session.expire_all()
    [batch] = db.session.scalars(select(DeliveryBatch)).all()
    assert batch.attempts == tries
    assert batch.status == "queued" and batch.owner is None  # handed back, not held
    assert batch.last_error.startswith(f"cannot connect to 127.0.0.1:{down}")
    [job_id] = FailedJobRegistry(BULK_QUEUE, connection=redis_connection()).get_job_ids()
    assert job_id == batch.job_id  # RQ gave up after its retries
    assert outbox.mails == []
    assert counts(issue)["pending"] == 6
    assert db.session.get(Issue, issue.id).status == "sending"

    app.config["SMTP_URL"] = outbox.url  # the server is back
    assert reconcile()["batches"] == 1  # what the worker's maintenance runs regularly
    run_jobs(app)
    sent_to = Counter(r for m in outbox.mails for r in m.rcpt_tos)
    assert sent_to == Counter(f"odberatel{n}@example.cz" for n in range(6))  # each once
    assert counts(issue) == {
        "total": 6, "sent": 6, "failed": 0, "pending": 0, "skipped": 0, "cancelled": 0
    }  # fmt: skip
    db.session.expire_all()
    assert db.session.get(DeliveryBatch, batch.id).attempts == tries + 1
    assert db.session.get(Issue, issue.id).status == "sent"


def test_redis_flushed_mid_issue_loses_nothing_and_duplicates_nothing(app, outbox):
    from service.jobs import redis_connection

    add_confirmed_subscribers("zpravodaj", 50)
    app.config["BATCH_SIZE"] = 10
    issue = make_issue()
    send(issue)
    fan_out(issue.id)
    first_batch = db.session.scalar(select(func.min(Delivery.batch_id)))
    deliver_batch(first_batch)
    redis_connection().flushdb()  # every queued batch job is gone
    reconcile()  # what every worker runs at start and every RECONCILE_INTERVAL
    run_jobs(app)
    assert recipients(outbox) == sorted(f"odberatel{n}@example.cz" for n in range(50))


def test_redis_flushed_before_fan_out_loses_nothing(app, outbox):
    from service.jobs import redis_connection

    add_confirmed_subscribers("zpravodaj", 7)
    issue = make_issue()
    send(issue)
    redis_connection().flushdb()
    reconcile()
    run_jobs(app)
    assert len(recipients(outbox)) == 7


def test_batch_run_twice_sends_nothing_twice(app, outbox):
    add_confirmed_subscribers("zpravodaj", 5)
    issue = make_issue()
    send(issue)
    fan_out(issue.id)
    batch_id = db.session.scalar(select(func.min(Delivery.batch_id)))
    assert deliver_batch(batch_id) == "done"
    assert deliver_batch(batch_id) == "skipped"
    assert fan_out(issue.id) == "skipped"
    run_jobs(app)
    assert len(recipients(outbox)) == 5


class HookedCatcher(MailCatcher):
    """Accepts mail and calls `after(n)` after the n-th message: acts mid-issue."""

    def __init__(self, after) -> None:
        super().__init__()
        self.after = after

    async def handle_DATA(self, server, session, envelope):
        answer = await super().handle_DATA(server, session, envelope)
        self.after(len(self.mails))
        return answer


def _sql_on_the_side(app, statement: str, **params) -> None:
    """Run SQL on a connection of its own, as another process (web, admin) would."""
    from sqlalchemy import create_engine, text

    engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    with engine.begin() as connection:
        connection.execute(text(statement), params)
    engine.dispose()


def test_unsubscribe_mid_issue_takes_effect_before_that_message(app, outbox):
    ids = add_confirmed_subscribers("zpravodaj", 6)

    def unsubscribe_the_last(n):
        if n == 2:
            _sql_on_the_side(
                app, "UPDATE subscription SET status='unsubscribed' WHERE subscriber_id=:s",
                s=ids[-1],
            )  # fmt: skip

    catcher = HookedCatcher(unsubscribe_the_last)
    controller = start_catcher(catcher)
    app.config["SMTP_URL"] = f"smtp://127.0.0.1:{controller.port}"
    try:
        issue = make_issue()
        send(issue)
        run_jobs(app)
    finally:
        controller.stop()
    got = sorted(r for m in catcher.mails for r in m.rcpt_tos)
    assert got == [f"odberatel{n}@example.cz" for n in range(5)]
    assert counts(issue)["skipped"] == 1


def test_pause_mid_issue_stops_after_the_message_in_flight(app, outbox):
    add_confirmed_subscribers("zpravodaj", 10)
    issue = make_issue()
    issue_id = issue.id

    def pause_after_three(n):
        if n == 3:
            _sql_on_the_side(app, "UPDATE issue SET status='paused' WHERE id=:i", i=issue_id)

    catcher = HookedCatcher(pause_after_three)
    controller = start_catcher(catcher)
    app.config["SMTP_URL"] = f"smtp://127.0.0.1:{controller.port}"
    try:
        send(issue)
        run_jobs(app)
        assert len(catcher.mails) == 3
        db.session.expire_all()
        issue = db.session.get(Issue, issue.id)
        assert issue.status == "paused"
        sending.resume(issue)
        db.session.commit()
        run_jobs(app)
    finally:
        controller.stop()
    got = sorted(r for m in catcher.mails for r in m.rcpt_tos)
    assert got == sorted(f"odberatel{n}@example.cz" for n in range(10))


def test_issue_cancelled_before_fan_out_reports_everyone_cancelled(app, outbox):
    add_confirmed_subscribers("zpravodaj", 4)
    issue = make_issue()
    send(issue)
    sending.cancel(issue)
    db.session.commit()
    run_jobs(app)
    assert outbox.mails == []
    assert counts(issue) == {
        "total": 4, "sent": 0, "failed": 0, "pending": 0, "skipped": 0, "cancelled": 4
    }  # fmt: skip
    with pytest.raises(sending.IssueStateError, match="už je zrušené"):
        sending.cancel(db.session.get(Issue, issue.id))
    sending.resend_unreached(db.session.get(Issue, issue.id))
    db.session.commit()
    run_jobs(app)
    assert len(recipients(outbox)) == 4


@pytest.mark.parametrize("separator", ["\x0b", "\x0c", "\u2028", "\x85", "\t"])
def test_subject_with_any_line_break_or_control_character_is_refused(app, separator):
    _, errors = sending.validate_fields(f"Zpravodaj{separator}12/2026", BODY, "")
    assert errors == {"subject": "Předmět musí být na jednom řádku a bez řídicích znaků."}
    _, errors = sending.validate_fields("Zpravodaj", BODY, f"perex{separator}dál")
    assert errors == {"preheader": "Perex musí být na jednom řádku a bez řídicích znaků."}


def test_relay_refusing_the_sender_stops_the_batch_instead_of_failing_everyone(app, outbox):
    from aiosmtpd.smtp import SMTP as Server

    class RefusesSender(MailCatcher):
        refuse = True

        async def handle_MAIL(self, server: Server, session, envelope, address, options):
            if self.refuse:
                return "530 5.7.0 Authentication required"
            envelope.mail_from = address
            return "250 OK"

    catcher = RefusesSender()
    controller = start_catcher(catcher)
    app.config["SMTP_URL"] = f"smtp://127.0.0.1:{controller.port}"
    try:
        add_confirmed_subscribers("zpravodaj", 5)
        issue = make_issue()
        send(issue)
        run_jobs(app)
        assert counts(issue)["failed"] == 0
        assert counts(issue)["pending"] == 5
        catcher.refuse = False  # the operator fixed the credentials
        reconcile()
        run_jobs(app)
    finally:
        controller.stop()
    assert len(catcher.mails) == 5
    assert counts(issue)["sent"] == 5


def test_two_editors_starting_one_issue_at_once_start_it_once(app, outbox):
    add_confirmed_subscribers("zpravodaj", 3)
    issue = make_issue()
    _sql_on_the_side(app, "UPDATE issue SET status='sending' WHERE id=:i", i=issue.id)
    with pytest.raises(sending.IssueStateError):
        sending.send_now(issue)  # this session still saw a draft
    db.session.rollback()


def test_fan_out_works_in_slices_queued_behind_their_batches(app, outbox, monkeypatch):
    """A single worker starts sending after the first slice, whatever the list size."""
    import workers.delivery
    from service.jobs import BULK_QUEUE, queue

    monkeypatch.setattr(workers.delivery, "FAN_OUT_CHUNK_BATCHES", 2)
    monkeypatch.setattr(workers.delivery, "FAN_OUT_CHUNKS_PER_JOB", 2)
    app.config["BATCH_SIZE"] = 3
    add_confirmed_subscribers("zpravodaj", 14)
    issue = make_issue()
    send(issue)
    bulk = queue(BULK_QUEUE)
    bulk.empty()  # run the first slice by hand instead of through the queue
    assert fan_out(issue.id) == "continued"
    queued = bulk.job_ids
    assert len(queued) == 3  # the first chunk's two batches, then the continuation behind them
    assert queued[-1].startswith(f"issue-{issue.id}-fan-out-")
    db.session.expire_all()
    assert db.session.get(Issue, issue.id).fanout_done is False
    run_jobs(app)
    assert recipients(outbox) == sorted(f"odberatel{n}@example.cz" for n in range(14))
    db.session.expire_all()
    assert db.session.get(Issue, issue.id).status == "sent"


def test_one_job_sends_the_issue_s_next_queued_batches_and_takes_their_jobs_off_the_queue(
    app, outbox
):
    """A work horse is forked per job: the first batch's job goes on with the issue's
    queued batches (each claimed and leased as its own job would), so a worker forks
    once per few thousand messages, not per batch. Their jobs leave the queue; a job
    that ran anyway would find its batch done."""
    from rq.registry import FinishedJobRegistry

    from service.jobs import BULK_QUEUE, queue

    app.config["BATCH_SIZE"] = 2
    add_confirmed_subscribers("zpravodaj", 5)
    issue = make_issue()
    send(issue)
    bulk = queue(BULK_QUEUE)
    bulk.empty()
    fan_out(issue.id)
    batch_ids = sorted(db.session.scalars(select(DeliveryBatch.id)).all())
    db.session.commit()
    assert len(batch_ids) == 3 and len(bulk.job_ids) == 3
    run_jobs(app)
    assert recipients(outbox) == sorted(f"odberatel{n}@example.cz" for n in range(5))
    finished = FinishedJobRegistry(queue=bulk).get_job_ids()
    assert [job_id.split("-")[2] for job_id in finished] == [str(batch_ids[0])]
    db.session.expire_all()
    assert db.session.get(Issue, issue.id).status == "sent"
    assert [deliver_batch(batch_id) for batch_id in batch_ids] == ["skipped"] * 3
    assert len(outbox.mails) == 5


def test_a_chain_does_not_jump_a_deferred_batch_s_retry_schedule(app, outbox):
    """A recipient's server says "try later" (greylisting): their batch waits for its own
    job's retry schedule (10 s, 1 min …). The next batches' chains must not try it again
    at once, which spent every attempt within seconds and marked the recipient failed."""
    from rq.registry import ScheduledJobRegistry

    from service.jobs import BULK_QUEUE, queue

    app.config["BATCH_SIZE"] = 2
    app.config["MAIL_RETRY_INTERVALS"] = [600, 600]  # as in production: later, not now
    add_confirmed_subscribers("zpravodaj", 6)
    outbox.catcher.reject_rcpt["odberatel0@example.cz"] = (451, "4.7.1 Greylisted")
    issue = make_issue()
    send(issue)
    run_jobs(app)
    greylisted = db.session.scalar(
        select(Delivery)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Subscriber.email == "odberatel0@example.cz")
    )
    assert (greylisted.status, greylisted.attempts) == ("pending", 1)
    assert len(recipients(outbox)) == 5
    batch = db.session.get(DeliveryBatch, greylisted.batch_id)
    assert batch.job_id in ScheduledJobRegistry(queue=queue(BULK_QUEUE)).get_job_ids()


def test_a_chained_batch_handed_back_gets_its_own_job_on_the_retry_schedule(app, outbox):
    """The chain took the batch's job off the queue; when that batch is handed back, a job
    of its own comes back on the retry schedule, and running it reaches the recipient."""
    from rq.job import Job
    from rq.registry import ScheduledJobRegistry

    from service.jobs import BULK_QUEUE, queue, redis_connection

    app.config["BATCH_SIZE"] = 2
    app.config["MAIL_RETRY_INTERVALS"] = [600, 600]
    add_confirmed_subscribers("zpravodaj", 6)
    outbox.catcher.reject_rcpt["odberatel2@example.cz"] = (451, "4.7.1 Greylisted")
    issue = make_issue()
    send(issue)
    run_jobs(app)  # batch 1's job chains batch 2, which defers odberatel2
    deferred = db.session.scalar(
        select(Delivery)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Subscriber.email == "odberatel2@example.cz")
    )
    assert (deferred.status, deferred.attempts) == ("pending", 1)
    batch = db.session.get(DeliveryBatch, deferred.batch_id)
    bulk = queue(BULK_QUEUE)
    scheduled = ScheduledJobRegistry(queue=bulk)
    assert batch.status == "queued" and batch.job_id in scheduled.get_job_ids()
    # Its time comes (as RQ's scheduler would move it): the recipient is reached.
    outbox.catcher.reject_rcpt.clear()
    job = Job.fetch(batch.job_id, connection=redis_connection())
    scheduled.remove(job)
    bulk.enqueue_job(job)
    run_jobs(app)
    assert recipients(outbox) == sorted(f"odberatel{n}@example.cz" for n in range(6))
    db.session.expire_all()
    assert db.session.get(Issue, issue.id).status == "sent"


def test_a_paused_issue_s_queued_batches_are_not_chained(app, outbox, monkeypatch):
    """Chaining stops where a job of its own would: nothing of a paused issue is sent,
    and its batches keep their own jobs (which find it paused) until it resumes."""
    from rq.registry import FinishedJobRegistry

    from service.jobs import BULK_QUEUE, queue

    app.config["BATCH_SIZE"] = 2
    add_confirmed_subscribers("zpravodaj", 5)
    issue = make_issue()
    send(issue)
    fan_out(issue.id)
    db.session.commit()
    finish = workers_delivery.BatchSender._finish

    paused: list[int] = []

    def finish_then_pause(sender) -> str:  # the editor pauses as the first batch ends
        outcome = finish(sender)
        if not paused:
            paused.append(sender.batch_id)
            sending.pause(db.session.get_one(Issue, sender.issue_id))
            db.session.commit()
        return outcome

    monkeypatch.setattr(workers_delivery.BatchSender, "_finish", finish_then_pause)
    run_jobs(app)  # the first batch's job runs first
    assert len(outbox.mails) == 2
    db.session.expire_all()
    statuses = db.session.scalars(select(DeliveryBatch.status).order_by(DeliveryBatch.id)).all()
    assert statuses == ["done", "queued", "queued"]
    finished = FinishedJobRegistry(queue=queue(BULK_QUEUE)).get_job_ids()
    assert len([job_id for job_id in finished if "-batch-" in job_id]) == 3  # each its own
    db.session.commit()
    sending.resume(db.session.get_one(Issue, issue.id))
    db.session.commit()
    run_jobs(app)
    assert recipients(outbox) == sorted(f"odberatel{n}@example.cz" for n in range(5))


def test_a_chain_of_batches_gives_way_to_a_waiting_single_mail(app, outbox, monkeypatch):
    """A confirmation queued while a job chains batches is not kept waiting for the
    whole chain: the chain ends, the worker takes the mail queue first, and the
    remaining batches go out through their own jobs."""
    from rq.registry import FinishedJobRegistry

    from service.jobs import BULK_QUEUE, MAIL_QUEUE, queue

    app.config["BATCH_SIZE"] = 2
    add_confirmed_subscribers("zpravodaj", 5)
    issue = make_issue()
    send(issue)
    finish = workers_delivery.BatchSender._finish

    def finish_then_a_sign_up_arrives(sender) -> str:
        if not queue(MAIL_QUEUE).count and sender.batch_id == first_batch[0]:
            queue(MAIL_QUEUE).enqueue("service.clock.utcnow", job_id="a-confirmation")
        return finish(sender)

    first_batch: list[int] = []
    fan_out(issue.id)
    first_batch.append(db.session.scalar(select(func.min(DeliveryBatch.id))))
    db.session.commit()
    monkeypatch.setattr(workers_delivery.BatchSender, "_finish", finish_then_a_sign_up_arrives)
    run_jobs(app)
    assert recipients(outbox) == sorted(f"odberatel{n}@example.cz" for n in range(5))
    finished = FinishedJobRegistry(queue=queue(BULK_QUEUE)).get_job_ids()
    batches_with_a_job = sorted(
        int(job_id.split("-")[2]) for job_id in finished if "-batch-" in job_id
    )
    # The first job stopped after its own batch; the second batch's job chained the third.
    assert batches_with_a_job == [first_batch[0], first_batch[0] + 1]
    assert FinishedJobRegistry(queue=queue(MAIL_QUEUE)).get_job_ids() == ["a-confirmation"]


def test_a_subscribers_own_export_lists_the_issues_sent_to_them(app, outbox):
    from service.models import Subscriber
    from service.subscriptions.actions import export

    add_confirmed_subscribers("zpravodaj", 1)
    send(make_issue())
    run_jobs(app)
    db.session.expire_all()
    data = export(db.session.scalar(select(Subscriber)))
    [delivery] = data["deliveries"]
    assert delivery["issue"] == "Zpravodaj 12/2026"
    assert delivery["status"] == "sent"
    assert delivery["message_id"] == outbox.mails[0].message["Message-ID"]


def test_group_announcement_links_each_member_to_the_members_page(app, client, outbox):
    add_confirmed_subscribers("ostrava-psb", 2)
    send(make_issue("ostrava-psb", "Pozvánka na setkání"))
    run_jobs(app)
    assert len(outbox.mails) == 2
    for mail in outbox.mails:
        path = link_to(mail, "/groups/ostrava-psb/member/")
        html = mail.message.get_body(("html",)).get_content()
        assert path in html
        page = client.get(path)
        assert page.status_code == 200
        assert "Pozvánka na setkání" in page.get_data(as_text=True)
    assert "/archive/" not in outbox.mails[0].message.get_body(("plain",)).get_content()


def counted_by_rows(issue_id: int) -> dict[str, int]:
    """The deliveries counted one by one: what the per-batch counters must always equal."""
    db.session.expire_all()
    rows = db.session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.issue_id == issue_id)
        .group_by(Delivery.status)
    ).all()
    return {status: n for status, n in rows}


def counted_by_batches(issue_id: int) -> dict[str, int]:
    batches = db.session.scalars(select(DeliveryBatch).where(DeliveryBatch.issue_id == issue_id))
    totals = {"total": 0, "sent": 0, "failed": 0, "skipped": 0, "cancelled": 0}
    for batch in batches:
        totals["total"] += batch.total_count
        for status in ("sent", "failed", "skipped", "cancelled"):
            totals[status] += getattr(batch, f"{status}_count")
    return totals


def assert_counters_in_step(issue_id: int) -> None:
    rows = counted_by_rows(issue_id)
    batches = counted_by_batches(issue_id)
    assert batches["total"] == sum(rows.values())
    for status in ("sent", "failed", "skipped", "cancelled"):
        assert batches[status] == rows.get(status, 0), (status, rows, batches)


def test_per_batch_counters_stay_in_step_through_refusals_unsubscribes_cancel_and_resend(
    app, outbox
):
    """Progress reads the batches' counters only: whatever moved the deliveries (a send,
    a refusal, an unsubscribe found at the batch's start, a cancel, "send again"),
    the counters say what counting the delivery rows says."""
    add_confirmed_subscribers("zpravodaj", 9)
    app.config["BATCH_SIZE"] = 3
    outbox.catcher.reject_rcpt["odberatel1@example.cz"] = (550, "5.1.1 No such user")
    issue = make_issue()
    send(issue)
    fan_out(issue.id)
    _sql_on_the_side(
        app,
        "UPDATE subscription SET status = 'unsubscribed' WHERE subscriber_id = "
        "(SELECT id FROM subscriber WHERE email = 'odberatel2@example.cz')",
    )
    first_batch = db.session.scalar(select(func.min(Delivery.batch_id)))
    deliver_batch(first_batch)
    assert_counters_in_step(issue.id)
    sending.cancel(db.session.get(Issue, issue.id))
    db.session.commit()
    run_jobs(app)
    assert_counters_in_step(issue.id)
    assert counts(issue) == {
        "total": 9, "sent": 1, "failed": 1, "pending": 0, "skipped": 1, "cancelled": 6
    }  # fmt: skip

    db.session.expire_all()
    assert sending.resend_unreached(db.session.get(Issue, issue.id)) == 7
    db.session.commit()
    run_jobs(app)
    assert_counters_in_step(issue.id)
    assert counts(issue)["sent"] == 7
    assert db.session.get(Issue, issue.id).status == "sent"


def test_deleting_a_subscriber_or_an_issue_deletes_its_deliveries_without_foreign_keys(app, outbox):
    """`delivery` has no foreign keys (a large fan-out paid for checking them row by
    row): triggers delete the deliveries of an erased subscriber, and of an issue's
    batches when the issue goes, and the batch counters follow."""
    from service.models import Subscriber

    add_confirmed_subscribers("zpravodaj", 4)
    issue = make_issue()
    send(issue)
    run_jobs(app)
    erased = db.session.scalar(select(Subscriber).filter_by(email="odberatel1@example.cz"))
    db.session.delete(erased)
    db.session.commit()
    assert sorted(counted_by_rows(issue.id).items()) == [("sent", 3)]
    assert_counters_in_step(issue.id)
    assert counts(issue)["total"] == 3

    db.session.delete(db.session.get(Issue, issue.id))
    db.session.commit()
    assert db.session.scalar(select(func.count()).select_from(Delivery)) == 0
    assert db.session.scalar(select(func.count()).select_from(DeliveryBatch)) == 0
