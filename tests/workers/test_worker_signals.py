"""Stopping a worker at any moment of its start: it stops cleanly, with its scheduler.

RQ installs its SIGTERM handler only after registering the worker and forking its
scheduler process. A SIGTERM in between used to kill the worker where it stood: it
stayed registered (so `/readyz` counted it until its heartbeat aged out) and its
scheduler process ran on for ever, orphaned, holding the scheduler lock and keeping
other workers' schedulers from scheduled issues. Seen as two failing tests on a
loaded machine, where that window is wide.
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


def test_a_sigterm_while_the_worker_starts_stops_it_and_its_scheduler(app, outbox, tmp_path):
    pidfile = tmp_path / "scheduler.pid"
    log = tmp_path / "worker.log"  # a file, not a pipe: an orphan would hold a pipe open
    with log.open("w") as stderr_file:
        worker = subprocess.Popen(
            [sys.executable, "-m", "tests.workers.signalled_worker", str(pidfile)],
            env=worker_env(app, outbox.url),
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=stderr_file,
        )
    try:
        worker.wait(timeout=120)
        stderr = log.read_text()
        assert pidfile.exists(), stderr
        assert int(pidfile.read_text()), "the worker started no scheduler process"
        assert worker.returncode == 0, stderr
        assert "stopping: SIGTERM arrived while the worker was starting" in stderr
        assert not running(int(pidfile.read_text())), "the worker left its scheduler running"
        connection = redis_connection()
        assert Worker.all(connection=connection) == []
        assert worker_status.read_heartbeats(connection, window=3600).alive == 0
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(60)
        scheduler = int(pidfile.read_text() or 0) if pidfile.exists() else 0
        if scheduler and running(scheduler):
            with contextlib.suppress(ProcessLookupError):
                os.kill(scheduler, signal.SIGKILL)
