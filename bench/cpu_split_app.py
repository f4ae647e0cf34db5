"""A WSGI wrapper for bench/signup_throughput.py --split: the CPU inside the app's call.

gunicorn serves `cpu_split_app:app`, which imports the app SPLIT_APP names
(`module:attribute`) and calls it, reading the process's user and system CPU
(getrusage) before the call and after its body is read. Every 20 requests it
writes this process's totals to SPLIT_DIR/<pid>: requests, user and system
seconds inside the app's call, and user and system seconds of the whole process
since its first request. The difference is gunicorn's own work per request and
the kernel's for the connection (accept, read, write, close), which the
in-process measurements (bench/signup_cpu.py, callgrind) do not see.

The wrapper itself adds two getrusage calls per request, on both sides alike.
"""

from __future__ import annotations

import importlib
import os
import resource
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

_module, _, _attribute = os.environ["SPLIT_APP"].partition(":")
_inner: Callable[..., Iterable[bytes]] = getattr(importlib.import_module(_module), _attribute)
_directory = Path(os.environ["SPLIT_DIR"])
_totals = [0, 0.0, 0.0]  # requests, user and system seconds inside the app's call
_start: tuple[float, float] | None = None


def _write() -> None:
    assert _start is not None
    now = resource.getrusage(resource.RUSAGE_SELF)
    line = " ".join(
        str(value) for value in (*_totals, now.ru_utime - _start[0], now.ru_stime - _start[1])
    )
    written = _directory / f".{os.getpid()}"
    written.write_text(line + "\n")
    os.replace(written, _directory / str(os.getpid()))  # whole, for a reader at any moment


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    global _start
    before = resource.getrusage(resource.RUSAGE_SELF)
    if _start is None:
        _start = (before.ru_utime, before.ru_stime)
    answer = _inner(environ, start_response)
    try:
        body = list(answer)
    finally:
        close = getattr(answer, "close", None)
        if close is not None:
            close()
    after = resource.getrusage(resource.RUSAGE_SELF)
    _totals[0] += 1
    _totals[1] += after.ru_utime - before.ru_utime
    _totals[2] += after.ru_stime - before.ru_stime
    if _totals[0] % 20 == 0:
        _write()
    return body
