"""RQ workers that run each job in a fresh Flask app context."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime

from flask import Flask
from rq import SimpleWorker, Worker
from rq.exceptions import StopRequested
from rq.job import Job
from rq.queue import Queue

from service import metrics
from service.extensions import db

from . import schedule
from .log import job_scope

log = logging.getLogger(__name__)


class AppContextMixin:
    """Gives each job its own app context and database session.

    A fresh context per job means no session state leaks from one job to the
    next; `dispose(close=False)` drops pooled connections inherited through
    fork without closing the parent's sockets. Each job's log lines carry its
    id, and its lag and result are counted (service/metrics.py).
    """

    app: Flask

    def perform_job(self, job: Job, queue: Queue, *args, **kwargs) -> bool:
        name = job_name(job)
        metrics.job_started(name, _lag(job))
        ok = False
        with self.app.app_context(), job_scope(job):
            try:
                ok = super().perform_job(job, queue, *args, **kwargs)
                return ok
            finally:
                db.session.remove()
                metrics.job_finished(name, ok)

    def run_maintenance_tasks(self) -> None:
        """RQ's registry cleaning, plus the periodic work of schedule.py."""
        super().run_maintenance_tasks()
        with self.app.app_context():
            try:
                schedule.run_periodic_work()
            except StopRequested:
                raise  # SIGTERM/Ctrl-C while reconciling: RQ's way of stopping an idle worker
            except Exception:
                log.exception("reconciler failed; it will run again")
            finally:
                db.session.remove()


class AppWorker(AppContextMixin, Worker):
    """Forks a work horse per job: a crashing job cannot take the worker down."""

    def __init__(self, *args, app: Flask, **kwargs) -> None:
        self.app = app
        super().__init__(*args, **kwargs)

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        metrics.become_work_horse(os.getppid())
        with self.app.app_context():
            db.engine.dispose(close=False)
        super().main_work_horse(job, queue)


def job_name(job: Job) -> str:
    """The job's function without its module, e.g. `deliver_batch`: a label of the metrics."""
    try:
        return job.func_name.rpartition(".")[2] or "unknown"
    except Exception:  # a job whose data cannot be read: RQ fails it on its own
        return "unknown"


def _lag(job: Job) -> float | None:
    """Seconds between the job's enqueue (or re-enqueue by a retry) and now."""
    if job.enqueued_at is None:
        return None
    enqueued = job.enqueued_at
    if enqueued.tzinfo is None:  # RQ stores UTC
        enqueued = enqueued.replace(tzinfo=UTC)
    return (datetime.now(UTC) - enqueued).total_seconds()


class AppSimpleWorker(AppContextMixin, SimpleWorker):
    """Runs jobs in its own process: for tests and small deployments."""

    def __init__(self, *args, app: Flask, **kwargs) -> None:
        self.app = app
        super().__init__(*args, **kwargs)
