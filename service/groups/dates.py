"""Meeting times as Czech invitations write them: "čtvrtek 10. prosince 2026 od 9:30 do 11:30".

Meetings are stored in naive UTC; members read them in the programme's zone
(Europe/Prague), so summer and winter time come out right.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from ..archive.dates import MONTHS_GENITIVE, czech_date

ZONE = "Europe/Prague"
WEEKDAYS = ("pondělí", "úterý", "středa", "čtvrtek", "pátek", "sobota", "neděle")
# "od čtvrtka … do pátku": after "od"/"do" the weekday takes the genitive case.
WEEKDAYS_GENITIVE = ("pondělí", "úterý", "středy", "čtvrtka", "pátku", "soboty", "neděle")
# "ve čtvrtek 11. prosince": on a day, the weekday in the accusative after v/ve.
WEEKDAYS_ON = ("v pondělí", "v úterý", "ve středu", "ve čtvrtek", "v pátek", "v sobotu", "v neděli")


def local_time(moment: datetime, zone: str = ZONE) -> datetime:
    """A stored moment (naive UTC, or aware) as wall-clock time in `zone`."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(ZoneInfo(zone))


def _clock(moment: datetime) -> str:
    """9:30, 14:05 (Czech writes the hour without a leading zero)."""
    return f"{moment.hour}:{moment.minute:02d}"


def format_meeting_time(start_utc: datetime, end_utc: datetime, zone: str = ZONE) -> str:
    """ "čtvrtek 10. prosince 2026 od 9:30 do 11:30"; a meeting over midnight names both days."""
    start, end = local_time(start_utc, zone), local_time(end_utc, zone)
    if start.date() == end.date():
        return (
            f"{WEEKDAYS[start.weekday()]} {czech_date(start.date())} "
            f"od {_clock(start)} do {_clock(end)}"
        )
    return (
        f"od {WEEKDAYS_GENITIVE[start.weekday()]} {czech_date(start.date())} {_clock(start)} "
        f"do {WEEKDAYS_GENITIVE[end.weekday()]} {czech_date(end.date())} {_clock(end)}"
    )


def on_day(moment: datetime, zone: str = ZONE) -> str:
    """ "ve čtvrtek 11. prosince": the day of a stored moment, as a subject line says it."""
    local = local_time(moment, zone)
    return f"{WEEKDAYS_ON[local.weekday()]} {local.day}. {MONTHS_GENITIVE[local.month - 1]}"


def clock_time(moment: datetime, zone: str = ZONE) -> str:
    """ "9:30": the wall-clock time of a stored moment."""
    return _clock(local_time(moment, zone))
