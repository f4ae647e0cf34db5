"""`zpravodaj worker` sent SIGTERM by itself right after RQ forked its scheduler process,
before RQ installs its own signal handlers: a stop soon after a start, at its worst moment.

Run as `python -m tests.workers.signalled_worker PIDFILE`; the scheduler's pid is written
to PIDFILE. Used by tests/workers/test_worker_signals.py.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import workers.cli
from service.cli import main
from workers.app_worker import AppWorker


class SignalledAtStart(AppWorker):
    def _start_scheduler(self, *args: Any, **kwargs: Any) -> None:
        super()._start_scheduler(*args, **kwargs)
        process = self.scheduler._process if self.scheduler is not None else None
        with open(PIDFILE, "w") as file:
            file.write(str(process.pid if process is not None else 0))
        os.kill(os.getpid(), signal.SIGTERM)


PIDFILE = sys.argv.pop(1)
workers.cli.AppWorker = SignalledAtStart  # type: ignore[misc]
sys.argv[1:] = ["worker"]
main()
