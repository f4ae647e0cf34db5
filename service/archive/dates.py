"""Dates as Czech readers write them: "10. prosince 2026" (the month in the genitive)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

# "10. prosince": after a day number the month takes the genitive case.
MONTHS_GENITIVE = (
    "ledna", "února", "března", "dubna", "května", "června",
    "července", "srpna", "září", "října", "listopadu", "prosince",
)  # fmt: skip


def czech_date(day: date) -> str:
    """`date(2026, 12, 10)` → "10. prosince 2026"."""
    return f"{day.day}. {MONTHS_GENITIVE[day.month - 1]} {day.year}"


def local_date(moment: datetime, zone: str) -> date:
    """The calendar day of a stored moment (naive UTC) in `zone`, e.g. Europe/Prague.

    An issue sent at 23:30 UTC on 9 December went out on 10 December in Prague.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(ZoneInfo(zone)).date()
