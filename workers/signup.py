"""Acting on stored sign-ups: the half of `POST /subscribe` that differs by address.

The web request stored a `SignupRequest` row and made sure `process_signups`
is queued (service/subscriptions/signup.py says why the flow is split,
service/jobs.py how the hand-off works). `process_signup` does one row and is
safe to run twice and after a kill: it claims the row by deleting it in the
transaction that does the work, so the work is done once; the reconciler gives
a row a lost job left behind a job of its own (`reconcile.reconcile_signup_requests`).
"""

from __future__ import annotations

import logging
import time

from service.database import commit_with_retry
from service.extensions import db
from service.jobs import drain_started, signal_signups
from service.subscriptions import signup

from . import shutdown

log = logging.getLogger(__name__)

# One run of `process_signups` reads the rows a page at a time and hands over to a fresh
# job after this long, so the confirmation mails it queued on the same queue, and other
# jobs, are not kept waiting behind a long backlog (and RQ's job timeout never hits it).
DRAIN_PAGE = 100
DRAIN_SECONDS = 20.0


def process_signups() -> dict[str, int]:
    """Process every stored sign-up, oldest first, each as `process_signup` does.

    A row that fails is logged and left: the reconciler gives it a job of its
    own, with retries, once it is older than RECONCILE_GRACE_SECONDS. Asked to
    stop, or after DRAIN_SECONDS, the run queues its successor and returns.
    """
    drain_started()  # before the first read: a sign-up committed from now on queues the next run
    counts = {"done": 0, "skipped": 0, "failed": 0}
    deadline = time.monotonic() + DRAIN_SECONDS
    after = 0
    while ids := signup.pending_request_ids(after, DRAIN_PAGE):
        for request_id in ids:
            if shutdown.requested() or time.monotonic() > deadline:
                signal_signups()  # the rest to the next run (this worker's or another's)
                return counts
            try:
                counts[process_signup(request_id)] += 1
            except Exception:
                db.session.rollback()
                log.exception("sign-up request %s failed; the reconciler will retry it", request_id)
                counts["failed"] += 1
        after = ids[-1]
    return counts


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
