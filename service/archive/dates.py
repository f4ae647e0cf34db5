"""Dates as the reader's language writes them (CLDR through Babel): "10. prosince 2026"
(the month in the genitive), "December 10, 2026"."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from babel.dates import format_date

from ..i18n import current_language

# "10. prosince": after a day number the Czech month takes the genitive case. Kept
# for reading Czech dates in text (a meeting's title moves with the meeting).
MONTHS_GENITIVE = (
    "ledna", "února", "března", "dubna", "května", "června",
    "července", "srpna", "září", "října", "listopadu", "prosince",
)  # fmt: skip


def long_date(day: date) -> str:
    """`date(2026, 12, 10)` → "10. prosince 2026" in Czech, "December 10, 2026" in English."""
    return format_date(day, "long", locale=current_language())


# The older name, kept for the callers that still use it.
czech_date = long_date


def local_date(moment: datetime, zone: str) -> date:
    """The calendar day of a stored moment (naive UTC) in `zone`, e.g. Europe/Prague.

    An issue sent at 23:30 UTC on 9 December went out on 10 December in Prague.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(ZoneInfo(zone)).date()
