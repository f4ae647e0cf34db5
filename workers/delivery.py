"""The delivery engine: every bulk mail (issues, announcements) goes out through here.

Three jobs, all on the `bulk` queue and all safe to run twice:

- `start_scheduled(issue_id)`: fired by RQ's scheduler at the issue's time.
- `fan_out(issue_id)`: pages through the recipients by subscriber id (keyset,
  so memory stays flat for any list size), writes a `DeliveryBatch` and its
  `Delivery` rows per page, and enqueues the batches as it goes, so the
  first mails leave while later batches are still being written.
- `deliver_batch(batch_id)`: sends one batch over one SMTP connection.

Per message, one transaction records the previous message as sent, checks
that the issue is still sending and the subscription still confirmed, and
claims this delivery; only then is the message sent. A worker killed at any
point leaves at most the one message in flight unrecorded, and that is the
only one another worker may send again. Batches are leased (`owner`,
`heartbeat`): the reconciler gives a batch whose heartbeat went stale to a
new job, and a worker that lost its lease stops.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from datetime import timedelta
from typing import Any

from flask import current_app
from rq import get_current_job
from rq.job import Job
from sqlalchemy import Row, and_, bindparam, exists, insert, or_, select, update

from service import jobs
from service.bounces.recording import record_refusal
from service.bounces.verp import envelope_sender
from service.clock import utcnow
from service.extensions import db
from service.issues.rendering import MessageSkeleton, Recipient, skeleton_for
from service.issues.sending import begin_delivery, recipients_query
from service.jobs import LIVE_JOB_STATES, redis_connection
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
from .smtp import PermanentFailure, RecipientRefused, ServerUnavailable, TransientFailure
from .transport import app_transport

log = logging.getLogger(__name__)

# Batches are enqueued in groups of this many (one Redis round trip each);
# the first batch of an issue goes at once, for a quick first mail.
ENQUEUE_GROUP = 20
# Pages (of BATCH_SIZE recipients) one fan-out job writes before handing over.
FAN_OUT_PAGES_PER_JOB = 20
# Deliveries not yet sent nor given up: a claim finds them "sending" after a crash.
UNFINISHED_DELIVERY = (DeliveryStatus.PENDING, DeliveryStatus.SENDING)


def lease() -> timedelta:
    """How long a batch or fan-out stays claimed without a heartbeat."""
    return timedelta(seconds=current_app.config["BATCH_LEASE_SECONDS"])


def heartbeat_every() -> float:
    return max(0.5, current_app.config["BATCH_LEASE_SECONDS"] / 6)


def max_attempts() -> int:
    """Tries per recipient for temporary refusals (4xx) before it counts as failed."""
    return len(current_app.config["MAIL_RETRY_INTERVALS"]) + 1


# --- starting ---------------------------------------------------------------


def start_scheduled(issue_id: int) -> str:
    """Start a scheduled issue if it is (still) scheduled and due."""
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
    """Write one slice of the issue's delivery batches page by page, enqueue them, and
    hand the rest to a fresh job queued behind them.

    Slicing keeps the time to the first mail short whatever the list size,
    even with a single worker: the batches of the first slice are in the
    queue ahead of the fan-out's continuation.
    """
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
    if not claimed:
        # A cancel that landed while the previous slice wrote its last batch left that
        # batch pending (the loop's status check came before it): this continuation
        # is the one job still to come, so it cancels what is left.
        if db.session.scalar(select(Issue.status).where(Issue.id == issue_id)) == "cancelled":
            _cancel_leftovers(issue_id)
        db.session.commit()
        return "skipped"

    issue = db.session.get_one(Issue, issue_id)
    size = current_app.config["BATCH_SIZE"]
    to_enqueue: list[tuple[int, str]] = []
    first = True
    for _ in range(FAN_OUT_PAGES_PER_JOB):
        status = db.session.scalar(select(Issue.status).where(Issue.id == issue_id))
        if status not in Issue.DELIVERING:
            if status == IssueStatus.CANCELLED:
                _cancel_leftovers(issue_id)
            break
        ids = db.session.scalars(
            recipients_query(issue, after=issue.fanout_cursor, limit=size)
        ).all()
        if not ids:
            issue.fanout_done, issue.fanout_heartbeat, issue.fanout_job_id = True, None, None
            db.session.commit()
            break
        batch = DeliveryBatch(issue_id=issue_id, status=BatchStatus.QUEUED)
        db.session.add(batch)
        db.session.flush()
        batch.job_id = jobs.new_batch_job_id(batch.id)
        db.session.execute(
            insert(Delivery),
            [{"issue_id": issue_id, "batch_id": batch.id, "subscriber_id": s} for s in ids],
        )
        issue.fanout_cursor, issue.fanout_heartbeat = ids[-1], utcnow()
        db.session.commit()
        if status == IssueStatus.SENDING:  # a paused issue's batches wait for resume
            to_enqueue.append((batch.id, batch.job_id))
        if first or len(to_enqueue) >= ENQUEUE_GROUP:
            jobs.enqueue_batches(to_enqueue)
            to_enqueue, first = [], False
        db.session.expunge(batch)
    else:
        # The slice is written: pass the lease to a continuation queued behind the batches.
        jobs.enqueue_batches(to_enqueue)
        continuation = jobs.new_fan_out_job_id(issue_id)
        issue.fanout_job_id, issue.fanout_heartbeat = continuation, utcnow()
        db.session.commit()
        jobs.enqueue_fan_out(issue_id, continuation)
        return "continued"
    jobs.enqueue_batches(to_enqueue)
    finish_if_complete(issue_id)
    return "done"


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
    """Send a batch's pending deliveries; see the module docstring for the guarantees."""
    owner = secrets.token_hex(8)
    now = utcnow()
    claimed = rows_matched(
        update(DeliveryBatch)
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
        .values(
            status=BatchStatus.RUNNING,
            owner=owner,
            heartbeat=now,
            attempts=DeliveryBatch.attempts + 1,
        )
    )
    db.session.commit()
    if not claimed:
        log.info("batch %s is done or another worker has it; skipping", batch_id)
        return "skipped"
    batch = db.session.get_one(DeliveryBatch, batch_id)
    issue = db.session.get_one(Issue, batch.issue_id)
    if issue.status != IssueStatus.SENDING:
        _release(batch_id, owner)
        db.session.commit()
        return issue.status
    try:
        sender = BatchSender(issue, batch_id, owner)
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


class BatchSender:
    """The send loop of one claimed batch."""

    def __init__(self, issue: Issue, batch_id: int, owner: str) -> None:
        self.issue_id = issue.id
        self.list_id = issue.list_id
        self.batch_id = batch_id
        self.owner = owner
        self.skeleton = _skeleton(issue)
        self.limiter = _rate_limiter()
        self.transport = app_transport()
        self.heartbeat_every = heartbeat_every()
        self.max_attempts = max_attempts()
        self.deferred = 0
        # Sent but not yet recorded: written in the same commit as the next claim.
        self.unrecorded: tuple[int, str] | None = None
        self._prepare_statements()

    def _prepare_statements(self) -> None:
        """The per-message statements, built once: building SQLAlchemy expressions per
        message cost more than the SMTP exchange itself."""
        delivery, subscription, issue, batch = (
            Delivery.__table__,
            Subscription.__table__,
            Issue.__table__,
            DeliveryBatch.__table__,
        )
        # The claim: only if the issue still sends and the subscriber is still confirmed.
        self._claim_statement = (
            delivery.update()
            .where(
                delivery.c.id == bindparam("delivery_id"),
                delivery.c.status.in_(UNFINISHED_DELIVERY),
                exists().where(
                    subscription.c.subscriber_id == bindparam("who"),
                    subscription.c.list_id == self.list_id,
                    subscription.c.status == SubscriptionStatus.CONFIRMED,
                ),
                exists().where(issue.c.id == self.issue_id, issue.c.status == IssueStatus.SENDING),
                # Still our batch: a worker that lost its lease (stuck longer than
                # BATCH_LEASE_SECONDS) must not send alongside the one that took over.
                exists().where(batch.c.id == self.batch_id, batch.c.owner == self.owner),
            )
            .values(status=DeliveryStatus.SENDING, claimed_at=bindparam("now"))
        )
        self._sent_statement = (
            delivery.update()
            .where(delivery.c.id == bindparam("delivery_id"))
            .values(
                status=DeliveryStatus.SENT,
                sent_at=bindparam("now"),
                message_id=bindparam("mid"),
                last_error=None,
            )
        )

    def close(self) -> None:
        self.transport.close()

    def run(self) -> str:
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
        last_beat = time.monotonic()
        for row in rows:
            self._record_sent()
            if shutdown.requested():  # a deploy stops this worker: hand the rest over
                return self._hand_back()
            if time.monotonic() - last_beat > self.heartbeat_every:
                if not self._beat():
                    db.session.commit()
                    log.warning("batch %s taken over by another worker; stopping", self.batch_id)
                    return "lost lease"
                last_beat = time.monotonic()
            # Wait for the rate limit before claiming, not while holding a claim, nor
            # an open transaction: the previous message's record would be invisible
            # to a worker taking over, and on SQLite it holds every writer back.
            if self.limiter.active:
                db.session.commit()
            self.limiter.wait((row.ascii_email or row.email).rpartition("@")[2])
            outcome = self._claim(row.id, row.subscriber_id)
            db.session.commit()
            if outcome == "stop":
                return "stopped"
            if outcome != "claimed":
                continue
            self._send_one(row)
        self._record_sent()
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

    def _claim(self, delivery_id: int, subscriber_id: int) -> str:
        """Claim one delivery if the issue still sends and the subscriber still wants it.

        The common case is one conditional UPDATE; only when it matches
        nothing do we look at why (paused, cancelled, unsubscribed, erased).
        """
        claimed = (
            db.session.connection()
            .execute(
                self._claim_statement,
                {"delivery_id": delivery_id, "who": subscriber_id, "now": utcnow()},
            )
            .rowcount
        )
        if claimed:
            return "claimed"
        issue_status = db.session.scalar(select(Issue.status).where(Issue.id == self.issue_id))
        owner = db.session.scalar(
            select(DeliveryBatch.owner).where(DeliveryBatch.id == self.batch_id)
        )
        if issue_status != IssueStatus.SENDING or owner != self.owner:
            _release(self.batch_id, self.owner)
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
            return "stop"
        # Suppressed since the snapshot: unsubscribed, bounced or left the list.
        db.session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id, Delivery.status.in_(UNFINISHED_DELIVERY))
            .values(status=DeliveryStatus.SKIPPED, last_error=subscription_status or "removed")
        )
        return "skipped"

    def _send_one(self, row: Row[*tuple[Any, ...]]) -> None:
        address = row.ascii_email or row.email
        recipient = Recipient(address=address, name=row.name or "", public_key=row.public_key)
        message_id = self.skeleton.new_message_id(row.id)
        raw = self.skeleton.personalise(recipient, message_id)
        try:
            self.transport.send(
                envelope_sender("d", row.id), address, raw, smtputf8=row.ascii_email is None
            )
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
            # This recipient's server said "later" (4xx); the others may go on.
            # `attempts` counts only these refusals, not re-claims after outages or crashes.
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
        else:
            self.unrecorded = (row.id, message_id)

    def _set(self, delivery_id: int, **values: Any) -> None:
        db.session.execute(update(Delivery).where(Delivery.id == delivery_id).values(**values))

    def _record_sent(self) -> None:
        if self.unrecorded is None:
            return
        delivery_id, message_id = self.unrecorded
        db.session.connection().execute(
            self._sent_statement, {"delivery_id": delivery_id, "now": utcnow(), "mid": message_id}
        )
        self.unrecorded = None

    def _beat(self) -> bool:
        return bool(
            rows_matched(
                update(DeliveryBatch)
                .where(DeliveryBatch.id == self.batch_id, DeliveryBatch.owner == self.owner)
                .values(heartbeat=utcnow())
            )
        )

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


def _release(batch_id: int, owner: str) -> None:
    """Give a claimed batch back unfinished (paused issue); resume enqueues it again."""
    db.session.execute(
        update(DeliveryBatch)
        .where(DeliveryBatch.id == batch_id, DeliveryBatch.owner == owner)
        .values(status=BatchStatus.QUEUED, owner=None, heartbeat=None)
    )


def _cancel_leftovers(issue_id: int) -> None:
    """Batches written after a cancel committed (the fan-out raced it) are cancelled too."""
    db.session.execute(
        update(Delivery)
        .where(Delivery.issue_id == issue_id, Delivery.status == DeliveryStatus.PENDING)
        .values(status=DeliveryStatus.CANCELLED)
    )
    db.session.execute(
        update(DeliveryBatch)
        .where(DeliveryBatch.issue_id == issue_id, DeliveryBatch.status == BatchStatus.QUEUED)
        .values(status=BatchStatus.DONE)
    )
    db.session.commit()


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
    restarted), and issues whose last batch finished without marking them.
    """
    connection = redis_connection()
    now = utcnow()
    stale = now - lease()
    done = {"scheduled": 0, "fan_outs": 0, "batches": 0, "finished": 0}

    def live(job_ids: list[str]) -> list[bool]:
        found = Job.fetch_many(job_ids, connection=connection) if job_ids else []
        return [
            job is not None and job.get_status(refresh=False) in LIVE_JOB_STATES for job in found
        ]

    scheduled = [
        (issue_id, at)
        for issue_id, at in db.session.execute(
            select(Issue.id, Issue.scheduled_at).where(Issue.status == IssueStatus.SCHEDULED)
        )
        if at is not None  # always, as Issue.schedule sets both
    ]
    db.session.commit()
    for (issue_id, at), alive in zip(
        scheduled, live([jobs.start_job_id(i, at) for i, at in scheduled]), strict=True
    ):
        if not alive:
            jobs.enqueue_scheduled_start(issue_id, at)
            done["scheduled"] += 1

    fanning = db.session.execute(
        select(Issue.id, Issue.fanout_heartbeat, Issue.fanout_job_id).where(
            Issue.status == IssueStatus.SENDING, Issue.fanout_done.is_(False)
        )
    ).all()
    db.session.commit()
    for (issue_id, heartbeat, job_id), alive in zip(
        fanning, live([job_id or f"missing-{i}" for i, _, job_id in fanning]), strict=True
    ):
        # Stale: its worker died mid-slice. No heartbeat and no job: Redis lost it.
        if (heartbeat is not None and heartbeat < stale) or (heartbeat is None and not alive):
            job_id = jobs.new_fan_out_job_id(issue_id)
            db.session.execute(
                update(Issue)
                .where(Issue.id == issue_id)
                .values(fanout_job_id=job_id, fanout_heartbeat=None)
            )
            db.session.commit()
            jobs.enqueue_fan_out(issue_id, job_id)
            done["fan_outs"] += 1

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
        chunk_alive = live([row.job_id or f"missing-{row.id}" for row in chunk])
        for row, is_alive in zip(chunk, chunk_alive, strict=True):
            if row.status == BatchStatus.RUNNING:
                if row.heartbeat is None or row.heartbeat < stale:
                    orphaned.append(row.id)
            elif not is_alive:
                orphaned.append(row.id)
    if orphaned:
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
        done["batches"] = len(orphaned)
        log.info("reconciler re-enqueued %d delivery batch(es)", len(orphaned))

    sending = db.session.scalars(
        select(Issue.id).where(Issue.status == IssueStatus.SENDING, Issue.fanout_done.is_(True))
    ).all()
    db.session.commit()
    done["finished"] = sum(finish_if_complete(issue_id) for issue_id in sending)
    return done
