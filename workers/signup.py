"""Acting on a stored sign-up: the half of `POST /subscribe` that differs by address.

The web request stored a `SignupRequest` row and enqueued this job
(service/subscriptions/signup.py says why the flow is split). `process_signup`
is safe to run twice and after a kill: it claims the row by deleting it in
the transaction that does the work, so the work is done once; the reconciler
re-enqueues rows a lost job left behind (`reconcile.reconcile_signup_requests`).
"""

from __future__ import annotations

import logging

from service.database import commit_with_retry
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
