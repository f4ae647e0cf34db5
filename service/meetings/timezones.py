"""The VTIMEZONE of an invitation, written with yearly rules as calendar clients expect.

icalendar's own `add_missing_timezones` lists every transition of the zone as
RDATE dates; calendar servers built on vobject read only the first of them
and show a July meeting an hour late. Outlook, Google and Apple write the
usual two yearly rules instead (`RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU`),
and so do we: the rules come from the POSIX TZ string at the end of the
zone's TZif file (the rule the zone follows from now on, e.g.
`CET-1CEST,M3.5.0,M10.5.0/3`), which covers any meeting the service plans.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported on use, as in calendar.py
    import icalendar

# iCalendar weekday names by POSIX day number (0 = Sunday).
DAYS = ("SU", "MO", "TU", "WE", "TH", "FR", "SA")
# The onsets are written from 1970 on, as the big calendar clients do.
EPOCH_YEAR = 1970
_NAME = r"<[^>]+>|[A-Za-z]{3,}"
_OFFSET = r"[+-]?\d{1,3}(?::\d{2}){0,2}"
_RULE = rf"M(\d{{1,2}})\.([1-5])\.([0-6])(?:/({_OFFSET}))?"
_POSIX = re.compile(
    rf"^(?P<std>{_NAME})(?P<std_offset>{_OFFSET})"
    rf"(?:(?P<dst>{_NAME})(?P<dst_offset>{_OFFSET})?,(?P<start>{_RULE}),(?P<end>{_RULE}))?$"
)


class UnsupportedZone(ValueError):
    """The zone's TZif file has no POSIX rule we can write as RRULEs."""


@dataclass(frozen=True)
class Rule:
    """ "The last (-1) Sunday of March at 2:00", as POSIX writes it (M3.5.0/2)."""

    month: int
    week: int  # 1..4, or -1 for the last one
    weekday: int  # 0 = Sunday
    at: timedelta  # local time before the change

    def onset(self, year: int) -> datetime:
        """The wall-clock moment of the change in `year`."""
        if self.week == -1:
            day = date(year + (self.month == 12), self.month % 12 + 1, 1) - timedelta(days=1)
            day -= timedelta(days=(day.isoweekday() % 7 - self.weekday) % 7)
        else:
            day = date(year, self.month, 1)
            day += timedelta(days=(self.weekday - day.isoweekday() % 7) % 7 + 7 * (self.week - 1))
        return datetime.combine(day, datetime.min.time()) + self.at

    def rrule(self) -> dict[str, object]:
        return {
            "freq": "YEARLY",
            "bymonth": self.month,
            "byday": f"{self.week}{DAYS[self.weekday]}",
        }


def _duration(text: str) -> timedelta:
    sign = -1 if text.startswith("-") else 1
    parts = [int(p) for p in text.lstrip("+-").split(":")] + [0, 0]
    return sign * timedelta(hours=parts[0], minutes=parts[1], seconds=parts[2])


def _rule(text: str) -> Rule:
    match = re.fullmatch(_RULE, text)
    if match is None:
        raise ValueError(f"unexpected tz rule: {text!r}")
    month, week, weekday, at = match.groups()
    return Rule(int(month), -1 if week == "5" else int(week), int(weekday), _duration(at or "2"))


def posix_rule(tzid: str) -> str:
    """The POSIX TZ string closing the zone's TZif file (version 2 and later)."""
    for base in zoneinfo.TZPATH:
        path = Path(base, *tzid.split("/"))
        if path.is_file():
            data = path.read_bytes()
            break
    else:
        try:
            data = resources.files("tzdata.zoneinfo").joinpath(*tzid.split("/")).read_bytes()
        except (ModuleNotFoundError, FileNotFoundError, IsADirectoryError) as exc:
            raise UnsupportedZone(tzid) from exc
    if not data.startswith(b"TZif") or data[4:5] in (b"\x00", b""):
        raise UnsupportedZone(tzid)  # version 1 files carry no rule
    return data.rstrip(b"\n").rsplit(b"\n", 1)[-1].decode("ascii")


def vtimezone(tzid: str) -> icalendar.Timezone:
    """The zone as a VTIMEZONE with one STANDARD and one DAYLIGHT yearly rule (or one
    STANDARD for a zone without daylight saving)."""
    import icalendar  # on use: see calendar.py

    match = _POSIX.match(posix_rule(tzid))
    if match is None:
        raise UnsupportedZone(tzid)
    standard_offset = -_duration(match["std_offset"])  # POSIX counts west of Greenwich
    timezone = icalendar.Timezone()
    timezone.add("tzid", tzid)
    if match["dst"] is None:
        timezone.add_component(
            _observance(icalendar.TimezoneStandard(), match["std"], standard_offset,
                        standard_offset, datetime(EPOCH_YEAR, 1, 1), None)
        )  # fmt: skip
        return timezone
    daylight_offset = (
        -_duration(match["dst_offset"])
        if match["dst_offset"]
        else standard_offset + timedelta(hours=1)
    )
    start, end = _rule(match["start"]), _rule(match["end"])
    timezone.add_component(
        _observance(icalendar.TimezoneDaylight(), match["dst"], standard_offset,
                    daylight_offset, start.onset(EPOCH_YEAR), start)
    )  # fmt: skip
    timezone.add_component(
        _observance(icalendar.TimezoneStandard(), match["std"], daylight_offset,
                    standard_offset, end.onset(EPOCH_YEAR), end)
    )  # fmt: skip
    return timezone


def _observance(
    component: icalendar.Component,
    name: str,
    offset_from: timedelta,
    offset_to: timedelta,
    onset: datetime,
    rule: Rule | None,
) -> icalendar.Component:
    component.add("tzname", name.strip("<>"))
    component.add("tzoffsetfrom", offset_from)
    component.add("tzoffsetto", offset_to)
    component.add("dtstart", onset)
    if rule is not None:
        component.add("rrule", rule.rrule())
    return component
