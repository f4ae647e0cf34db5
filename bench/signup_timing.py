"""Benchmark: does POST /subscribe take longer for a new address than for a known one?

Issue 11, finding 8: the review measured a median of 170 ms for a new address
against 129 ms for a confirmed one, so the form's timing told whether an
address was subscribed. The request now does the same work for every address
(one INSERT of the sign-up request, one enqueue; the job does the rest:
service/subscriptions/signup.py). This drives the app through Flask's test
client (SQLite in a temporary folder, a private Redis, no worker and no SMTP
server: nothing leaves the machine), alternating a new address and a
confirmed one, in several runs, and prints per path the median answer time
and CPU time per sign-up, and the ratio new/confirmed. A ratio near 1.00
means the answer time no longer tells the two apart.

The sign-up jobs' own cost is printed too (run after each run, not timed as
part of the answer): it differs by path, as it may, since no visitor waits
for it.

Run: .venv/bin/python bench/signup_timing.py [N per path per run] [runs]
"""

from __future__ import annotations

import statistics
import sys
import time

from harness import ratio, signup_app
from sqlalchemy import select, update

from service.clock import utcnow
from service.extensions import db
from service.jobs import redis_connection
from service.models import SignupRequest, Subscriber, Subscription
from workers.signup import process_signup

KNOWN = "potvrzena.ctenarka@seznam.cz"


def timed_post(client, address: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one sign-up request."""
    wall, cpu = time.perf_counter(), time.process_time()
    response = client.post("/subscribe", data={"email": address})
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert response.status_code == 202, response.status_code
    return wall, cpu


def run_jobs() -> dict[str, list[float]]:
    """Process every stored sign-up now; CPU seconds per job, by path."""
    spent: dict[str, list[float]] = {"new": [], "confirmed": []}
    rows = db.session.execute(select(SignupRequest.id, SignupRequest.email_key)).all()
    db.session.commit()
    for request_id, email_key in rows:
        cpu = time.process_time()
        process_signup(request_id)
        spent["confirmed" if email_key == KNOWN else "new"].append(time.process_time() - cpu)
    redis_connection().flushdb()  # the queued jobs and mails: no worker runs here
    return spent


def main(n: int, runs: int) -> None:
    # No worker runs and SMTP is a closed port: nothing is ever sent.
    with signup_app() as (app, _):
        client = app.test_client()
        timed_post(client, KNOWN)
        run_jobs()
        db.session.execute(update(Subscription).values(status="confirmed", confirmed_at=utcnow()))
        db.session.commit()
        assert db.session.scalar(select(Subscriber.email)) == KNOWN

        for i in range(5):  # warm-up: templates compiled, connections open
            timed_post(client, f"zahrati{i}@seznam.cz")
            timed_post(client, KNOWN)
        run_jobs()

        medians: dict[str, list[tuple[float, float]]] = {"new": [], "confirmed": []}
        job_cpu: dict[str, list[float]] = {"new": [], "confirmed": []}
        for run in range(runs):
            times: dict[str, list[tuple[float, float]]] = {"new": [], "confirmed": []}
            for i in range(n):  # alternated, so drift hits both alike
                times["new"].append(timed_post(client, f"novy.ctenar{run}.{i}@seznam.cz"))
                times["confirmed"].append(timed_post(client, KNOWN))
            for path, measured in times.items():
                walls, cpus = zip(*measured, strict=True)
                medians[path].append((statistics.median(walls), statistics.median(cpus)))
            for path, spent in run_jobs().items():
                job_cpu[path].extend(spent)

    print(f"{runs} runs of {n} sign-ups per path, SQLite, Flask test client")
    print(f"{'':26}{'answer (ms)':>12}{'CPU (ms)':>10}{'job CPU (ms)':>14}")
    summary = {}
    for path, label in (("new", "new address"), ("confirmed", "confirmed address")):
        wall = statistics.median(m[0] for m in medians[path]) * 1000
        cpu = statistics.median(m[1] for m in medians[path]) * 1000
        job = statistics.median(job_cpu[path]) * 1000
        summary[path] = wall
        print(f"{label:26}{wall:12.2f}{cpu:10.2f}{job:14.2f}")
    print(f"ratio new/confirmed (answer time): {ratio(summary['new'], summary['confirmed'])}")


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 100,
        int(sys.argv[2]) if len(sys.argv) > 2 else 5,
    )
