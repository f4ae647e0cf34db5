"""RQ workers that run each job in a fresh Flask app context."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask
from rq import SimpleWorker, Worker
from rq.exceptions import StopRequested
from rq.job import Job
from rq.queue import Queue
from rq.worker import BaseWorker

from service.extensions import db

from . import schedule

log = logging.getLogger(__name__)


class AppContextMixin(BaseWorker):
    """Gives each job its own app context and database session.

    A fresh context per job means no session state leaks from one job to the
    next; `dispose(close=False)` drops pooled connections inherited through
    fork without closing the parent's sockets. (Put before RQ's worker class
    in the bases, it wraps that class's methods.)
    """

    app: Flask

    def perform_job(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> bool:
        with self.app.app_context():
            try:
                return super().perform_job(job, queue, *args, **kwargs)
            finally:
                db.session.remove()

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

    def __init__(self, *args: Any, app: Flask, **kwargs: Any) -> None:
        self.app = app
        super().__init__(*args, **kwargs)

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        with self.app.app_context():
            db.engine.dispose(close=False)
        super().main_work_horse(job, queue)


class AppSimpleWorker(AppContextMixin, SimpleWorker):
    """Runs jobs in its own process: for tests and small deployments."""

    def __init__(self, *args: Any, app: Flask, **kwargs: Any) -> None:
        self.app = app
        super().__init__(*args, **kwargs)
