"""Waiting on a condition: the one way tests wait for another process or thread.

Tests never sleep for a guessed time; they poll a condition with a deadline,
and a condition that never comes fails the test with what was awaited, how
long, and whatever explains it (a process's log), instead of hanging the suite.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")

# Generous for a loaded 2-core CI machine; the conditions usually hold within a second.
TIMEOUT = 60.0


def wait_until(
    condition: Callable[[], T],
    what: str,
    *,
    timeout: float = TIMEOUT,
    interval: float = 0.05,
    abort: Callable[[], object] | None = None,
    details: Callable[[], str] | None = None,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll `condition()` until it returns something true, and return that.

    - `what` names the awaited condition in the failure message.
    - `abort()`, checked after each false answer, ends the wait at once when it
      returns something true (e.g. "the worker exited"): no point in waiting on.
    - `details()` is added to the failure message (a log, the state seen).
    - exceptions of the types in `ignore` raised by `condition()` count as false
      (e.g. OSError while a server is not listening yet).

    Fails the test (pytest.fail) after `timeout` seconds.
    """
    started = time.monotonic()
    deadline = started + timeout
    why = f"not within {timeout:g} s"
    while True:
        try:
            result = condition()
        except ignore:
            result = None  # type: ignore[assignment]
        if result:
            return result
        stop = abort() if abort is not None else None
        if stop:
            why = f"gave up after {time.monotonic() - started:.1f} s: {stop}"
            break
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)  # a polling interval, not a guess at how long anything takes
    message = f"waited for {what}: {why}"
    if details is not None:
        message += "\n" + details()
    pytest.fail(message)


def exited(process) -> str | None:
    """For `abort`: a reason when the subprocess.Popen `process` has exited."""
    code = process.poll()
    return None if code is None else f"process {process.pid} exited with status {code}"
