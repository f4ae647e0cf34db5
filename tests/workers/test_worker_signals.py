"""Stopping a worker at any moment: it stops cleanly, with its scheduler.

RQ installs its SIGTERM handler only after registering the worker and forking its
scheduler process. A SIGTERM in between used to kill the worker where it stood: it
stayed registered (so `/readyz` counted it until its heartbeat aged out) and its
scheduler process ran on for ever, orphaned, holding the scheduler lock and keeping
other workers' schedulers from scheduled issues. Seen as two failing tests on a
loaded machine, where that window is wide.

RQ stops an idle worker by raising an exception from its SIGTERM handler. Raised inside
a database call of the periodic work, it came out as the driver's error, was logged as
a failed reconciler, and the worker ran on until it was killed: the same orphaned
scheduler, seen in the readiness tests on a loaded machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from rq import Worker

from service import worker_status
from service.jobs import redis_connection
from tests.workers.test_outgoing_mail import worker_env


def running(pid: int) -> bool:
    """The process exists and is not a zombie waiting for its parent."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def run_signalled_worker(app, outbox, tmp_path, moment: str) -> tuple[str, int]:
    """Run the worker that signals itself at `moment`; its log and its scheduler's pid."""
    pidfile = tmp_path / "scheduler.pid"
    log = tmp_path / "worker.log"  # a file, not a pipe: an orphan would hold a pipe open
    with log.open("w") as stderr_file:
        worker = subprocess.Popen(
            [sys.executable, "-m", "tests.workers.signalled_worker", moment, str(pidfile)],
            env=worker_env(app, outbox.url),
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=stderr_file,
        )
    try:
        try:
            worker.wait(timeout=120)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the worker did not stop:\n{log.read_text()}") from None
        stderr = log.read_text()
        assert pidfile.exists(), stderr
        scheduler = int(pidfile.read_text())
        assert scheduler, "the worker started no scheduler process"
        assert worker.returncode == 0, stderr
        assert not running(scheduler), "the worker left its scheduler running"
        connection = redis_connection()
        assert Worker.all(connection=connection) == []
        assert worker_status.read_heartbeats(connection, window=3600).alive == 0
        return stderr, scheduler
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(60)
        scheduler = int(pidfile.read_text() or 0) if pidfile.exists() else 0
        if scheduler and running(scheduler):
            with contextlib.suppress(ProcessLookupError):
                os.kill(scheduler, signal.SIGKILL)


def test_a_sigterm_while_the_worker_starts_stops_it_and_its_scheduler(app, outbox, tmp_path):
    stderr, _ = run_signalled_worker(app, outbox, tmp_path, "start")
    assert "stopping: SIGTERM arrived while the worker was starting" in stderr


def test_a_sigterm_during_a_query_of_the_periodic_work_stops_the_worker(app, outbox, tmp_path):
    stderr, _ = run_signalled_worker(app, outbox, tmp_path, "periodic")
    assert "stopping once the periodic work in hand is done" in stderr
    assert "reconciler failed" not in stderr
    assert "unhandled exception" not in stderr
