"""Acting on stored sign-ups: the half of `POST /subscribe` that differs by address.

The web request stored a `SignupRequest` row and made sure `process_signups`
is queued (service/subscriptions/signup.py says why the flow is split,
service/jobs.py how the hand-off works). Each row is claimed (locked, then
deleted) in the transaction that does its work, so the work is done once, two
drain jobs split the rows between them, and a job that dies or fails leaves its
row to the next; the reconciler queues a drain job while rows older than the
grace period wait (`reconcile.reconcile_signup_requests`). `process_signup` does
one row, for jobs of that kind still queued from before.
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

# One run of `process_signups` hands over to a fresh job after this long, so the
# confirmation mails it queued on the same queue, and other jobs, are not kept waiting
# behind a long backlog (and RQ's job timeout never hits it).
DRAIN_SECONDS = 20.0


def process_signups() -> dict[str, int]:
    """Process every stored sign-up, oldest first, each as `process_signup` does.

    Each row is claimed in the transaction that does its work
    (`signup.claim_next_request`): on PostgreSQL, drain jobs running at once skip the
    rows the others hold and so split the backlog between them. A row that fails is
    logged and left: the reconciler queues a drain job again while rows older than
    RECONCILE_GRACE_SECONDS wait. Asked to stop, or after DRAIN_SECONDS, the run
    queues its successor and returns.
    """
    drain_started()  # before the first read: a sign-up from now on queues the next run
    # Those that signalled before: their rows now. A sign-up still in flight when the
    # wait gave up (its commit slow) has no job but this one: the run ends by queueing
    # its successor then, which waits again.
    waited = signup.wait_for_sign_ups_in_flight()
    counts = {"done": 0, "skipped": 0, "failed": 0}
    deadline = time.monotonic() + DRAIN_SECONDS
    after = 0
    while True:
        if shutdown.requested() or time.monotonic() > deadline:
            signal_signups()  # the rest to the next run (this worker's or another's)
            return counts
        claimed: list[int] = []  # the row's id, known even when its work fails
        try:
            outcome = _process_next(after, claimed)
        except Exception:
            db.session.rollback()
            counts["failed"] += 1
            if not claimed:  # the claim itself failed (the database is away): stop here
                log.exception("could not claim the next sign-up request")
                return counts
            log.exception("sign-up request %s failed; it stays for a retry", claimed[0])
            after = claimed[0]  # the next run tries it again (the reconciler queues one)
            continue
        if outcome is None:
            if not waited:
                signal_signups()
            return counts
        counts[outcome] += 1
        after = claimed[0]


def _process_next(after: int, claimed: list[int]) -> str | None:
    """Claim the next stored sign-up after id `after`, do it and commit; "done" or
    "skipped", None when none is left. The claimed row's id goes into `claimed`."""
    outcome: list[str] = []

    def work() -> None:
        claimed.clear()
        outcome.clear()
        row = signup.claim_next_request(after)
        if row is None:
            return
        claimed.append(row.id)
        outcome.append("skipped" if signup.act_on_request(row) is None else "done")

    # A concurrent sign-up of the same new address may create its subscriber
    # first (IntegrityError): the next attempt finds it.
    commit_with_retry(work)
    return outcome[0] if outcome else None


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
