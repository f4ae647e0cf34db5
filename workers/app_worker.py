"""RQ workers that run each job in a fresh Flask app context, ride out Redis outages and
stop gracefully."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import threading
import time
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from redis.client import Pipeline
from rq import SimpleWorker, Worker
from rq.exceptions import StopRequested
from rq.job import Job
from rq.queue import Queue
from rq.worker import BaseWorker
from sqlalchemy import event
from sqlalchemy.engine import Connection

from service import metrics, worker_status
from service.extensions import db

from . import schedule, shutdown
from .log import job_scope
from .redis_outage import outage

log = logging.getLogger(__name__)

# How long a stopping worker waits for RQ's scheduler process before killing it: the
# scheduler holds nothing that matters (its lock expires), and waits for Redis in an outage.
SCHEDULER_STOP_SECONDS = 5
SCHEDULER_SIGNAL_INTERVAL = 0.5


class AppContextMixin(BaseWorker):
    """Gives each job its own app context and database session.

    A fresh context per job means no session state leaks from one job to the
    next; `dispose(close=False)` drops pooled connections inherited through
    fork without closing the parent's sockets. Each job's log lines carry its
    id, and its lag and result are counted (service/metrics.py).
    """

    app: Flask
    _in_periodic_work = False  # see run_maintenance_tasks

    def perform_job(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> bool:
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
        """RQ's registry cleaning, plus the periodic work of schedule.py, with a stop request
        held back until both are done.

        RQ stops an idle worker by raising StopRequested from its SIGTERM handler, wherever
        the main thread stands. Inside a database call that exception came out as a driver
        error ("another command is already in progress", "user-defined function raised
        exception"), was logged as a failed reconciler, and the worker ran on: the stop
        was lost, until a SIGKILL killed it still registered and orphaned its scheduler.
        Here a SIGTERM only notes the request (`_shutdown`); the periodic work sees it
        between its lines (schedule.py), and the worker stops right after."""
        if self._stop_requested:
            raise StopRequested
        self._in_periodic_work = True
        try:
            super().run_maintenance_tasks()
            with self.app.app_context():
                try:
                    schedule.run_periodic_work()
                except Exception:
                    log.exception("reconciler failed; it will run again")
                finally:
                    db.session.remove()
        finally:
            self._in_periodic_work = False
        if self._stop_requested:
            raise StopRequested  # RQ's way of ending an idle worker's loop, raised here safely

    def _shutdown(self) -> None:
        """RQ's reaction to SIGTERM and Ctrl-C, which raises StopRequested in an idle worker:
        during the periodic work it only notes the request (see run_maintenance_tasks)."""
        if self._in_periodic_work:
            log.info("stopping once the periodic work in hand is done")
            self._stop_requested = True
            return
        super()._shutdown()

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        """RQ's heartbeat, plus the one `/readyz` counts (service/worker_status.py)."""
        super().heartbeat(timeout, pipeline=pipeline)
        connection = pipeline if pipeline is not None else self.connection
        worker_status.record_heartbeat(connection, self.name)

    def teardown(self) -> None:
        if not self.is_horse:
            with contextlib.suppress(Exception):  # Redis away at exit: the entry ages out
                worker_status.forget_worker(self.connection, self.name)
        super().teardown()

    def work(self, *args: Any, **kwargs: Any) -> bool:
        """RQ's work loop, listening for SIGTERM and Ctrl-C from its first step.

        RQ installs its signal handlers only after it has registered the worker
        and forked its scheduler process: a SIGTERM in between (a stop soon after
        a start) killed the worker on the spot, still registered, and left the
        scheduler running for ever, orphaned, holding the scheduler lock. Such a
        signal is now remembered and acted on once RQ's handlers are in place."""
        self._early_stop_signal: int | None = None

        def remember(signum: int, frame: object) -> None:
            self._early_stop_signal = signum

        signal.signal(signal.SIGINT, remember)
        signal.signal(signal.SIGTERM, remember)
        return bool(super().work(*args, **kwargs))

    def _install_signal_handlers(self) -> None:
        super()._install_signal_handlers()
        early = getattr(self, "_early_stop_signal", None)
        if early is not None:
            name = signal.Signals(early).name
            log.info("stopping: %s arrived while the worker was starting", name)
            self.handle_warm_shutdown_request()
            self._stop_requested = True  # the loop's first check stops it, then teardown

    def stop_scheduler(self) -> None:
        """RQ's, but never waiting for ever: its scheduler process may be waiting for Redis,
        or not yet listening (a SIGTERM before its handler is installed is lost, so it is
        sent again until the process ends)."""
        if self.scheduler is None:  # RQ calls this only when there is one
            return
        process = self.scheduler._process
        if process is None or not process.pid:
            return
        deadline = time.monotonic() + SCHEDULER_STOP_SECONDS
        while process.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                os.kill(process.pid, signal.SIGTERM)
            process.join(SCHEDULER_SIGNAL_INTERVAL)
        if process.is_alive():
            process.kill()
            process.join()

    def begin_shutdown(self) -> None:
        """SIGTERM or Ctrl-C: jobs stop after the message in flight; Redis is waited for
        only until WORKER_SHUTDOWN_SECONDS have passed."""
        outage.stop_waiting_after(self.app.config["WORKER_SHUTDOWN_SECONDS"])
        shutdown.request()


class AppWorker(AppContextMixin, Worker):
    """Forks a work horse per job: a crashing job cannot take the worker down.

    On SIGTERM the horse finishes the message in flight, records it and hands
    its batch back (workers/shutdown.py); a horse still busy after
    WORKER_SHUTDOWN_SECONDS is killed, so the worker always exits in time.
    """

    def __init__(self, *args: Any, app: Flask, **kwargs: Any) -> None:
        self.app = app
        super().__init__(*args, **kwargs)

    def run_maintenance_tasks(self) -> None:
        """The periodic work, with its statements compiled afresh each round instead of kept
        in the engine's statement cache: this process runs no job, so its cache held only
        the periodic work's ~20 statements, ≈ 0.5 MB of the worker's (and every work
        horse's) memory, to save ≈ 6 ms of CPU every RECONCILE_INTERVAL (issue 14,
        bench/README.md). The work horses keep the cache for their batches."""
        with self.app.app_context():
            engines = list(db.engines.values())
        for engine in engines:
            event.listen(engine, "engine_connect", _compile_uncached)
        try:
            super().run_maintenance_tasks()
        finally:
            for engine in engines:
                event.remove(engine, "engine_connect", _compile_uncached)

    def fork_work_horse(self, job: Job, queue: Queue) -> None:
        """RQ's fork, with the worker's objects frozen out of the cyclic garbage
        collector for it: a work horse's collections then never walk (and so never
        copy, page by page) the ~80 MB it shares with the worker. Without this,
        each batch's horse paid tens of milliseconds of page copies (bench/README.md,
        Delivery). The worker unfreezes its own objects once the horse is forked."""
        gc.freeze()
        try:
            super().fork_work_horse(job, queue)
        finally:
            gc.unfreeze()  # only the worker gets here: the horse ends with os._exit

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        metrics.become_work_horse(os.getppid())
        with self.app.app_context():
            db.engine.dispose(close=False)
        super().main_work_horse(job, queue)

    def setup_work_horse_signals(self) -> None:
        """In the horse: SIGTERM (from the worker, or from systemd to the whole unit) asks
        the job to stop after the message in flight instead of killing it mid-message."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, lambda signum, frame: shutdown.request())

    def handle_warm_shutdown_request(self) -> None:
        self.begin_shutdown()
        horse = self.horse_pid
        if not horse:
            return
        log.info("stopping: the job in hand finishes the message in flight")
        with contextlib.suppress(OSError):
            os.kill(horse, signal.SIGTERM)
        deadline = threading.Timer(
            self.app.config["WORKER_SHUTDOWN_SECONDS"], self._kill_late_horse, args=(horse,)
        )
        deadline.daemon = True
        deadline.start()

    def _kill_late_horse(self, horse: int) -> None:
        if self.horse_pid == horse:
            log.warning("the job in hand did not stop within WORKER_SHUTDOWN_SECONDS; killing it")
            self.kill_horse(signal.SIGKILL)


def _compile_uncached(connection: Connection) -> None:
    connection.execution_options(compiled_cache=None)


def job_name(job: Job) -> str:
    """The job's function without its module, e.g. `deliver_batch`: a label of the metrics."""
    try:
        return (job.func_name or "").rpartition(".")[2] or "unknown"
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

    def __init__(self, *args: Any, app: Flask, **kwargs: Any) -> None:
        self.app = app
        super().__init__(*args, **kwargs)

    def handle_warm_shutdown_request(self) -> None:
        self.begin_shutdown()
