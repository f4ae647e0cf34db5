"""A group's rhythm: recurring meetings as an RFC 5545 RRULE ("každé druhé úterý v měsíci").

A series is one Meeting with one UID and an `rrule`; its `start` and `end`
are the first occurrence. Occurrences are expanded in Prague wall-clock
time (python-dateutil, which icalendar already brings), so a 9:30 meeting
stays at 9:30 across the change to summer time, as calendar apps expand it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dateutil.rrule import rrule, rrulestr

from ..groups.dates import clock_time, local_time

RRULE_MAX = 200
# What the admin's simple chooser offers; each becomes an RRULE from the first date.
REPEAT_CHOICES = {
    "": "neopakuje se",
    "weekly": "každý týden",
    "biweekly": "jednou za dva týdny",
    "monthly-weekday": "každý měsíc ve stejný den v týdnu (např. každé druhé úterý)",
    "monthly-day": "každý měsíc ve stejný den v měsíci",
}
_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_ALLOWED_FREQ = {"DAILY", "WEEKLY", "MONTHLY", "YEARLY"}
# "každé úterý", "každý čtvrtek", "každou středu": the weekday's gender decides.
_EVERY = ("každé", "každé", "každou", "každý", "každý", "každou", "každou")
_ACCUSATIVE = ("pondělí", "úterý", "středu", "čtvrtek", "pátek", "sobotu", "neděli")
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
    """None when `rule` is an RRULE we can keep; else why not, in Czech. `start_local`
    is the first start, aware, in the service's zone."""
    if len(rule) > RRULE_MAX or any(c in rule for c in "\r\n:"):
        return "Pravidlo opakování (RRULE) není platné, např. FREQ=MONTHLY;BYDAY=2TU."
    parts = dict(p.split("=", 1) for p in rule.split(";") if "=" in p)
    if parts.get("FREQ") not in _ALLOWED_FREQ:
        return "Setkání se může opakovat nejčastěji denně (FREQ=DAILY, WEEKLY, MONTHLY, YEARLY)."
    if "UNTIL" in parts and not parts["UNTIL"].upper().endswith("Z"):
        # RFC 5545: with a DTSTART in a time zone, UNTIL is a UTC time.
        return "Konec opakování (UNTIL) uveďte v UTC, např. UNTIL=20270630T220000Z."
    try:
        upcoming = rrulestr(f"RRULE:{rule}", dtstart=start_local).after(start_local, inc=True)
    except (ValueError, TypeError, OverflowError):
        return "Pravidlo opakování (RRULE) není platné, např. FREQ=MONTHLY;BYDAY=2TU."
    if upcoming is None:
        return "Podle pravidla opakování by se setkání nekonalo ani jednou."
    return None


def _series(rule: str, start_utc: datetime, zone: str) -> rrule:
    """The rule expanded in `zone`'s wall-clock time from the first start."""
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


def until_before(rule: str, moment: datetime) -> str:
    """`rule` ending before `moment` (naive UTC): UNTIL a second earlier, COUNT dropped."""
    until = (moment - timedelta(seconds=1)).strftime("%Y%m%dT%H%M%SZ")
    parts = [p for p in rule.split(";") if p.split("=", 1)[0].upper() not in ("UNTIL", "COUNT")]
    return ";".join([*parts, f"UNTIL={until}"])


def describe(rule: str, start_utc: datetime, zone: str) -> str:
    """ "každé druhé úterý v měsíci v 9:30" for the usual rhythms; else the RRULE itself."""
    parts = dict(p.split("=", 1) for p in rule.split(";") if "=" in p)
    at = f" v {clock_time(start_utc, zone)}"
    freq, interval = parts.get("FREQ"), parts.get("INTERVAL", "1")
    byday = parts.get("BYDAY", _DAYS[local_time(start_utc, zone).weekday()])
    if "," in byday or byday[-2:] not in _DAYS:
        return f"podle pravidla {rule}"
    weekday, ordinal = _DAYS.index(byday[-2:]), byday[:-2]
    every, day = _EVERY[weekday], _ACCUSATIVE[weekday]
    if freq == "WEEKLY" and not ordinal and interval == "1":
        return f"{every} {day}{at}"
    if freq == "WEEKLY" and not ordinal and interval == "2":
        return f"jednou za dva týdny {'ve' if weekday in (2, 3) else 'v'} {day}{at}"
    if freq == "MONTHLY" and interval == "1" and "BYDAY" in parts:
        number = int(ordinal) if ordinal.lstrip("-").isdigit() else 0
        if number in _ORDINALS[every]:
            return f"{every} {_ORDINALS[every][number]} {day} v měsíci{at}"
    if freq == "MONTHLY" and interval == "1" and parts.get("BYMONTHDAY", "").isdigit():
        return f"každý měsíc {parts['BYMONTHDAY']}. den{at}"
    return f"podle pravidla {rule}"
