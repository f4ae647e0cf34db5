"""Meeting times as invitations write them: "čtvrtek 10. prosince 2026 od 9:30 do 11:30",
"Thursday, December 10, 2026 from 9:30 AM to 11:30 AM" (CLDR through Babel).

Meetings are stored in naive UTC; members read them in the programme's zone
(Europe/Prague), so summer and winter time come out right.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_time
from flask_babel import gettext as _

from ..i18n import current_language

ZONE = "Europe/Prague"
WEEKDAYS = ("pondělí", "úterý", "středa", "čtvrtek", "pátek", "sobota", "neděle")
# "od čtvrtka … do pátku": after "od"/"do" the weekday takes the genitive case,
# which CLDR does not have.
WEEKDAYS_GENITIVE = ("pondělí", "úterý", "středy", "čtvrtka", "pátku", "soboty", "neděle")
# "ve čtvrtek 11. prosince": on a day, the weekday in the accusative after v/ve.
WEEKDAYS_ON = ("v pondělí", "v úterý", "ve středu", "ve čtvrtek", "v pátek", "v sobotu", "v neděli")


def local_time(moment: datetime, zone: str = ZONE) -> datetime:
    """A stored moment (naive UTC, or aware) as wall-clock time in `zone`."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(ZoneInfo(zone))


def _clock(moment: datetime, language: str | None = None) -> str:
    """9:30, 14:05 in Czech (no leading zero); 9:30 AM in English."""
    language = language or current_language()
    return format_time(moment, "H:mm" if language == "cs" else "short", locale=language)


def _day(moment: datetime, *, after_preposition: bool = False) -> str:
    """ "čtvrtek 10. prosince 2026" ("čtvrtka …" after od/do); "Thursday, December 10, 2026"."""
    language = current_language()
    if language != "cs":
        return format_date(moment, "full", locale=language)
    weekday = (WEEKDAYS_GENITIVE if after_preposition else WEEKDAYS)[moment.weekday()]
    return f"{weekday} {format_date(moment, 'd. MMMM y', locale='cs')}"


def format_meeting_time(start_utc: datetime, end_utc: datetime, zone: str = ZONE) -> str:
    """ "čtvrtek 10. prosince 2026 od 9:30 do 11:30"; a meeting over midnight names both days."""
    start, end = local_time(start_utc, zone), local_time(end_utc, zone)
    if start.date() == end.date():
        return _(
            "%(day)s od %(start)s do %(end)s", day=_day(start), start=_clock(start), end=_clock(end)
        )
    return _(
        "od %(start_day)s %(start)s do %(end_day)s %(end)s",
        start_day=_day(start, after_preposition=True),
        start=_clock(start),
        end_day=_day(end, after_preposition=True),
        end=_clock(end),
    )


def on_day(moment: datetime, zone: str = ZONE) -> str:
    """ "ve čtvrtek 11. prosince", "on Thursday, December 11": the day of a stored moment
    as a subject line says it, in the current language."""
    local = local_time(moment, zone)
    language = current_language()
    if language == "cs":
        return f"{WEEKDAYS_ON[local.weekday()]} {format_date(local, 'd. MMMM', locale='cs')}"
    return _("dne %(day)s", day=format_date(local, "EEEE, MMMM d", locale=language))


def clock_time(moment: datetime, zone: str = ZONE) -> str:
    """ "9:30" ("9:30 AM"): the wall-clock time of a stored moment."""
    return _clock(local_time(moment, zone))
