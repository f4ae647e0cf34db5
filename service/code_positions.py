"""A long-running worker's interpreter without column positions in its code objects.

Python 3.11 keeps, for every instruction of every code object, the columns it
came from (for the ^^^ markers under a traceback's line). `-X no_debug_ranges`
(or PYTHONNODEBUGRANGES=1) drops them from every code object made while it is
set, those loaded from .pyc files included; line numbers stay, so tracebacks
keep their files, lines and source text and lose only the markers.

In an idle `zpravodaj worker` on PostgreSQL that is ≈ 0.9 MB of Python objects
(26,000 code objects) and about 0.5 MB of RSS, in the worker and in each of its
work horses (bench/README.md, issue 14's seventh round). The option must be
set when the interpreter starts, so `zpravodaj worker` starts it again with
the option, once, whichever way it was started (systemd, the container, `dev`,
by hand): the process keeps its id, its arguments and its environment.
"""

from __future__ import annotations

import os
import sys

OPTION = "no_debug_ranges"


def columns_kept() -> bool:
    """Whether this interpreter gives new code objects column positions."""
    positions = compile("0", "<probe>", "eval").co_positions()
    return any(column is not None for _line, _end_line, column, _end_column in positions)


def restart_command() -> list[str] | None:
    """The command that starts this process again with the option, or None when it has
    it already, or when it cannot be started again (no known interpreter, or it was
    started with the option and still keeps columns: never restart twice)."""
    if not columns_kept() or OPTION in sys._xoptions or not sys.executable:
        return None
    return [sys.executable, "-X", OPTION, *sys.orig_argv[1:]]


def restart_without_columns() -> None:
    """Replace this process by itself started with `-X no_debug_ranges` (same process
    id, arguments, environment and working directory); nothing when it has the option."""
    command = restart_command()
    if command is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)
