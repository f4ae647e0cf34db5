"""A group's rhythm: recurring meetings as an RFC 5545 RRULE ("každé druhé úterý v měsíci").

A series is one Meeting with one UID and an `rrule`; its `start` and `end`
are the first occurrence. Occurrences are expanded in Prague wall-clock
time (python-dateutil, which icalendar already brings), so a 9:30 meeting
stays at 9:30 across the change to summer time, as calendar apps expand it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from babel.dates import format_date, get_day_names
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ..groups.dates import clock_time, local_time
from ..i18n import current_language

# dateutil is imported where a rule is expanded (worker memory, as icalendar in calendar.py).
if TYPE_CHECKING:
    from dateutil.rrule import rrule

RRULE_MAX = 200
# A series of more dates than this is described without its last date.
RRULE_COUNT_LISTED = 1000
# What the admin's simple chooser offers; each becomes an RRULE from the first date.
REPEAT_CHOICES = {
    "": _l("neopakuje se"),
    "weekly": _l("každý týden"),
    "biweekly": _l("jednou za dva týdny"),
    "monthly-weekday": _l("každý měsíc ve stejný den v týdnu (např. každé druhé úterý)"),
    "monthly-day": _l("každý měsíc ve stejný den v měsíci"),
}
_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_ALLOWED_FREQ = {"DAILY", "WEEKLY", "MONTHLY", "YEARLY"}
# "každé úterý", "každý čtvrtek", "každou středu": the weekday's gender decides.
_EVERY = ("každé", "každé", "každou", "každý", "každý", "každou", "každou")
_ACCUSATIVE = ("pondělí", "úterý", "středu", "čtvrtek", "pátek", "sobotu", "neděli")
# The ordinal before a weekday in other languages ("the second Tuesday").
ORDINAL_WORDS = {
    1: _l("první"),
    2: _l("druhý"),
    3: _l("třetí"),
    4: _l("čtvrtý"),
    -1: _l("poslední"),
}
_ORDINALS = {
    "každé": {1: "první", 2: "druhé", 3: "třetí", 4: "čtvrté", -1: "poslední"},
    "každý": {1: "první", 2: "druhý", 3: "třetí", 4: "čtvrtý", -1: "poslední"},
    "každou": {1: "první", 2: "druhou", 3: "třetí", 4: "čtvrtou", -1: "poslední"},
}


def rule_for_choice(choice: str, start_local: datetime) -> str:
    """The chooser's key as an RRULE for a series starting at `start_local`."""
    day = _DAYS[start_local.weekday()]
    if choice == "weekly":
        return f"FREQ=WEEKLY;BYDAY={day}"
    if choice == "biweekly":
        return f"FREQ=WEEKLY;INTERVAL=2;BYDAY={day}"
    if choice == "monthly-weekday":
        week = (start_local.day - 1) // 7 + 1
        return f"FREQ=MONTHLY;BYDAY={-1 if week == 5 else week}{day}"
    if choice == "monthly-day":
        return f"FREQ=MONTHLY;BYMONTHDAY={start_local.day}"
    return ""


def choice_for_rule(rule: str) -> str:
    """The chooser's key a stored RRULE came from ("" when it is none of them)."""
    parts = dict(p.split("=", 1) for p in rule.split(";") if "=" in p) if rule else {}
    freq, interval = parts.get("FREQ"), parts.get("INTERVAL", "1")
    if freq == "WEEKLY":
        return {"1": "weekly", "2": "biweekly"}.get(interval, "")
    if freq == "MONTHLY":
        return "monthly-weekday" if "BYDAY" in parts else "monthly-day"
    return ""


def check_rule(rule: str, start_local: datetime) -> str | None:
    """None when `rule` is an RRULE we can keep; else why not, in the request's language.
    `start_local` is the first start, aware, in the service's zone."""
    if len(rule) > RRULE_MAX or any(c in rule for c in "\r\n:"):
        return _("Pravidlo opakování (RRULE) není platné, např. FREQ=MONTHLY;BYDAY=2TU.")
    parts = dict(p.split("=", 1) for p in rule.split(";") if "=" in p)
    if parts.get("FREQ") not in _ALLOWED_FREQ:
        return _("Setkání se může opakovat nejčastěji denně (FREQ=DAILY, WEEKLY, MONTHLY, YEARLY).")
    if "UNTIL" in parts and not parts["UNTIL"].upper().endswith("Z"):
        # RFC 5545: with a DTSTART in a time zone, UNTIL is a UTC time.
        return _("Konec opakování (UNTIL) uveďte v UTC, např. UNTIL=20270630T220000Z.")
    from dateutil.rrule import rrulestr  # on use, as icalendar in calendar.py

    try:
        upcoming = rrulestr(f"RRULE:{rule}", dtstart=start_local).after(start_local, inc=True)
    except (ValueError, TypeError, OverflowError):
        return _("Pravidlo opakování (RRULE) není platné, např. FREQ=MONTHLY;BYDAY=2TU.")
    if upcoming is None:
        return _("Podle pravidla opakování by se setkání nekonalo ani jednou.")
    return None


def _series(rule: str, start_utc: datetime, zone: str) -> rrule:
    """The rule expanded in `zone`'s wall-clock time from the first start."""
    from dateutil.rrule import rrulestr  # on use, as icalendar in calendar.py

    first = local_time(start_utc, zone)
    return rrulestr(f"RRULE:{rule}", dtstart=first)  # type: ignore[return-value]


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def occurrences(
    rule: str, start_utc: datetime, end_utc: datetime, zone: str, *, after: datetime, count: int
) -> list[tuple[datetime, datetime]]:
    """The next `count` (start, end) of a series by its rule, naive UTC, starting after
    `after` (UTC). Each start is also that date's RECURRENCE-ID."""
    duration = end_utc - start_utc
    series = _series(rule, start_utc, zone)
    moment = local_time(after, zone)
    found: list[tuple[datetime, datetime]] = []
    while len(found) < count:
        following = series.after(moment)
        if following is None:
            break
        moment = following
        start = _utc(moment)
        found.append((start, start + duration))
    return found


def is_rule_date(rule: str, start_utc: datetime, zone: str, moment: datetime) -> bool:
    """Whether `moment` (naive UTC) is a start the rule gives: a date of the series."""
    local = local_time(moment, zone)
    found = _series(rule, start_utc, zone).after(local, inc=True)
    return found is not None and _utc(found) == moment


def _without_end(rule: str) -> list[str]:
    """The rule's parts but UNTIL and COUNT: its rhythm."""
    return [p for p in rule.split(";") if p.split("=", 1)[0].upper() not in ("UNTIL", "COUNT")]


def until_before(rule: str, moment: datetime) -> str:
    """`rule` ending before `moment` (naive UTC): UNTIL a second earlier, COUNT dropped."""
    until = (moment - timedelta(seconds=1)).strftime("%Y%m%dT%H%M%SZ")
    return ";".join([*_without_end(rule), f"UNTIL={until}"])


def previous(rule: str, start_utc: datetime, zone: str, moment: datetime) -> datetime | None:
    """The last start (naive UTC) the rule gives before `moment`, or None."""
    found = _series(rule, start_utc, zone).before(local_time(moment, zone))
    return _utc(found) if found is not None else None


def continued(
    rule: str, start_utc: datetime, zone: str, moment: datetime, new_start_utc: datetime
) -> str:
    """The rule of a series' dates from `moment` on, started anew at `new_start_utc`.

    A rhythm the admin's chooser makes follows the new first day ("každé druhé
    úterý" moved to a Thursday is "každý druhý čtvrtek"); any other rule is
    kept as it is. UNTIL stays; COUNT counts only the dates left.
    """
    rhythm = ";".join(_without_end(rule))
    choice = choice_for_rule(rhythm)
    if choice and rule_for_choice(choice, local_time(start_utc, zone)) == rhythm:
        rhythm = rule_for_choice(choice, local_time(new_start_utc, zone))
    parts = dict(p.split("=", 1) for p in rule.split(";") if "=" in p)
    if "UNTIL" in parts:
        return f"{rhythm};UNTIL={parts['UNTIL']}"
    if "COUNT" in parts and parts["COUNT"].isdigit():
        series = _series(rule, start_utc, zone)
        held = series.between(local_time(start_utc, zone), local_time(moment, zone), inc=True)
        left = int(parts["COUNT"]) - sum(1 for day in held if _utc(day) < moment)
        return f"{rhythm};COUNT={max(left, 1)}"
    return rhythm


def describe(rule: str, start_utc: datetime, zone: str) -> str:
    """ "každé druhé úterý v měsíci v 9:30", "on the second Tuesday of every month at 9:30 AM"
    for the usual rhythms, in the current language; else the RRULE itself."""
    parts = dict(p.split("=", 1) for p in rule.split(";") if "=" in p)
    byday = parts.get("BYDAY", _DAYS[local_time(start_utc, zone).weekday()])
    if "," in byday or byday[-2:] not in _DAYS:
        return _("podle pravidla %(rule)s", rule=rule)
    rhythm = Rhythm(
        parts.get("FREQ", ""),
        parts.get("INTERVAL", "1"),
        _DAYS.index(byday[-2:]),
        byday[:-2],
        parts.get("BYMONTHDAY", ""),
        "BYDAY" in parts,
    )
    at = clock_time(start_utc, zone)
    said = _czech(rhythm, at) if current_language() == "cs" else _translated(rhythm, at)
    said = said or _("podle pravidla %(rule)s", rule=rule)
    ending = last_date(rule, start_utc, zone)
    if ending is None:
        return said
    day = format_date(local_time(ending, zone).date(), "long", locale=current_language())
    return _("%(rhythm)s, naposledy %(day)s", rhythm=said, day=day)


def last_date(rule: str, start_utc: datetime, zone: str) -> datetime | None:
    """The last start (naive UTC) of a rule with an end (UNTIL, or a COUNT of at most
    RRULE_COUNT_LISTED dates), else None."""
    parts = dict(p.split("=", 1) for p in rule.split(";") if "=" in p)
    series = _series(rule, start_utc, zone)
    if "UNTIL" in parts:
        try:
            until = datetime.strptime(parts["UNTIL"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return None
        found = series.before(until.astimezone(local_time(start_utc, zone).tzinfo), inc=True)
        return _utc(found) if found is not None else None
    count = parts.get("COUNT", "")
    if count.isdigit() and 0 < int(count) <= RRULE_COUNT_LISTED:
        dates = list(series)
        return _utc(dates[-1]) if dates else None
    return None


@dataclass(frozen=True)
class Rhythm:
    """The parts of an RRULE the words describe."""

    freq: str
    interval: str
    weekday: int  # 0 Monday … 6 Sunday
    ordinal: str  # "2" in BYDAY=2TU, "-1" for the last, "" for every
    month_day: str  # BYMONTHDAY
    by_day: bool  # BYDAY given (a monthly rule by weekday)

    @property
    def number(self) -> int:
        return int(self.ordinal) if self.ordinal.lstrip("-").isdigit() else 0


def _czech(rhythm: Rhythm, at: str) -> str | None:
    """Czech declines the weekday and agrees "každý" with its gender, which CLDR has not."""
    every, day = _EVERY[rhythm.weekday], _ACCUSATIVE[rhythm.weekday]
    if rhythm.freq == "WEEKLY" and not rhythm.ordinal and rhythm.interval == "1":
        return f"{every} {day} v {at}"
    if rhythm.freq == "WEEKLY" and not rhythm.ordinal and rhythm.interval == "2":
        return f"jednou za dva týdny {'ve' if rhythm.weekday in (2, 3) else 'v'} {day} v {at}"
    monthly = rhythm.freq == "MONTHLY" and rhythm.interval == "1"
    if monthly and rhythm.by_day and rhythm.number in _ORDINALS[every]:
        return f"{every} {_ORDINALS[every][rhythm.number]} {day} v měsíci v {at}"
    if monthly and rhythm.month_day.isdigit():
        return f"každý měsíc {rhythm.month_day}. den v {at}"
    return None


def _translated(rhythm: Rhythm, at: str) -> str | None:
    """Other languages: the catalogue's sentences around CLDR's weekday name."""
    weekday = get_day_names("wide", locale=current_language())[rhythm.weekday]
    if rhythm.freq == "WEEKLY" and not rhythm.ordinal and rhythm.interval == "1":
        return _("každý týden v den %(weekday)s v %(time)s", weekday=weekday, time=at)
    if rhythm.freq == "WEEKLY" and not rhythm.ordinal and rhythm.interval == "2":
        return _("jednou za dva týdny v den %(weekday)s v %(time)s", weekday=weekday, time=at)
    monthly = rhythm.freq == "MONTHLY" and rhythm.interval == "1"
    if monthly and rhythm.by_day and rhythm.number in ORDINAL_WORDS:
        return _(
            "každý měsíc %(ordinal)s den %(weekday)s v %(time)s",
            ordinal=ORDINAL_WORDS[rhythm.number],
            weekday=weekday,
            time=at,
        )
    if monthly and rhythm.month_day.isdigit():
        return _("každý měsíc %(day)s. den v %(time)s", day=rhythm.month_day, time=at)
    return None
