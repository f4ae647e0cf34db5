"""Delivery resumes as soon as the SMTP relay answers again, not at RQ's next retry.

A job that finds the relay away (`ServerUnavailable`: connection refused or
lost, 421, login refused) goes back on RQ's retry schedule
(`MAIL_RETRY_INTERVALS`: 10 s, 1 min … 1 h), and `note_outage`, an RQ exception
handler run after the retry is scheduled, puts its id on a waiting set.

Every worker runs a `SmtpWatcher` thread. While jobs wait, it probes the relay
(one connection: EHLO and QUIT) with backoff 1, 2, 4 … seconds capped at
`SMTP_RECOVERY_PROBE_SECONDS`, at most one probe per interval over all workers
(a Redis lock, the backoff shared through Redis); as soon as the relay answers,
the waiting jobs leave RQ's scheduled registry for their queue. So delivery
resumes within one probe interval of the relay's return. When no worker has
connected for `STATUS_REFRESH_SECONDS`, the watcher probes too, so the relay's
state `/readyz` shows stays fresh while no mail goes out.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from types import TracebackType

from flask import Flask
from redis import Redis
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.registry import ScheduledJobRegistry

from service import worker_status

from .smtp import ServerUnavailable
from .transport import app_transport

log = logging.getLogger(__name__)

WAITING_KEY = "zpravodaj:smtp:waiting-jobs"
PROBE_LOCK_KEY = "zpravodaj:smtp:probe-lock"
FIRST_PROBE_DELAY = 1.0
STATUS_REFRESH_SECONDS = 60


def note_outage(
    job: Job,
    exc_type: type[BaseException],
    exc_value: BaseException,
    traceback: TracebackType | None,
) -> bool:
    """RQ exception handler: a job stopped by an unreachable relay waits for its return."""
    if isinstance(exc_value, ServerUnavailable):
        with contextlib.suppress(Exception):  # the reconciler still has it otherwise
            job.connection.sadd(WAITING_KEY, job.id)
    return True  # RQ's other handlers run as usual


def release_waiting(connection: Redis) -> int:
    """Move the waiting jobs still on RQ's retry schedule to their queue; how many moved."""
    released = 0
    for raw in connection.smembers(WAITING_KEY):
        job_id = raw.decode() if isinstance(raw, bytes) else raw
        connection.srem(WAITING_KEY, job_id)
        job = Job.fetch_many([job_id], connection=connection)[0]
        if job is None or job.get_status(refresh=False) != JobStatus.SCHEDULED:
            continue  # finished, failed for good or gone: nothing waits
        queue = Queue(job.origin, connection=connection)
        # Only the one who takes it off the schedule enqueues it (RQ's scheduler may race).
        if ScheduledJobRegistry(queue=queue).remove(job):
            queue.enqueue_job(job)
            released += 1
    return released


def probe(app: Flask) -> str | None:
    """Open one connection to the relay (recorded for /readyz); None when it answered."""
    with app.app_context():
        try:
            with app_transport() as transport:
                transport.connect()
        except ServerUnavailable as exc:
            return str(exc)
    return None


class SmtpWatcher(threading.Thread):
    """Probes the relay while jobs wait for it and releases them when it answers."""

    def __init__(self, app: Flask, name: str) -> None:
        super().__init__(name="smtp-watcher", daemon=True)
        self.app = app
        self.worker_name = name
        self.cap = float(app.config["SMTP_RECOVERY_PROBE_SECONDS"])
        self.poll = min(FIRST_PROBE_DELAY, self.cap)
        # A client of its own: no pool shared with the worker's main thread across forks.
        self.connection = Redis.from_url(
            app.config["REDIS_URL"], socket_connect_timeout=2, socket_timeout=5
        )
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.poll):
            try:
                self.tick()
            except Exception as exc:  # Redis away: the worker's connection reports the outage
                log.debug("SMTP watcher: %s", exc)

    def stop(self) -> None:
        self.stopped.set()

    def tick(self) -> None:
        """One look: probe when jobs wait or the record is stale and no other worker probes."""
        waiting = self.connection.scard(WAITING_KEY)
        report = worker_status.read_smtp(self.connection)
        stale = report is None or report.checked_age > STATUS_REFRESH_SECONDS
        if not waiting and not stale:
            return
        failures = int(self.connection.hget(worker_status.SMTP_KEY, "probe_failures") or 0)
        delay = min(self.cap, FIRST_PROBE_DELAY * 2 ** min(failures, 16))
        if not self.connection.set(PROBE_LOCK_KEY, self.worker_name, nx=True, px=int(delay * 1000)):
            return  # another worker probes in this interval
        error = probe(self.app)
        if error is not None:
            self.connection.hincrby(worker_status.SMTP_KEY, "probe_failures", 1)
            if not failures:
                log.warning("SMTP relay unreachable (%s); probing until it answers", error)
            return
        self.connection.hset(worker_status.SMTP_KEY, "probe_failures", 0)
        released = release_waiting(self.connection)
        if released or failures:
            log.warning("SMTP relay answers again; %d waiting job(s) released", released)
