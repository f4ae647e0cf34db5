"""Messages kept as Czech text and translated when someone reads them.

An import's skipped lines and a failed import's reason are written by a worker,
which has no reader to speak to, and read later on the admin's page, in the
language of whoever opens it. They are stored as their Czech wording (the
source of every wording, readable in the database, and what the CLI prints);
`shown` finds the message a stored text was made from and renders that
message's translation with the same values, so rows stored before a
translation existed are translated too.

A message is declared once with `N_`, which pybabel extracts (gettext's
"no-op" marker: the text is not translated where it is made):

    INVALID = N_("neplatná adresa %(address)s")
    problem = INVALID % {"address": repr(email)}   # stored: "neplatná adresa 'x'"
    shown(problem)                                  # English: "invalid address 'x'"
"""

from __future__ import annotations

import re

from flask_babel import gettext

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
# Every declared message: those without values by their text, the others as patterns.
_PLAIN: set[str] = set()
_PATTERNS: list[tuple[re.Pattern[str], str]] = []


def N_(message: str) -> str:
    """Declare a Czech message stored as text; returns it untranslated."""
    parts = _PLACEHOLDER.split(message)
    if len(parts) == 1:
        _PLAIN.add(message)
        return message
    pattern = "".join(
        re.escape(part) if index % 2 == 0 else f"(?P<{part}>.*)" for index, part in enumerate(parts)
    )
    _PATTERNS.append((re.compile(pattern, re.DOTALL), message))
    return message


def shown(text: str) -> str:
    """A stored text in the reader's language: the translation of the message it was
    made from, with its values; a text no declared message made stays as it is."""
    text = str(text)  # a lazy string made in a request is shown as it reads
    if text in _PLAIN:
        return gettext(text)
    for pattern, message in _PATTERNS:
        match = pattern.fullmatch(text)
        if match is not None:
            return gettext(message) % match.groupdict()
    return text
