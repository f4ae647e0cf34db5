"""The reconciler: the database says what is unfinished; make sure Redis knows.

Runs when a worker starts and every RECONCILE_INTERVAL seconds after (the
schedule of periodic work is in schedule.py). A flushed or restarted Redis, an enqueue that
failed while Redis was down, or a worker killed mid-send all leave rows that
no job points at; this puts jobs back for them. Jobs are idempotent, so an
occasional duplicate costs nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from flask import current_app
from redis import Redis
from rq.job import Job
from sqlalchemy import and_, or_, select, update

from service.clock import utcnow
from service.extensions import db
from service.jobs import (
    LIVE_JOB_STATES,
    enqueue_outgoing_mail,
    outgoing_mail_job_id,
    redis_connection,
)
from service.models import MailStatus, OutgoingMail

from .delivery import reconcile_issues
from .mail import claim_lease
from .meetings import reconcile_reminders

log = logging.getLogger(__name__)


def reconcile() -> dict[str, int]:
    """Put back jobs for single mails, issues and meeting reminders; counts by kind."""
    return {
        "outgoing_mail": reconcile_outgoing_mail(),
        **reconcile_issues(),
        "meeting_reminders": reconcile_reminders(),
    }


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
    connection = redis_connection()
    requeued = 0
    for mail_id in rows:
        job = _fetch(outgoing_mail_job_id(mail_id), connection)
        if job is not None and job.get_status(refresh=False) in LIVE_JOB_STATES:
            continue
        if job is not None:
            job.delete()
        enqueue_outgoing_mail(mail_id)
        requeued += 1
    if requeued:
        log.info("reconciler re-enqueued %d outgoing mail(s)", requeued)
    return requeued


def _expire_stale(cutoff: datetime) -> None:
    """Give up on mails that could not be sent for days: their links have expired anyway."""
    db.session.execute(
        update(OutgoingMail)
        .where(OutgoingMail.status == MailStatus.QUEUED, OutgoingMail.created_at < cutoff)
        .values(status=MailStatus.FAILED, last_error="not sent in time; given up")
    )
    db.session.commit()


def _fetch(job_id: str, connection: Redis) -> Job | None:
    try:
        return Job.fetch(job_id, connection=connection)
    except Exception:
        return None
