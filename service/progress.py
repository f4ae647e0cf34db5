"""A progress bar for the long commands (import, export, `bounces poll --once`),
on a terminal only.

It goes to stderr, so `zpravodaj subscribers export … > list.csv` still shows
it while the CSV goes to the file; when stderr is no terminal (cron, a pipe,
a script) nothing at all is printed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click


@contextmanager
def progress(length: int, label: str) -> Iterator[Callable[..., None]]:
    """Yield a function to call as items are done: `step()` for one, `step(n)` for n."""
    if length <= 0 or not sys.stderr.isatty():
        yield lambda count=1: None
        return
    with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
        yield lambda count=1: bar.update(count)
