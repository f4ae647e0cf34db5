"""The reconciler: the database says what is unfinished; make sure Redis knows.

Runs when a worker starts and every RECONCILE_INTERVAL seconds after (the
schedule of periodic work is in schedule.py). A flushed or restarted Redis, an enqueue that
failed while Redis was down, or a worker killed mid-send all leave rows that
no job points at; this puts jobs back for them. Jobs are idempotent, so an
occasional duplicate costs nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from redis import Redis
from rq.job import Job
from sqlalchemy import ColumnElement, and_, delete, or_, select, update

from service import metrics
from service.clock import utcnow
from service.extensions import db
from service.jobs import (
    LIVE_JOB_STATES,
    enqueue_outgoing_mail,
    ensure_signup_drain,
    outgoing_mail_job_id,
    redis_connection,
)
from service.models import MailStatus, OutgoingMail, SignupRequest, rows_matched
from service.subscriptions import import_jobs

from .delivery import reconcile_issues
from .mail import claim_lease
from .meetings import reconcile_reminders

log = logging.getLogger(__name__)


def reconcile() -> dict[str, int]:
    """Put back jobs for sign-ups, single mails, issues and meeting reminders; counts by kind."""
    done = {
        "signup_requests": reconcile_signup_requests(),
        "outgoing_mail": reconcile_outgoing_mail(),
        **reconcile_issues(),
        "meeting_reminders": reconcile_reminders(),
        "subscriber_imports": reconcile_imports(),
    }
    metrics.reconciled(done)
    return done


def reconcile_outgoing_mail() -> int:
    """Re-enqueue queued mails with no live job, and mails whose sender died mid-send."""
    config = current_app.config
    now = utcnow()
    _expire_stale(now - timedelta(hours=config["MAIL_MAX_AGE_HOURS"]))
    # Leave young rows alone: their own enqueue may be a moment away.
    settled = now - timedelta(seconds=config["RECONCILE_GRACE_SECONDS"])
    rows = db.session.scalars(
        select(OutgoingMail.id).where(
            or_(
                and_(OutgoingMail.status == MailStatus.QUEUED, OutgoingMail.created_at < settled),
                and_(
                    OutgoingMail.status == MailStatus.SENDING,
                    OutgoingMail.claimed_at < now - claim_lease(),
                ),
            )
        )
    ).all()
    db.session.commit()
    requeued = _requeue_lost(rows, outgoing_mail_job_id, enqueue_outgoing_mail)
    if requeued:
        log.info("reconciler re-enqueued %d outgoing mail(s)", requeued)
    return requeued


def reconcile_signup_requests() -> int:
    """Queue one drain job while stored sign-ups wait; drop those too old to matter.

    One job, however many rows: `workers.signup.process_signups` works through them
    all, and drain jobs running at once split them. None is queued while the one the
    hand-off's key names is queued and has not started (service/jobs.py); a row that
    failed in a drain job is tried again by the job queued on a later pass. Returns the jobs
    queued (0 or 1).
    """
    config = current_app.config
    now = utcnow()
    too_old = SignupRequest.requested_at < now - timedelta(hours=config["MAIL_MAX_AGE_HOURS"])
    expired = 0
    if _any(SignupRequest.id, too_old):  # a write only when there is one: see _any
        expired = rows_matched(delete(SignupRequest).where(too_old))
    if expired:
        log.warning("dropped %d sign-up request(s) not processed in time", expired)
    # Leave young rows alone: their own hand-off may be a moment away.
    settled = now - timedelta(seconds=config["RECONCILE_GRACE_SECONDS"])
    waiting = db.session.scalar(
        select(SignupRequest.id).where(SignupRequest.requested_at < settled).limit(1)
    )
    db.session.commit()
    if waiting is None or not ensure_signup_drain():
        return 0
    log.info("reconciler queued a job for the stored sign-ups")
    return 1


def _requeue_lost(
    row_ids: Sequence[int], job_id_of: Callable[[int], str], enqueue: Callable[[int], Job]
) -> int:
    """Enqueue again each row whose job (named by `job_id_of`) is not live in Redis."""
    connection = redis_connection()
    requeued = 0
    for row_id in row_ids:
        job = _fetch(job_id_of(row_id), connection)
        if job is not None and job.get_status(refresh=False) in LIVE_JOB_STATES:
            continue
        if job is not None:
            job.delete()
        enqueue(row_id)
        requeued += 1
    return requeued


def reconcile_imports() -> int:
    """Admin CSV imports: a queued one whose job Redis lost, a running one whose
    worker went silent (stale lease) get a fresh job; it resumes after the last chunk."""
    connection = redis_connection()
    requeued = 0
    for import_id, job_id, running, stale in import_jobs.unfinished():
        if running:
            lost = stale  # its job may still look started in Redis: the worker died
        else:
            job = _fetch(job_id, connection) if job_id else None
            lost = job is None or job.get_status(refresh=False) not in LIVE_JOB_STATES
        if lost:
            import_jobs.requeue(import_id)
            requeued += 1
    if requeued:
        log.info("reconciler re-enqueued %d subscriber import(s)", requeued)
    return requeued


def _expire_stale(cutoff: datetime) -> None:
    """Give up on mails that could not be sent for days: their links have expired anyway."""
    stale = and_(OutgoingMail.status == MailStatus.QUEUED, OutgoingMail.created_at < cutoff)
    if not _any(OutgoingMail.id, stale):  # a write only when there is one: see _any
        return
    db.session.execute(
        update(OutgoingMail)
        .where(stale)
        .values(status=MailStatus.FAILED, last_error="not sent in time; given up")
    )
    db.session.commit()


def _any(column: Any, condition: ColumnElement[bool]) -> bool:
    """Whether a row matches: the reconciler runs on every worker's every tick, and on
    SQLite an UPDATE or DELETE takes the database's one write lock even when it matches
    nothing, waiting out the busy timeout (10 s) behind any long write, such as an import's
    chunk, for work there was none of."""
    return db.session.scalar(select(column).where(condition).limit(1)) is not None


def _fetch(job_id: str, connection: Redis) -> Job | None:
    try:
        return Job.fetch(job_id, connection=connection)
    except Exception:
        return None
