"""`zpravodaj worker` sent SIGTERM by itself at one of its worst moments.

Run as `python -m tests.workers.signalled_worker MOMENT PIDFILE`; the scheduler's pid is
written to PIDFILE. MOMENT is one of:

- `start`: right after RQ forked its scheduler process, before RQ installs its own
  signal handlers (a stop soon after a start);
- `periodic`: inside a database call of the periodic work (schedule.py), as a stop
  arriving while the reconciler runs: on SQLite from inside an SQL function, on
  PostgreSQL while the server runs `pg_sleep`.

Used by tests/workers/test_worker_signals.py.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

from sqlalchemy import Engine, text

import workers.cli
from service.cli import main
from service.extensions import db
from tests.waiting import wait_until
from workers import schedule
from workers.app_worker import AppWorker


def signal_me() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


class SignalledWorker(AppWorker):
    def _start_scheduler(self, *args: Any, **kwargs: Any) -> None:
        super()._start_scheduler(*args, **kwargs)
        process = self.scheduler._process if self.scheduler is not None else None
        with open(PIDFILE, "w") as file:
            file.write(str(process.pid if process is not None else 0))
        if MOMENT == "start":
            signal_me()


def signalled_in_a_query() -> dict[str, int]:
    """A line of the schedule during whose database call the worker gets SIGTERM (once)."""
    if schedule.SCHEDULE[0] is not SIGNALLED:
        return {}
    schedule.SCHEDULE = schedule.SCHEDULE[1:]
    connection = db.session.connection()
    if connection.dialect.name == "sqlite":
        raw = connection.connection.driver_connection
        raw.create_function("zp_signal_me", 0, lambda: signal_me() or 1)
        db.session.execute(text("SELECT zp_signal_me()"))
    else:
        pid = db.session.scalar(text("SELECT pg_backend_pid()"))
        watcher = threading.Thread(target=signal_when_sleeping, args=(db.engine, pid), daemon=True)
        watcher.start()
        db.session.execute(text("SELECT pg_sleep(3)"))
    db.session.commit()
    return {"signalled": 1}


def signal_when_sleeping(engine: Engine, backend: int) -> None:
    """SIGTERM to this process once PostgreSQL shows `backend` running pg_sleep."""
    sleeping = text(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = :pid AND query LIKE '%pg_sleep%'"
    )
    with engine.connect() as connection:

        def asleep() -> bool:
            connection.rollback()  # a fresh snapshot of pg_stat_activity each look
            return bool(connection.scalar(sleeping, {"pid": backend}))

        wait_until(asleep, "the query in pg_sleep", interval=0.01)
    signal_me()


SIGNALLED = schedule.PeriodicWork("signalled", signalled_in_a_query, why="a test's")
MOMENT, PIDFILE = sys.argv.pop(1), sys.argv.pop(1)
if MOMENT == "periodic":
    schedule.SCHEDULE = (SIGNALLED, *schedule.SCHEDULE)
workers.cli.AppWorker = SignalledWorker  # type: ignore[misc]
sys.argv[1:] = ["worker"]
main()
