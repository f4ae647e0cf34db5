"""Periodic work: what the workers run between jobs, how often, and why.

RQ runs a worker's maintenance hook when the worker starts and then every
`maintenance_interval` seconds, which `zpravodaj worker` sets to
RECONCILE_INTERVAL (30 s by default); the hook (`AppContextMixin` in
app_worker.py) runs `run_periodic_work()`, which goes through SCHEDULE below.

An entry without `once_per_seconds` runs on every tick of every worker: it
must be cheap and idempotent. An entry with it runs at most once per that many
seconds over all workers: a Redis `SET NX EX` key (`zpravodaj:<name>:last-run`)
lets the first worker of each period run it. The key expires by itself, so a
worker that dies mid-run blocks nothing for long. Without Redis nothing runs
(no job could either).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from service.clock import utcnow
from service.jobs import redis_connection
from service.subscriptions.reminders import send_due_reminders

from . import shutdown
from .reconcile import reconcile
from .retention import run_retention


@dataclass(frozen=True)
class PeriodicWork:
    """One line of the schedule; `run` returns counts of what it did, by kind."""

    name: str
    run: Callable[[], dict[str, int]]
    why: str
    once_per_seconds: int | None = None  # None: every tick of every worker

    @property
    def lock_key(self) -> str:
        return f"zpravodaj:{self.name}:last-run"


RECONCILE = PeriodicWork(
    "reconcile",
    reconcile,
    why=(
        "Redis only carries work: a flush, a restart, an enqueue that failed while Redis "
        "was down or a worker killed mid-job leaves rows no job points at (sign-up "
        "requests, single mails, issue fan-outs and batches, scheduled starts, meeting "
        "reminders). Cheap and idempotent, so every worker runs it on every tick."
    ),
)
RETENTION = PeriodicWork(
    "retention",
    run_retention,
    once_per_seconds=3600,
    why=(
        "Personal data is kept only as long as the privacy notice says. Its periods are "
        "counted in days while its queries scan consent events and old deliveries, so "
        "once an hour over all workers; the rules are idempotent and chunked, so an "
        "overlap would be harmless anyway."
    ),
)

CONFIRM_REMINDERS = PeriodicWork(
    "confirm-reminders",
    send_due_reminders,
    once_per_seconds=900,
    why=(
        "A sign-up still unconfirmed after CONFIRM_REMINDER_HOURS gets one reminder. The "
        "delay is counted in hours, so a quarter of an hour late is on time; once per "
        "period over all workers, and each reminder is recorded before the next run looks."
    ),
)

SCHEDULE: tuple[PeriodicWork, ...] = (RECONCILE, RETENTION, CONFIRM_REMINDERS)


def run_if_due(work: PeriodicWork) -> dict[str, int]:
    """Run one line of the schedule, unless another worker ran it within its period ({})."""
    if work.once_per_seconds is not None:
        acquired = redis_connection().set(
            work.lock_key, utcnow().isoformat(), nx=True, ex=work.once_per_seconds
        )
        if not acquired:
            return {}
    return work.run()


def run_periodic_work() -> dict[str, int]:
    """Everything a worker does between jobs, in the order of SCHEDULE."""
    done: dict[str, int] = {}
    for work in SCHEDULE:
        if shutdown.requested():  # the worker is stopping: the next one runs the rest
            break
        done.update(run_if_due(work))
    return done
