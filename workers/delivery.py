"""The delivery engine: every bulk mail (issues, announcements) goes out through here.

Jobs, all on the `bulk` queue and all safe to run twice:

- `start_scheduled(issue_id)`: fired by RQ's scheduler at the issue's time.
- `fan_out(issue_id)`: pages through the recipients by subscriber id (keyset,
  so memory stays flat for any list size), writes ten `DeliveryBatch`es and
  their `Delivery` rows per transaction with one INSERT … SELECT, and enqueues
  the batches as it goes; its first job writes one such chunk and hands over,
  so the first mails leave while later batches are being written.
- `deliver_batch(batch_id)`: sends one batch over one SMTP connection.
- `cancel_batches(issue_id)`: after a cancel, walks the issue's unfinished
  batches and marks their deliveries cancelled, a batch per transaction.

Per message, one statement (its own transaction) records the previous message
as sent and claims this one, only if the issue is still sending, the batch
still ours and the subscription still confirmed; only then is the message
sent. On PostgreSQL the statement runs while the worker sends the
message's envelope (MAIL FROM, RCPT TO); the worker waits for its
commit before DATA and resets the SMTP transaction if the claim failed
(`ClaimsInFlight`, `SmtpTransport.send`'s gate), so the server never accepts a
message before its claim and the previous message's record are committed.
With DKIM on, each message is composed and signed while the server digests the
one before (between its final dot and the answer): CPU work only, its claim
still after.
A worker killed at any point leaves at most the one message in flight
unrecorded, and that is the only one another worker may send again. Batches
are leased (`owner`, `heartbeat`), the heartbeat renewed from a thread of the
holder's own while it works (service/lease.py), so a send that waits long for
the SMTP server keeps its batch: the reconciler gives a batch whose heartbeat
went stale (its worker is gone) to a new job, and a worker that lost its lease
stops, recording nothing over what the new holder records.

The per-batch counters progress reads (`DeliveryBatch.*_count`) are kept by
database triggers on `delivery` (service/batch_counts.py), so every statement
here that moves a delivery moves its batch's counts in the same transaction.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import re
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import IO, TYPE_CHECKING, Any

from flask import current_app
from redis import Redis
from rq import get_current_job
from rq.job import Job, JobStatus
from sqlalchemy import Row, Update, and_, case, func, insert, literal, or_, select, update
from sqlalchemy.engine import Connection, Engine

from service import jobs
from service.bounces.recording import record_refusal
from service.bounces.verp import envelope_sender_for
from service.clock import utcnow
from service.database import sqlite_lock_path
from service.extensions import db
from service.issues.rendering import MessageSkeleton, Recipient, skeleton_for
from service.issues.sending import begin_delivery, recipients_condition, recipients_query
from service.jobs import LIVE_JOB_STATES, redis_connection
from service.lease import LeaseKeeper
from service.logging_setup import bind
from service.models import (
    BatchStatus,
    Delivery,
    DeliveryBatch,
    DeliveryStatus,
    Issue,
    IssueStatus,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    rows_matched,
)

from . import shutdown
from .rate_limit import SendRateLimiter, parse_domain_rates
from .smtp import (
    PermanentFailure,
    RecipientRefused,
    ServerUnavailable,
    Signed,
    TransientFailure,
    Withdrawn,
)
from .smtp_recovery import WAITING_KEY
from .transport import app_transport

if TYPE_CHECKING:
    from .pg_claims import ClaimsInFlight

    # A delivery still to send, with its subscriber (BatchSender._load_unfinished).
    _UnfinishedRow = Row[int, int, int, str, str, str | None, str]

log = logging.getLogger(__name__)

# Batches the fan-out writes per transaction (and enqueues in one Redis round trip):
# a few thousand rows, so the per-statement and per-commit costs are paid rarely
# (bench/README.md, "Fan-out"), while no transaction grows large.
FAN_OUT_CHUNK_BATCHES = 10
# Chunks one fan-out job writes before handing over to a continuation queued behind
# its batches (the first job writes a single chunk, for a quick first mail).
FAN_OUT_CHUNKS_PER_JOB = 10
# Deliveries not yet sent nor given up: a claim finds them "sending" after a crash.
UNFINISHED_DELIVERY = (DeliveryStatus.PENDING, DeliveryStatus.SENDING)
# What "send again to those not reached" puts back.
UNREACHED_DELIVERY = (DeliveryStatus.FAILED, DeliveryStatus.CANCELLED, DeliveryStatus.PENDING)


def lease() -> timedelta:
    """How long a batch or fan-out stays claimed without a heartbeat."""
    return timedelta(seconds=current_app.config["BATCH_LEASE_SECONDS"])


def heartbeat_every() -> float:
    """How often a worker renews the lease of the batch it holds."""
    return max(0.5, current_app.config["BATCH_LEASE_SECONDS"] / 6)


def max_attempts() -> int:
    """Tries per recipient for temporary refusals (4xx) before it counts as failed."""
    return len(current_app.config["MAIL_RETRY_INTERVALS"]) + 1


# --- starting ---------------------------------------------------------------


def start_scheduled(issue_id: int) -> str:
    """Start a scheduled issue if it is (still) scheduled and due."""
    bind(issue_id=issue_id)
    if not Issue.start_if_due(issue_id, utcnow() + timedelta(seconds=1)):
        db.session.rollback()
        return "not due"
    # The conditional update holds the row until commit: a twin job waits and then finds
    # the issue no longer scheduled.
    issue = db.session.get_one(Issue, issue_id)
    begin_delivery(issue)
    db.session.commit()
    log.info("scheduled issue %s started", issue_id)
    return "started"


# --- fan-out ----------------------------------------------------------------


def fan_out(issue_id: int) -> str:
    """Write one slice of the issue's delivery batches chunk by chunk, enqueue them, and
    hand the rest to a fresh job queued behind them.

    Slicing keeps the time to the first mail short whatever the list size,
    even with a single worker: the first slice is a single chunk (a fraction
    of a second), so the first mails leave before the continuation writes the
    rest, and each later slice's batches are in the queue ahead of the next
    continuation.
    """
    bind(issue_id=issue_id)
    if not _claim_fan_out(issue_id):
        # A cancel that landed while the previous slice wrote its last batch left that
        # batch pending (the loop's status check came before it): this continuation
        # is the one job still to come, so it cancels what is left.
        if db.session.scalar(select(Issue.status).where(Issue.id == issue_id)) == "cancelled":
            cancel_batches(issue_id)
        db.session.commit()
        return "skipped"
    issue = db.session.get_one(Issue, issue_id)
    first_slice = issue.fanout_cursor == 0
    for _ in range(1 if first_slice else FAN_OUT_CHUNKS_PER_JOB):
        status = db.session.scalar(select(Issue.status).where(Issue.id == issue_id))
        if status not in Issue.DELIVERING:
            if status == IssueStatus.CANCELLED:
                cancel_batches(issue_id)
            break
        written, done = _write_chunk(issue, FAN_OUT_CHUNK_BATCHES)
        if status == IssueStatus.SENDING:  # a paused issue's batches wait for resume
            jobs.enqueue_batches(written)
        if done:
            break
    else:
        _hand_over_fan_out(issue)
        return "continued"
    finish_if_complete(issue_id)
    return "done"


def _claim_fan_out(issue_id: int) -> bool:
    """Take the issue's fan-out lease: ours by job id, or free, or stale."""
    now = utcnow()
    me = _current_job_id()
    claimed = rows_matched(
        update(Issue)
        .where(
            Issue.id == issue_id,
            Issue.status.in_(Issue.DELIVERING),
            Issue.fanout_done.is_(False),
            or_(
                Issue.fanout_job_id == me if me else False,
                Issue.fanout_heartbeat.is_(None),
                Issue.fanout_heartbeat < now - lease(),
            ),
        )
        .values(fanout_heartbeat=now, fanout_job_id=me)
    )
    db.session.commit()
    return bool(claimed)


def _write_chunk(issue: Issue, batches: int) -> tuple[list[tuple[int, str]], bool]:
    """Up to `batches` batches of the next recipients, in one transaction; returns
    them as (batch id, job id), and whether nobody is left after them (the
    issue's fan-out is then marked done in the same transaction).

    Five statements whatever the chunk's size: the batches' bounds (every
    BATCH_SIZE-th subscriber id), the batch rows, every delivery row of the
    chunk in one INSERT … SELECT (the database picks each row's batch by its
    subscriber id, no id travels to Python), the batches' counts and job ids,
    and the cursor. The cursor moves in the same transaction as the rows, so a
    fan-out killed at any point resumes where its last commit left it.
    """
    size = current_app.config["BATCH_SIZE"]
    after = issue.fanout_cursor
    bounds, done = _chunk_bounds(issue, size, batches)
    if not bounds:
        _fan_out_done(issue)
        db.session.commit()
        return [], True
    now = utcnow()
    batch_ids = db.session.scalars(
        insert(DeliveryBatch).returning(DeliveryBatch.id, sort_by_parameter_order=True),
        [{"issue_id": issue.id, "status": BatchStatus.QUEUED, "created_at": now}] * len(bounds),
    ).all()
    batch_of = case(
        *((Subscription.subscriber_id <= last, batch_id)
          for last, batch_id in zip(bounds, batch_ids, strict=True))
    )  # fmt: skip
    rows = select(
        literal(issue.id), batch_of, Subscription.subscriber_id,
        literal(DeliveryStatus.PENDING.value), literal(0),
    ).where(
        recipients_condition(issue),
        Subscription.subscriber_id > after,
        Subscription.subscriber_id <= bounds[-1],
    )  # fmt: skip
    db.session.execute(
        insert(Delivery.__table__).from_select(
            ["issue_id", "batch_id", "subscriber_id", "status", "attempts"], rows
        )
    )
    job_ids = _count_batches(batch_ids)
    issue.fanout_cursor, issue.fanout_heartbeat = bounds[-1], utcnow()
    if done:
        _fan_out_done(issue)
    db.session.commit()
    return list(job_ids.items()), done


def _chunk_bounds(issue: Issue, size: int, batches: int) -> tuple[list[int], bool]:
    """The last subscriber id of each of the chunk's batches (every `size`-th recipient
    after the cursor, up to `batches` of them), and whether nobody is left after them."""
    page = (
        recipients_query(issue, after=issue.fanout_cursor, limit=size * batches)
        .add_columns(
            ((func.row_number().over(order_by=Subscription.subscriber_id) - 1) // size).label("n")
        )
        .subquery()
    )
    pages = db.session.execute(
        select(func.max(page.c.subscriber_id), func.count()).group_by(page.c.n).order_by(page.c.n)
    ).all()
    # A short chunk is the last: nobody is left after it (no extra round trip to learn so).
    return [last for last, _ in pages], sum(count for _, count in pages) < size * batches


def _count_batches(batch_ids: Sequence[int]) -> dict[int, str]:
    """Set the new batches' counts and job ids in one UPDATE; returns the job ids."""
    job_ids = {batch_id: jobs.new_batch_job_id(batch_id) for batch_id in batch_ids}
    # Counted from the rows written, not from the bounds' read: someone may have left
    # between the two statements.
    db.session.execute(
        update(DeliveryBatch)
        .where(DeliveryBatch.id.in_(batch_ids))
        .values(
            total_count=select(func.count())
            .select_from(Delivery)
            .where(Delivery.batch_id == DeliveryBatch.id)
            .scalar_subquery(),
            job_id=case(job_ids, value=DeliveryBatch.id),
        )
        .execution_options(synchronize_session=False)
    )
    return job_ids


def _fan_out_done(issue: Issue) -> None:
    """Every recipient has a delivery row: only batches remain (committed by the caller)."""
    issue.fanout_done, issue.fanout_heartbeat, issue.fanout_job_id = True, None, None


def _hand_over_fan_out(issue: Issue) -> None:
    """The slice is written: pass the lease to a continuation queued behind its batches."""
    continuation = jobs.new_fan_out_job_id(issue.id)
    issue.fanout_job_id, issue.fanout_heartbeat = continuation, utcnow()
    db.session.commit()
    jobs.enqueue_fan_out(issue.id, continuation)


def _current_job_id() -> str | None:
    job = get_current_job()
    return job.id if job is not None else None


# --- sending a batch ----------------------------------------------------------


_skeletons: dict[tuple[int, object], MessageSkeleton] = {}


def _skeleton(issue: Issue) -> MessageSkeleton:
    """One skeleton per issue and process: every batch of it reuses the encoding."""
    key = (issue.id, issue.started_at)
    if key not in _skeletons:
        if len(_skeletons) > 8:
            _skeletons.clear()
        _skeletons[key] = skeleton_for(issue)
    return _skeletons[key]


def _rate_limiter() -> SendRateLimiter:
    config = current_app.config
    return SendRateLimiter(
        redis_connection(), config["SEND_RATE"], parse_domain_rates(config["SEND_RATE_PER_DOMAIN"])
    )


def deliver_batch(batch_id: int) -> str:
    """Send a batch's pending deliveries; see the module docstring for the guarantees.

    Run as a job, it then goes on with up to CHAIN_BATCHES - 1 more of the
    issue's queued batches, each claimed as its own job would claim it (and
    that job then taken off the queue): a worker forks a work horse per job,
    and a horse's fork, page copies, connections and skeleton cost about as
    much CPU as sending a hundred messages (bench/README.md, Delivery). Each
    batch keeps its own lease, SMTP session and outcome; the job's result is
    the first batch's.
    """
    outcome = _deliver_leased(batch_id)
    if outcome == "done" and get_current_job() is not None:
        _deliver_more(batch_id)
    return outcome


# Batches one job sends back to back (its own, then the same issue's queued ones).
CHAIN_BATCHES = 20


def _deliver_more(batch_id: int) -> None:
    """The issue's next queued batches, while the issue sends, the worker is not
    stopping and no single mail (a confirmation) waits on the mail queue, which a
    worker serves before bulk work between jobs.

    Only batches never tried: one handed back (a recipient's server said "try
    later", the relay was away) waits for its own job's retry schedule, which a
    chain must not jump. A chained batch handed back gets its job back on that
    schedule (its own was taken off the queue) and ends the chain; any other
    failure of a chained batch ends the chain too, without failing the job whose
    own batch is done (the reconciler gives that batch a fresh job)."""
    issue_id = db.session.scalar(select(DeliveryBatch.issue_id).where(DeliveryBatch.id == batch_id))
    db.session.commit()
    mail = jobs.queue(jobs.MAIL_QUEUE)
    for _ in range(CHAIN_BATCHES - 1):
        if shutdown.requested() or mail.count:
            return
        queued = db.session.execute(
            select(DeliveryBatch.id, DeliveryBatch.job_id)
            .join(Issue, Issue.id == DeliveryBatch.issue_id)
            .where(
                DeliveryBatch.issue_id == issue_id,
                DeliveryBatch.status == BatchStatus.QUEUED,
                DeliveryBatch.attempts == 0,
                Issue.status == IssueStatus.SENDING,
            )
            .order_by(DeliveryBatch.id)
            .limit(1)
        ).first()
        db.session.commit()
        if queued is None:
            return
        try:
            outcome = _deliver_leased(queued.id, job_to_drop=queued.job_id)
        except TransientFailure as exc:
            log.info("batch %s handed back (%s); this job sends no more", queued.id, exc)
            _schedule_own_job(queued.id, exc)
            return
        except Exception:
            log.exception("chained batch %s failed; the reconciler gives it a job", queued.id)
            db.session.rollback()
            return
        if outcome not in ("done", "skipped"):
            return


def _schedule_own_job(batch_id: int, exc: TransientFailure) -> None:
    """A chained batch handed back: a job of its own after the first retry interval, with
    RQ's retries after that, as its dropped job would have had; one stopped by an
    unreachable relay also waits for the relay's return (smtp_recovery). If Redis fails
    here, the reconciler finds the batch without a live job and queues one."""
    job_id = jobs.new_batch_job_id(batch_id)
    try:
        db.session.execute(
            update(DeliveryBatch)
            .where(DeliveryBatch.id == batch_id, DeliveryBatch.status == BatchStatus.QUEUED)
            .values(job_id=job_id)
        )
        db.session.commit()
        delay = current_app.config["MAIL_RETRY_INTERVALS"][0]
        jobs.enqueue_batch_in(batch_id, job_id, delay)
        if isinstance(exc, ServerUnavailable):
            redis_connection().sadd(WAITING_KEY, job_id)
    except Exception:
        db.session.rollback()
        log.exception("batch %s: no job scheduled; the reconciler will queue one", batch_id)


def _deliver_leased(batch_id: int, job_to_drop: str | None = None) -> str:
    """Claim the batch, keep its lease from then on (rendering the issue's skeleton
    or a slow database must not make it look abandoned), and send it. Once claimed,
    `job_to_drop` (the batch's own job, when another job sends it) leaves the queue."""
    owner = secrets.token_hex(8)
    if not _claim_batch(batch_id, owner):
        log.info("batch %s is done or another worker has it; skipping", batch_id)
        return "skipped"
    if job_to_drop:
        _drop_queued_job(job_to_drop)
    keeper = LeaseKeeper(
        _BatchHeartbeat(db.engine, batch_id, owner),
        heartbeat_every(),
        name=f"batch-{batch_id}-lease",
    )
    keeper.start()
    try:
        return _deliver_claimed(batch_id, owner, keeper)
    finally:
        keeper.stop()


def _drop_queued_job(job_id: str) -> None:
    """Take a batch's job off the queue, if it is still waiting there (a job already
    picked up, or one left in Redis by a failure here, finds its batch taken)."""
    with contextlib.suppress(Exception):
        job = Job.fetch(job_id, connection=redis_connection())
        if job.get_status(refresh=False) == JobStatus.QUEUED:
            job.delete(remove_from_queue=True)


def _deliver_claimed(batch_id: int, owner: str, keeper: LeaseKeeper) -> str:
    """The batch is ours (`owner`) and its lease kept by `keeper`: send it."""
    batch = db.session.get_one(DeliveryBatch, batch_id)
    bind(issue_id=batch.issue_id)
    issue = db.session.get_one(Issue, batch.issue_id)
    if batch.resend:
        _put_back_unreached(batch)
    if issue.status != IssueStatus.SENDING:
        _stop_batch(batch_id, owner, issue.status)
        return issue.status
    try:
        sender = BatchSender(issue, batch_id, owner, keeper)
    except Exception:
        db.session.rollback()
        _release(batch_id, owner)
        db.session.commit()
        raise
    try:
        return sender.run()
    except TransientFailure:
        raise  # the batch is already handed back for RQ's Retry
    except Exception:
        # Anything else (a bug, the database away): hand the batch back at once
        # instead of holding the lease until it expires.
        db.session.rollback()
        with contextlib.suppress(Exception):
            _release(batch_id, owner)
            db.session.commit()
        raise
    finally:
        sender.close()


def _claim_batch(batch_id: int, owner: str) -> bool:
    """Lease the batch if it is queued or its lease ran out.

    On PostgreSQL the row is picked `FOR UPDATE SKIP LOCKED`: a second job for
    the same batch (a reconciler's re-enqueue) passes it by at once instead of
    queueing behind the first claim's transaction.
    """
    now = utcnow()
    claimable = (
        select(DeliveryBatch.id)
        .where(
            DeliveryBatch.id == batch_id,
            or_(
                DeliveryBatch.status == BatchStatus.QUEUED,
                and_(
                    DeliveryBatch.status == BatchStatus.RUNNING,
                    DeliveryBatch.heartbeat < now - lease(),
                ),
            ),
        )
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    claimed = rows_matched(
        update(DeliveryBatch)
        .where(DeliveryBatch.id == claimable)
        .values(
            status=BatchStatus.RUNNING,
            owner=owner,
            heartbeat=now,
            attempts=DeliveryBatch.attempts + 1,
        )
    )
    db.session.commit()
    return bool(claimed)


def _put_back_unreached(batch: DeliveryBatch) -> None:
    """ "Send again to those not reached" reaches this batch: its unreached deliveries
    are pending again, in the batch's own transaction (see sending.resend_unreached)."""
    db.session.execute(
        update(Delivery)
        .where(Delivery.batch_id == batch.id, Delivery.status.in_(UNREACHED_DELIVERY))
        .values(status=DeliveryStatus.PENDING, attempts=0, last_error=None)
    )
    batch.resend = False
    db.session.commit()


def _stop_batch(batch_id: int, owner: str, issue_status: str | None) -> None:
    """The issue no longer sends: a cancelled issue's batch is closed, a paused one's
    handed back for resume."""
    if issue_status == IssueStatus.CANCELLED:
        _cancel_batch(batch_id, db.session.get_one(DeliveryBatch, batch_id).issue_id)
    else:
        _release(batch_id, owner)
    db.session.commit()


def skip_no_longer_subscribed(batch_id: int, list_id: int) -> Update:
    """The batch's unfinished deliveries whose subscription is no longer confirmed
    (unsubscribed, bounced, removed since the fan-out), marked skipped.

    The confirmed subscription is looked up per delivery by a scalar subquery on
    all three columns of an index ((list, status, subscriber) or the (subscriber,
    list) key): one exact index probe each, whatever the planner knows. Written as
    NOT EXISTS, PostgreSQL planned it as an anti-join, and without statistics on
    the tables (just written, autovacuum off or not yet run) it estimated one
    delivery and scanned the list's confirmed subscriptions for each: 0.55 s of
    the server's CPU for a batch of 500 from a list of 2,000 in the benchmark,
    growing with the list (bench/README.md, "Two workers on PostgreSQL")."""
    confirmed = (
        select(Subscription.subscriber_id)
        .where(
            Subscription.list_id == list_id,
            Subscription.status == SubscriptionStatus.CONFIRMED,
            Subscription.subscriber_id == Delivery.subscriber_id,
        )
        .scalar_subquery()
    )
    return (
        update(Delivery)
        .where(
            Delivery.batch_id == batch_id,
            Delivery.status.in_(UNFINISHED_DELIVERY),
            confirmed.is_(None),
        )
        .values(status=DeliveryStatus.SKIPPED, last_error="no longer subscribed")
        .execution_options(synchronize_session=False)
    )


class _Statements:
    """The SQL of the per-message path, written once per dialect and run on the
    driver's own cursor: building and compiling SQLAlchemy statements per
    message cost more than the SMTP exchange (bench/README.md, Delivery)."""

    # Record the previous message as sent and claim this one, in one statement.
    # The claim holds only while the issue sends, the batch is ours and the
    # subscription confirmed: a pause or an unsubscribe stops the next message.
    RECORD_AND_CLAIM = """
        UPDATE delivery SET
          status = CASE WHEN id = :sent_id THEN 'sent' ELSE 'sending' END,
          sent_at = CASE WHEN id = :sent_id THEN :now ELSE sent_at END,
          message_id = CASE WHEN id = :sent_id THEN :message_id ELSE message_id END,
          last_error = CASE WHEN id = :sent_id THEN NULL ELSE last_error END,
          claimed_at = CASE WHEN id = :sent_id THEN claimed_at ELSE :now END
        WHERE id = :sent_id
           OR (id = :claim_id
               AND status IN ('pending', 'sending')
               AND EXISTS (SELECT 1 FROM subscription
                           WHERE subscriber_id = :subscriber_id AND list_id = :list_id
                             AND status = 'confirmed')
               AND EXISTS (SELECT 1 FROM issue WHERE id = :issue_id AND status = 'sending')
               AND EXISTS (SELECT 1 FROM delivery_batch
                           WHERE id = :batch_id AND owner = :owner))
        RETURNING id
    """
    BEAT = """
        UPDATE delivery_batch SET heartbeat = :now WHERE id = :batch_id AND owner = :owner
    """

    def __init__(self, connection: Connection) -> None:
        self.sqlite = connection.dialect.name == "sqlite"
        driver = connection.connection.driver_connection
        if driver is None:  # only once the pool has invalidated the connection
            raise RuntimeError("the database connection is closed")
        self.cursor = driver.cursor()
        self.writer_queue = _sqlite_writer_queue(connection) if self.sqlite else None
        if self.sqlite:
            self.record_and_claim, self.beat = self.RECORD_AND_CLAIM, self.BEAT
            self.claims: ClaimsInFlight | None = None
        else:  # psycopg: %(name)s placeholders
            from .pg_claims import ClaimsInFlight  # psycopg stays out of a SQLite worker

            self.record_and_claim = _pyformat(self.RECORD_AND_CLAIM)
            self.beat = _pyformat(self.BEAT)
            self.claims = ClaimsInFlight(driver.pgconn, self.RECORD_AND_CLAIM)
            # Prepared once per server session: the pool's record of the connection
            # remembers it (and forgets it with the connection).
            if not connection.info.get(ClaimsInFlight.NAME):
                self.claims.prepare()
                connection.info[ClaimsInFlight.NAME] = True

    def time(self, moment: datetime) -> Any:
        """A timestamp as SQLAlchemy stores it (SQLite keeps text with microseconds)."""
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f") if self.sqlite else moment

    def run(self, sql: str, params: dict[str, Any]) -> list[tuple]:
        if self.writer_queue is None:
            if self.sqlite:
                self.cursor.execute(sql, params)
            else:  # psycopg: prepared on the server at once, no count of runs kept
                self.cursor.execute(sql, params, prepare=True)
            return self.cursor.fetchall() if self.cursor.description else []
        # Wait our turn on the queue's lock: the kernel wakes the next worker the
        # moment the statement is done, where SQLite's busy handler sleeps and polls
        # (1, 2, 5, 10… ms), which made two workers slower than one.
        fcntl.flock(self.writer_queue, fcntl.LOCK_EX)
        try:
            self.cursor.execute(sql, params)
            return self.cursor.fetchall() if self.cursor.description else []
        finally:
            fcntl.flock(self.writer_queue, fcntl.LOCK_UN)

    def start_claim(self, params: dict[str, Any]) -> _Claim:
        """Start the record-and-claim statement for `params["claim_id"]`.

        On PostgreSQL it is only sent: the caller does the SMTP envelope while
        the database executes and commits it, and waits for it (`_Claim.wait`)
        before DATA. On SQLite, where the statement costs no round trip, it runs
        at once, so a failed claim costs no SMTP exchange at all."""
        if self.claims is None:
            return _Claim(params["claim_id"], rows=self.run(self.record_and_claim, params))
        self.claims.send(params)
        return _Claim(params["claim_id"], waiting=self.claims)

    def close(self) -> None:
        if self.claims is not None:
            with contextlib.suppress(Exception):
                self.claims.drain()
        if self.writer_queue is not None:
            self.writer_queue.close()


class _Claim:
    """A record-and-claim statement, done (SQLite) or in flight (PostgreSQL)."""

    def __init__(
        self,
        delivery_id: int,
        rows: list[tuple] | None = None,
        waiting: ClaimsInFlight | None = None,
    ) -> None:
        self.delivery_id = delivery_id
        self._waiting = waiting
        self.claimed: bool | None = (
            None if rows is None else any(row[0] == delivery_id for row in rows)
        )

    @property
    def settled(self) -> bool:
        return self.claimed is not None

    def wait(self) -> bool:
        """Whether the delivery is ours to send; the previous message's record and this
        claim are committed by the time this returns."""
        if self.claimed is None:
            assert self._waiting is not None
            self.claimed = self.delivery_id in self._waiting.wait()
        return self.claimed

    def drain(self) -> None:
        """Wait for the statement after an error, ignoring its outcome."""
        if self.claimed is None and self._waiting is not None:
            with contextlib.suppress(Exception):
                self._waiting.drain()


def _sqlite_writer_queue(connection: Connection) -> IO[bytes] | None:
    """A lock file beside the SQLite database that the workers' per-message writes queue on."""
    path = sqlite_lock_path(connection.engine.url, "delivery")
    return None if path is None else open(path, "ab")  # closed by close()


def _pyformat(sql: str) -> str:
    return re.sub(r":(\w+)", r"%(\1)s", sql)


class BatchSender:
    """The send loop of one claimed batch."""

    def __init__(self, issue: Issue, batch_id: int, owner: str, keeper: LeaseKeeper) -> None:
        self.issue_id = issue.id
        self.list_id = issue.list_id
        self.batch_id = batch_id
        self.owner = owner
        self.skeleton = _skeleton(issue)
        self.limiter = _rate_limiter()
        self.transport = app_transport("issue")
        self.envelope_sender = envelope_sender_for("d")
        self.max_attempts = max_attempts()
        self.deferred = 0
        # Sent but not yet recorded: written in the same statement as the next claim.
        self.unrecorded: tuple[int, str] | None = None
        # The next message, composed and signed while the server digested the one
        # before: (delivery id, Message-ID, the message).
        self.ahead: tuple[int, str, bytes | Signed] | None = None
        self._connection = self._open_connection()
        self.sql = _Statements(self._connection)
        self.keeper = keeper  # started by deliver_batch, which also stops it

    @staticmethod
    def _open_connection() -> Connection:
        """A connection of its own in autocommit: each per-message statement is its own
        short transaction (one round trip on PostgreSQL, the shortest hold of SQLite's
        write lock when two workers share the file).

        On PostgreSQL an operator may let these commits skip the disk flush
        (DELIVERY_SYNCHRONOUS_COMMIT=off, `synchronous_commit off`): a killed
        worker still loses nothing, but a crash of the database server itself may
        forget the last fraction of a second of records, whose recipients would
        then get the issue twice. The default keeps the guarantee (at most the
        message in flight twice).
        """
        connection = db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        if connection.dialect.name == "postgresql" and not current_app.config.get(
            "DELIVERY_SYNCHRONOUS_COMMIT", True
        ):
            connection.exec_driver_sql("SET synchronous_commit TO off")
        return connection

    def close(self) -> None:
        self.transport.close()
        self.sql.close()
        with contextlib.suppress(Exception):
            if self.sql is not None and not self.sql.sqlite:
                self._connection.exec_driver_sql("RESET synchronous_commit")
        self._connection.close()

    def run(self) -> str:
        rows = self._load_unfinished()
        for index, row in enumerate(rows):
            if shutdown.requested():  # a deploy stops this worker: hand the rest over
                self._record_sent()
                return self._hand_back()
            if self.keeper.lost:
                self._record_sent()
                log.warning("batch %s taken over by another worker; stopping", self.batch_id)
                return "lost lease"
            if self.limiter.active:
                # Wait for the rate limit with the previous message recorded and
                # nothing claimed: a worker taking over must see both.
                self._record_sent()
                self.limiter.wait((row.ascii_email or row.email).rpartition("@")[2])
            # Composed and signed ahead while the server digests this one, when there
            # is a signature to hide (unsigned, composing is ≈ 60 µs, and on busy cores
            # doing it early only competes with the server: bench/README.md, sixth
            # round); not under a rate limit, whose wait would leave the next copy's
            # Date and signature stale.
            ahead = self.transport.signer is not None and not self.limiter.active
            following = rows[index + 1] if ahead and index + 1 < len(rows) else None
            if self._claim_and_send(row, following) == "stop":
                return "stopped"
        self._record_sent()
        return self._finish()

    def _load_unfinished(self) -> Sequence[_UnfinishedRow]:
        """The batch's recipients still to send, with what personalising needs.

        Those unsubscribed, bounced or removed since the fan-out are marked
        skipped first, for the whole batch in one statement; the per-message
        claim then catches only what changes while the batch is being sent.
        """
        db.session.execute(skip_no_longer_subscribed(self.batch_id, self.list_id))
        rows = db.session.execute(
            select(
                Delivery.id,
                Delivery.subscriber_id,
                Delivery.attempts,
                Subscriber.public_key,
                Subscriber.email,
                Subscriber.ascii_email,
                Subscriber.name,
            )
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.batch_id == self.batch_id, Delivery.status.in_(UNFINISHED_DELIVERY))
            .order_by(Delivery.id)
        ).all()
        db.session.commit()
        return rows

    def _finish(self) -> str:
        if self.deferred:
            self._retry_later(f"{self.deferred} recipient(s) temporarily refused")
            raise TransientFailure(f"batch {self.batch_id}: {self.deferred} deferred")
        db.session.execute(
            update(DeliveryBatch)
            .where(DeliveryBatch.id == self.batch_id, DeliveryBatch.owner == self.owner)
            .values(status=BatchStatus.DONE, heartbeat=utcnow(), last_error=None)
        )
        db.session.commit()
        finish_if_complete(self.issue_id)
        return "done"

    def _claim_and_send(self, row: _UnfinishedRow, following: _UnfinishedRow | None) -> str:
        """Record the previous message and claim this one (one statement), and send it.

        On PostgreSQL the statement's round trip and commit overlap the message's
        SMTP envelope (MAIL FROM, RCPT TO): the transport asks `claim.wait` before
        DATA, so the server never has message N before N's claim and N-1's "sent"
        are committed. With DKIM on, the message was composed and signed while the server
        digested the one before (`_send_one`): only CPU work, nothing the database
        or the server sees, so a claim that fails wastes that and nothing else.
        Only when the claim fails do we look at why (paused, cancelled,
        unsubscribed, erased): returns "claimed", "skipped" or "stop"."""
        claim = self._start_claim(row.id, row.subscriber_id)
        if claim.settled and not claim.claimed:  # SQLite: known before any SMTP
            return self._why_not_claimed(row.id, row.subscriber_id)
        try:
            self._send_one(row, claim, following)
        except Withdrawn:
            return self._why_not_claimed(row.id, row.subscriber_id)
        except BaseException:
            claim.drain()
            raise
        return "claimed"

    def _start_claim(self, delivery_id: int, subscriber_id: int) -> _Claim:
        sent_id, message_id = self.unrecorded or (None, None)
        self.unrecorded = None
        return self.sql.start_claim(
            {
                "sent_id": sent_id,
                "message_id": message_id,
                "now": self.sql.time(utcnow()),
                "claim_id": delivery_id,
                "subscriber_id": subscriber_id,
                "list_id": self.list_id,
                "issue_id": self.issue_id,
                "batch_id": self.batch_id,
                "owner": self.owner,
            }
        )

    def _why_not_claimed(self, delivery_id: int, subscriber_id: int) -> str:
        issue_status = db.session.scalar(select(Issue.status).where(Issue.id == self.issue_id))
        owner = db.session.scalar(
            select(DeliveryBatch.owner).where(DeliveryBatch.id == self.batch_id)
        )
        if issue_status != IssueStatus.SENDING or owner != self.owner:
            if owner == self.owner:
                _stop_batch(self.batch_id, self.owner, issue_status)
            db.session.commit()
            log.info("issue %s is %s; batch %s stops", self.issue_id, issue_status, self.batch_id)
            return "stop"
        subscription_status = db.session.scalar(
            select(Subscription.status).where(
                Subscription.subscriber_id == subscriber_id, Subscription.list_id == self.list_id
            )
        )
        if subscription_status == SubscriptionStatus.CONFIRMED:
            # The issue was paused and resumed between the claim and these reads:
            # hand the batch back rather than skip someone who should get it.
            _release(self.batch_id, self.owner)
            db.session.commit()
            return "stop"
        # Suppressed since the batch started: unsubscribed, bounced or left the list.
        db.session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id, Delivery.status.in_(UNFINISHED_DELIVERY))
            .values(status=DeliveryStatus.SKIPPED, last_error=subscription_status or "removed")
        )
        db.session.commit()
        return "skipped"

    def _send_one(
        self, row: _UnfinishedRow, claim: _Claim, following: _UnfinishedRow | None
    ) -> None:
        """Send the message whose claim `claim` is (raises Withdrawn when the claim
        fails); a refusal is recorded only for a message that was ours to send.

        Between this message's final dot and the server's answer to it, the next
        row's message is composed and signed (`_compose_ahead`): the worker would
        otherwise wait idle there, and with DKIM that is ≈ 0.3 ms of CPU per
        message (bench/README.md, sixth round). Its claim still comes after this
        answer is read, in the next statement, as before."""
        address = row.ascii_email or row.email
        raw: bytes | Signed
        if self.ahead is not None and self.ahead[0] == row.id:
            _, message_id, raw = self.ahead
        else:
            message_id, raw = self._compose(row)
        self.ahead = None
        try:
            try:
                self.transport.send(
                    self.envelope_sender(row.id),
                    address,
                    raw,
                    smtputf8=row.ascii_email is None,
                    gate=claim.wait,
                    meanwhile=None
                    if following is None
                    else lambda answered: self._compose_ahead(following, answered),
                )
            except (PermanentFailure, TransientFailure):
                # Refused before DATA (or signing failed): the claim may still be in
                # flight, and a message not ours (unsubscribed meanwhile) is not recorded.
                if not claim.wait():
                    raise Withdrawn("not claimed") from None
                raise
        except RecipientRefused as exc:
            self._set(row.id, status=DeliveryStatus.FAILED, last_error=str(exc)[:2000])
            record_refusal(address, str(exc), subscriber_id=row.subscriber_id, delivery_id=row.id)
            db.session.commit()
        except PermanentFailure as exc:
            self._set(row.id, status=DeliveryStatus.FAILED, last_error=str(exc)[:2000])
        except ServerUnavailable as exc:
            # Nothing can be sent now: put this one back and retry the batch later.
            self._set(row.id, status=DeliveryStatus.PENDING, last_error=str(exc)[:2000])
            self._retry_later(str(exc))
            raise
        except TransientFailure as exc:
            self._defer(row, exc)
        else:
            self.unrecorded = (row.id, message_id)

    def _compose(self, row: _UnfinishedRow) -> tuple[str, bytes]:
        """The row's personalised message (signed by the transport as it sends it)."""
        recipient = Recipient(
            address=row.ascii_email or row.email, name=row.name or "", public_key=row.public_key
        )
        message_id = self.skeleton.new_message_id(row.id)
        return message_id, self.skeleton.personalise(recipient, message_id)

    def _compose_ahead(self, row: _UnfinishedRow, answered: Callable[[], bool]) -> None:
        """Compose and sign the row's message before its turn; an error is kept and
        raised in its turn, inside its own send (`Signed`), never into the send
        whose answer is pending. When the answer is there already once the copy is
        composed, it is signed in its turn instead (as its send starts, while its
        claim runs on PostgreSQL): reading the answer sooner sends that claim
        sooner, and a slow database would otherwise wait with nothing to hide it."""
        try:
            message_id, raw = self._compose(row)
        except Exception as exc:
            self.ahead = (row.id, "", Signed(b"", exc))
            return
        signed = raw if answered() else self.transport.sign_ahead(raw)
        self.ahead = (row.id, message_id, signed)

    def _defer(self, row: _UnfinishedRow, exc: TransientFailure) -> None:
        """This recipient's server said "later" (4xx); the others may go on.
        `attempts` counts only these refusals, not re-claims after outages or crashes."""
        if row.attempts + 1 >= self.max_attempts:
            self._set(
                row.id,
                status=DeliveryStatus.FAILED,
                attempts=row.attempts + 1,
                last_error=f"opakovaně odmítnuto: {exc}"[:2000],
            )
        else:
            self._set(
                row.id,
                status=DeliveryStatus.PENDING,
                attempts=row.attempts + 1,
                last_error=str(exc)[:2000],
            )
            self.deferred += 1

    def _set(self, delivery_id: int, **values: Any) -> None:
        """Record the outcome of a message this worker claimed, while the batch is still
        its own: after a takeover the new holder sends the message and records it, and
        a late "try later" from this one must not turn that "sent" back into pending."""
        still_ours = (
            select(DeliveryBatch.id)
            .where(DeliveryBatch.id == self.batch_id, DeliveryBatch.owner == self.owner)
            .exists()
        )
        db.session.execute(
            update(Delivery)
            .where(
                Delivery.id == delivery_id,
                Delivery.status == DeliveryStatus.SENDING,
                still_ours,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        db.session.commit()

    def _record_sent(self) -> None:
        """Record the message sent last, if not yet recorded (its claim part matches nothing)."""
        if self.unrecorded is None:
            return
        sent_id, message_id = self.unrecorded
        self.sql.run(
            self.sql.record_and_claim,
            {
                "sent_id": sent_id, "message_id": message_id, "now": self.sql.time(utcnow()),
                "claim_id": None, "subscriber_id": None, "list_id": None, "issue_id": None,
                "batch_id": None, "owner": None,
            },
        )  # fmt: skip
        self.unrecorded = None

    def _hand_back(self) -> str:
        """Give the batch, unfinished, to another worker through a fresh job (the worker
        is stopping); the message sent last is already recorded."""
        job_id = jobs.new_batch_job_id(self.batch_id)
        handed = rows_matched(
            update(DeliveryBatch)
            .where(DeliveryBatch.id == self.batch_id, DeliveryBatch.owner == self.owner)
            .values(status=BatchStatus.QUEUED, owner=None, heartbeat=None, job_id=job_id)
        )
        db.session.commit()
        if handed:
            with contextlib.suppress(Exception):  # Redis away: the reconciler enqueues it
                jobs.enqueue_batches([(self.batch_id, job_id)])
        log.info("worker stopping; batch %s handed back", self.batch_id)
        return "handed back"

    def _retry_later(self, reason: str) -> None:
        """Hand the batch back (RQ's Retry runs it again; the reconciler if Redis forgot)."""
        self._record_sent()
        db.session.execute(
            update(DeliveryBatch)
            .where(DeliveryBatch.id == self.batch_id, DeliveryBatch.owner == self.owner)
            .values(status=BatchStatus.QUEUED, owner=None, heartbeat=None, last_error=reason[:2000])
        )
        db.session.commit()


class _BatchHeartbeat:
    """Renews a batch's lease for its LeaseKeeper thread, on a connection of its own
    (opened in that thread; after a failure, a new one at the next renewal)."""

    def __init__(self, engine: Engine, batch_id: int, owner: str) -> None:
        self.engine = engine
        self.batch_id = batch_id
        self.owner = owner
        self.connection: Connection | None = None
        self.sql: _Statements | None = None

    def __call__(self) -> bool:
        try:
            if self.sql is None:
                self.connection = self.engine.connect().execution_options(
                    isolation_level="AUTOCOMMIT"
                )
                self.sql = _Statements(self.connection)
            rows = self.sql.run(
                self.sql.beat + " RETURNING id",
                {"now": self.sql.time(utcnow()), "batch_id": self.batch_id, "owner": self.owner},
            )
        except Exception:
            self.close()
            raise
        return bool(rows)

    def close(self) -> None:
        sql, connection = self.sql, self.connection
        self.sql = self.connection = None
        if sql is not None:
            sql.close()
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()


def _release(batch_id: int, owner: str) -> None:
    """Give a claimed batch back unfinished (paused issue); resume enqueues it again."""
    db.session.execute(
        update(DeliveryBatch)
        .where(DeliveryBatch.id == batch_id, DeliveryBatch.owner == owner)
        .values(status=BatchStatus.QUEUED, owner=None, heartbeat=None)
    )


# --- whole-issue operations, a batch at a time ----------------------------------


def cancel_batches(issue_id: int) -> int:
    """After a cancel: every unfinished batch of the issue is closed and its deliveries
    not yet sent marked cancelled, one batch per transaction (a million recipients
    never sit in one transaction, nor hold SQLite's write lock for long).

    A batch a live worker is sending is closed too: that worker's next claim
    fails (the issue is cancelled), and the message in flight is still recorded
    as sent. Safe to run twice. Returns the batches closed.
    """
    closed = 0
    after = 0
    while True:
        batch_ids = db.session.scalars(
            select(DeliveryBatch.id)
            .where(
                DeliveryBatch.issue_id == issue_id,
                DeliveryBatch.status != BatchStatus.DONE,
                DeliveryBatch.id > after,
            )
            .order_by(DeliveryBatch.id)
            .limit(100)
        ).all()
        db.session.commit()
        if not batch_ids:
            return closed
        for batch_id in batch_ids:
            closed += _cancel_batch(batch_id, issue_id)
            db.session.commit()
        after = batch_ids[-1]


def _cancel_batch(batch_id: int, issue_id: int) -> bool:
    """Cancel one batch's unsent deliveries and close it, while the issue is still
    cancelled ("send again" may have come since); the caller commits."""
    still_cancelled = (
        select(Issue.id).where(Issue.id == issue_id, Issue.status == IssueStatus.CANCELLED).exists()
    )
    # Deliveries first, then the batch: the order in which a worker's record-and-claim
    # locks them (its trigger moves the batch's counters), so the two cannot deadlock.
    db.session.execute(
        update(Delivery)
        .where(
            Delivery.batch_id == batch_id,
            Delivery.status.in_(UNFINISHED_DELIVERY),
            still_cancelled,
        )
        .values(status=DeliveryStatus.CANCELLED)
        .execution_options(synchronize_session=False)
    )
    closed = rows_matched(
        update(DeliveryBatch)
        .where(DeliveryBatch.id == batch_id, still_cancelled)
        .values(status=BatchStatus.DONE, owner=None, resend=False)
    )
    return bool(closed)


def finish_if_complete(issue_id: int) -> bool:
    """Mark the issue sent once every recipient has a batch and every batch is done."""
    finished = Issue.finish_if_complete(issue_id)
    db.session.commit()
    if finished:
        log.info("issue %s sent", issue_id)
    return bool(finished)


# --- the reconciler's part --------------------------------------------------


def reconcile_issues() -> dict[str, int]:
    """Re-enqueue what the database says is unfinished and no live job will finish.

    Scheduled starts whose job Redis forgot, fan-outs and batches whose
    worker died (stale heartbeat) or whose job is gone (Redis flushed or
    restarted), cancelled issues with batches still open, and issues whose
    last batch finished without marking them.
    """
    checker = _JobChecker(redis_connection())
    stale = utcnow() - lease()
    return {
        "scheduled": _restart_scheduled(checker),
        "fan_outs": _restart_fan_outs(checker, stale),
        "batches": _restart_batches(checker, stale),
        "cancels": _finish_cancels(),
        "finished": _finish_completed(),
    }


class _JobChecker:
    """Asks Redis, in one round trip per call, whether jobs are still to run."""

    def __init__(self, connection: Redis) -> None:
        self.connection = connection

    def live(self, job_ids: list[str]) -> list[bool]:
        found = Job.fetch_many(job_ids, connection=self.connection) if job_ids else []
        return [
            job is not None and job.get_status(refresh=False) in LIVE_JOB_STATES for job in found
        ]


def _restart_scheduled(checker: _JobChecker) -> int:
    """Scheduled starts whose job Redis forgot."""
    scheduled = [
        (issue_id, at)
        for issue_id, at in db.session.execute(
            select(Issue.id, Issue.scheduled_at).where(Issue.status == IssueStatus.SCHEDULED)
        )
        if at is not None  # always, as Issue.schedule sets both
    ]
    db.session.commit()
    restarted = 0
    alive = checker.live([jobs.start_job_id(i, at) for i, at in scheduled])
    for (issue_id, at), is_alive in zip(scheduled, alive, strict=True):
        if not is_alive:
            jobs.enqueue_scheduled_start(issue_id, at)
            restarted += 1
    return restarted


def _restart_fan_outs(checker: _JobChecker, stale: datetime) -> int:
    """Fan-outs whose worker died mid-slice (stale heartbeat) or whose job Redis lost."""
    fanning = db.session.execute(
        select(Issue.id, Issue.fanout_heartbeat, Issue.fanout_job_id).where(
            Issue.status == IssueStatus.SENDING, Issue.fanout_done.is_(False)
        )
    ).all()
    db.session.commit()
    restarted = 0
    alive = checker.live([job_id or f"missing-{i}" for i, _, job_id in fanning])
    for (issue_id, heartbeat, _), is_alive in zip(fanning, alive, strict=True):
        if (heartbeat is not None and heartbeat < stale) or (heartbeat is None and not is_alive):
            job_id = jobs.new_fan_out_job_id(issue_id)
            db.session.execute(
                update(Issue)
                .where(Issue.id == issue_id)
                .values(fanout_job_id=job_id, fanout_heartbeat=None)
            )
            db.session.commit()
            jobs.enqueue_fan_out(issue_id, job_id)
            restarted += 1
    return restarted


def _restart_batches(checker: _JobChecker, stale: datetime) -> int:
    """Batches of sending issues whose worker died or whose job is gone."""
    batches = db.session.execute(
        select(
            DeliveryBatch.id, DeliveryBatch.status, DeliveryBatch.job_id, DeliveryBatch.heartbeat
        )
        .join(Issue, Issue.id == DeliveryBatch.issue_id)
        .where(
            Issue.status == IssueStatus.SENDING,
            DeliveryBatch.status.in_((BatchStatus.QUEUED, BatchStatus.RUNNING)),
        )
        .order_by(DeliveryBatch.id)
    ).all()
    db.session.commit()
    orphaned: list[int] = []
    for start in range(0, len(batches), 500):
        chunk = batches[start : start + 500]
        alive = checker.live([row.job_id or f"missing-{row.id}" for row in chunk])
        for row, is_alive in zip(chunk, alive, strict=True):
            if row.status == BatchStatus.RUNNING:
                if row.heartbeat is None or row.heartbeat < stale:
                    orphaned.append(row.id)
            elif not is_alive:
                orphaned.append(row.id)
    if not orphaned:
        return 0
    to_enqueue = []
    for batch_id in orphaned:
        job_id = jobs.new_batch_job_id(batch_id)
        db.session.execute(
            update(DeliveryBatch).where(DeliveryBatch.id == batch_id).values(job_id=job_id)
        )
        to_enqueue.append((batch_id, job_id))
    db.session.commit()
    for start in range(0, len(to_enqueue), 500):
        jobs.enqueue_batches(to_enqueue[start : start + 500])
    log.info("reconciler re-enqueued %d delivery batch(es)", len(orphaned))
    return len(orphaned)


def _finish_cancels() -> int:
    """Cancelled issues with batches still open (their cancel job was lost): close them."""
    issue_ids = db.session.scalars(
        select(DeliveryBatch.issue_id)
        .join(Issue, Issue.id == DeliveryBatch.issue_id)
        .where(Issue.status == IssueStatus.CANCELLED, DeliveryBatch.status != BatchStatus.DONE)
        .distinct()
    ).all()
    db.session.commit()
    return sum(cancel_batches(issue_id) for issue_id in issue_ids)


def _finish_completed() -> int:
    """Issues whose last batch finished without marking them sent."""
    sending = db.session.scalars(
        select(Issue.id).where(Issue.status == IssueStatus.SENDING, Issue.fanout_done.is_(True))
    ).all()
    db.session.commit()
    return sum(finish_if_complete(issue_id) for issue_id in sending)
