"""Adding a response's headers with fewer scans of them.

Werkzeug keeps a response's headers in a list: each look-up, `setdefault` or
`in` scans it, lowering every name, and a name not there is looked up by
raising and catching an exception; `response.vary` parses the header into a
set and writes it back on every change. A sign-up's answer was scanned some
200 times (issue 14, bench/README.md, seventh round).
"""

from __future__ import annotations

from collections.abc import Iterable

from werkzeug.datastructures import Headers
from werkzeug.sansio.response import Response


def add_missing(headers: Headers, defaults: Iterable[tuple[str, str]]) -> None:
    """`headers.setdefault(name, value)` for each pair, in order, with one scan."""
    present: set[str] | None = None
    for name, value in defaults:
        if present is None:
            present = {key.lower() for key, _ in headers}
        if name.lower() not in present:
            headers.add(name, value)
            present.add(name.lower())


def vary_on(response: Response, names: Iterable[str]) -> None:
    """`response.vary.update(names)`: each name not in Vary yet (any case) is appended,
    and the header written once, as Werkzeug writes it."""
    found = response.headers.getlist("Vary")
    if found and '"' in found[0]:  # a quoted entry: Werkzeug's parser, not split()
        response.vary.update(names)
        return
    entries = [entry.strip() for entry in found[0].split(",")] if found else []
    entries = [entry for entry in entries if entry]
    present = {entry.lower() for entry in entries}
    added = False
    for name in names:
        if name.lower() not in present:
            entries.append(name)
            present.add(name.lower())
            added = True
    if added:
        response.headers["Vary"] = ", ".join(entries)
