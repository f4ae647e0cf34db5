"""The worker was asked to stop: jobs finish the message in flight, record it, and return.

A deploy stops workers with SIGTERM. The work horse (or a `--simple`
worker's own process) sets this flag instead of dying on the signal; the
delivery loop checks it between messages and hands its batch back to the
queue, so no message is cut off between the SMTP server's answer and its
record, and none is sent twice (app_worker.py has the signal handling).
"""

from __future__ import annotations

import threading

_requested = threading.Event()


def request() -> None:
    _requested.set()


def requested() -> bool:
    """True once the process was asked to stop."""
    return _requested.is_set()
