"""Acting on a stored sign-up: the half of `POST /subscribe` that differs by address.

The web request stored a `SignupRequest` row and enqueued this job
(service/subscriptions/signup.py says why the flow is split). `process_signup`
is safe to run twice and after a kill: it claims the row by deleting it in
the transaction that does the work, so the work is done once; the reconciler
re-enqueues rows a lost job left behind (`reconcile_signup_requests`).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app
from rq.job import Job
from sqlalchemy import delete, select

from service.clock import utcnow
from service.database import commit_with_retry
from service.extensions import db
from service.jobs import LIVE_JOB_STATES, enqueue_signup, redis_connection, signup_job_id
from service.models import SignupRequest
from service.subscriptions import signup

log = logging.getLogger(__name__)


def process_signup(request_id: int) -> str:
    """Subscribe, record consent and queue the confirmation mail for one stored sign-up."""
    outcome: list[str] = []

    def work() -> None:
        outcome.clear()
        result = signup.process_request(request_id)
        outcome.append("skipped" if result is None else "done")

    # A concurrent sign-up of the same new address may create its subscriber
    # first (IntegrityError): the next attempt finds it.
    commit_with_retry(work)
    if outcome == ["skipped"]:
        log.info("sign-up request %s was processed already; skipping", request_id)
    return outcome[0]


def reconcile_signup_requests() -> int:
    """Re-enqueue stored sign-ups with no live job; drop those too old to matter."""
    config = current_app.config
    now = utcnow()
    expired = db.session.execute(
        delete(SignupRequest).where(
            SignupRequest.requested_at < now - timedelta(hours=config["MAIL_MAX_AGE_HOURS"])
        )
    ).rowcount
    if expired:
        log.warning("dropped %d sign-up request(s) not processed in time", expired)
    # Leave young rows alone: their own enqueue may be a moment away.
    settled = now - timedelta(seconds=config["RECONCILE_GRACE_SECONDS"])
    ids = db.session.scalars(
        select(SignupRequest.id).where(SignupRequest.requested_at < settled)
    ).all()
    db.session.commit()
    connection = redis_connection()
    requeued = 0
    for request_id in ids:
        job = _fetch(signup_job_id(request_id), connection)
        if job is not None and job.get_status(refresh=False) in LIVE_JOB_STATES:
            continue
        if job is not None:
            job.delete()
        enqueue_signup(request_id)
        requeued += 1
    if requeued:
        log.info("reconciler re-enqueued %d sign-up request(s)", requeued)
    return requeued


def _fetch(job_id: str, connection) -> Job | None:
    try:
        return Job.fetch(job_id, connection=connection)
    except Exception:
        return None
