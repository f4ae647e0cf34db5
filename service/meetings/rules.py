"""Meetings of working groups: what a meeting may be, and how it changes.

A meeting is announced by an issue on its group list (the invitation); a
change of time or place is an update with a higher SEQUENCE, a cancellation
sends METHOD:CANCEL (`calendar.py` builds what those mails carry). Only an
invitation nobody has received yet may change silently.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from ..archive.dates import MONTHS_GENITIVE
from ..clock import SkippedLocalTime, from_local, iso_utc, local_zone, utcnow
from ..extensions import db
from ..groups.dates import WEEKDAYS_ON, local_time, on_day
from ..i18n import in_language
from ..issues.sending import IssueInput, create_issue, send_now
from ..mail import sender_domain
from ..models import Issue, MailingList, Meeting, User
from . import occurrences, recurrence, wording
from .calendar import ics_url, meeting_title
from .recurrence import REPEAT_CHOICES, check_rule, describe, rule_for_choice

LOCATION_MAX = 300
ONLINE_URL_MAX = 500
AGENDA_MAX = 20_000
TIME_MAX_LENGTH = 64
# A meeting lasts at most this long; longer is a typo in a date.
DURATION_MAX = timedelta(days=7)
# Meetings are planned at most this far ahead.
HORIZON = timedelta(days=2 * 366)
NOT_A_GROUP = _l("Pozvánku na setkání lze připojit jen k oznámení pracovní skupiny.")


class MeetingError(Exception):
    """A meeting cannot be changed this way now; the message is in the request's language
    (Czech by default) and meant for the user (409)."""

    status = 409


@dataclass
class MeetingInput:
    """A validated meeting: times as naive UTC, like the database keeps them."""

    start: datetime
    end: datetime
    location: str = ""
    online_url: str = ""
    agenda: str = ""
    rrule: str = ""  # a series: RFC 5545 RRULE from `start` (recurrence.py)


# --- validation ---------------------------------------------------------------


def parse_time(value: Any) -> tuple[datetime | None, str | None]:
    """An ISO 8601 time as naive UTC; without an offset it is Prague time. Or an error."""
    if not isinstance(value, str) or not value.strip():
        return None, _("Zadejte čas ve formátu ISO 8601, např. 2026-12-10T09:30.")
    if len(value) > TIME_MAX_LENGTH:
        return None, _("Čas není platný údaj ve formátu ISO 8601, např. 2026-12-10T09:30.")
    try:
        moment = datetime.fromisoformat(value.strip())
        if moment.tzinfo is None:
            moment = from_local(moment)
        return moment.astimezone(UTC).replace(tzinfo=None), None
    except SkippedLocalTime as skipped:
        return None, str(skipped)
    except (ValueError, OverflowError):
        return None, _("Čas není platný údaj ve formátu ISO 8601, např. 2026-12-10T09:30.")


def validate_meeting(data: Any) -> tuple[MeetingInput | None, dict[str, str]]:
    """Clean a meeting dict; errors map field names (start, end, …) to messages in the
    request's language."""
    if not isinstance(data, dict):
        return None, {"meeting": _("Setkání musí být objekt s údaji start, end a location.")}
    errors: dict[str, str] = {}
    start, problem = parse_time(data.get("start"))
    if problem:
        errors["start"] = problem
    end, problem = parse_time(data.get("end"))
    if problem:
        errors["end"] = problem
    now = utcnow()
    if start is not None and start <= now:
        errors["start"] = _("Začátek setkání musí být v budoucnosti.")
    elif start is not None and start > now + HORIZON:
        errors["start"] = _("Setkání lze naplánovat nejvýše dva roky dopředu.")
    if start is not None and end is not None and "start" not in errors:
        if end <= start:
            errors["end"] = _("Konec setkání musí být po jeho začátku.")
        elif end - start > DURATION_MAX:
            errors["end"] = _("Setkání může trvat nejvýše sedm dní.")
    location = _text(data.get("location"), "location", LOCATION_MAX, errors, one_line=True)
    online_url = _text(data.get("online_url"), "online_url", ONLINE_URL_MAX, errors, one_line=True)
    agenda = _text(data.get("agenda"), "agenda", AGENDA_MAX, errors, one_line=False)
    if "online_url" not in errors and online_url and not _is_web_link(online_url):
        errors["online_url"] = _("Odkaz na online připojení musí začínat http:// nebo https://.")
    if "location" not in errors and "online_url" not in errors and not (location or online_url):
        errors["location"] = _("Vyplňte místo setkání (nebo odkaz na online připojení).")
    rrule = _rrule(data, start, errors)
    if errors or start is None or end is None:  # a missing time has its error
        return None, errors
    return (
        MeetingInput(start, end, location, online_url, agenda.replace("\r\n", "\n"), rrule),
        {},
    )


def _rrule(data: dict, start: datetime | None, errors: dict[str, str]) -> str:
    """The series' RRULE: `rrule` as given (the API) or the admin chooser's `repeat`."""
    rule, choice = data.get("rrule"), data.get("repeat")
    if rule is None and not choice:
        return ""
    if start is None or "start" in errors:
        return ""
    first = start.replace(tzinfo=UTC).astimezone(local_zone()).replace(tzinfo=None)
    if rule is None:
        if choice not in REPEAT_CHOICES:
            errors["repeat"] = _("Vyberte opakování ze seznamu.")
            return ""
        return rule_for_choice(choice, first)
    if not isinstance(rule, str):
        errors["rrule"] = _("Pravidlo opakování musí být text, např. FREQ=MONTHLY;BYDAY=2TU.")
        return ""
    rule = rule.strip().upper().removeprefix("RRULE:")
    problem = check_rule(rule, start.replace(tzinfo=UTC).astimezone(local_zone())) if rule else None
    if problem:
        errors["rrule"] = problem
    return rule


_LABELS = {"location": _l("Místo"), "online_url": _l("Odkaz"), "agenda": _l("Program")}


def _text(value: Any, field: str, limit: int, errors: dict, *, one_line: bool) -> str:
    label = _LABELS[field]
    if value is None:
        return ""
    if not isinstance(value, str):
        errors[field] = _("%(label)s musí být text.", label=label)
        return ""
    value = value.strip()
    if len(value) > limit:
        errors[field] = _("%(label)s může mít nejvýše %(limit)d znaků.", label=label, limit=limit)
    elif one_line and any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in value):
        errors[field] = _("%(label)s musí být na jednom řádku a bez řídicích znaků.", label=label)
    elif "\x00" in value:
        errors[field] = _("%(label)s obsahuje nepovolené znaky.", label=label)
    return value


def _is_web_link(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and " " not in url


def meeting_problem(mailing_list: MailingList, data: Any) -> dict[str, str]:
    """Errors (keys `meeting` or `meeting.<field>`) for a new issue's meeting."""
    if data is None:
        return {}
    if mailing_list.kind != "group":
        return {"meeting": str(NOT_A_GROUP)}
    _fields, errors = validate_meeting(data)
    return {k if k == "meeting" else f"meeting.{k}": v for k, v in errors.items()}


# --- the meeting's life -------------------------------------------------------


def new_uid() -> str:
    """A UID for a new meeting, also seen in the mail's .ics link.

    A UUID with its hyphens: a run of 32 hex digits can look like a Bitcoin
    address to spam filters (SpamAssassin's PDS_BTC_ID, +1.0).
    """
    return f"{uuid.uuid4()}@{sender_domain()}"


def attach_meeting(issue: Issue, fields: MeetingInput) -> Meeting:
    """Make `issue` (a draft on a group list) the invitation to a new meeting."""
    if issue.mailing_list.kind != "group":
        raise MeetingError(str(NOT_A_GROUP))
    meeting = Meeting(list_id=issue.list_id, uid=new_uid(), sequence=0)
    _apply(meeting, fields)
    db.session.add(meeting)
    db.session.flush()
    issue.meeting = meeting
    issue.meeting_method = "REQUEST"
    return meeting


def edit_draft_meeting(issue: Issue, fields: MeetingInput | None) -> None:
    """The admin's edit of a draft invitation: change, add or drop its meeting in place.

    Only an invitation nobody has received yet may change silently; once sent,
    a change is an update (`update_meeting`) with a higher SEQUENCE.
    """
    meeting = issue.meeting
    if fields is None:
        if meeting is not None and not ever_sent(meeting):
            issue.meeting, issue.meeting_method = None, None
            db.session.delete(meeting)
        return
    if meeting is None:
        attach_meeting(issue, fields)
    elif ever_sent(meeting):
        raise MeetingError(
            _("Odeslanou pozvánku nelze upravit; použijte „Změnit termín nebo místo“.")
        )
    else:
        _apply(meeting, fields)


def ever_sent(meeting: Meeting) -> bool:
    return (
        db.session.scalar(
            select(Issue.id)
            .where(Issue.meeting_id == meeting.id, Issue.status.not_in(Issue.EDITABLE))
            .limit(1)
        )
        is not None
    )


def _apply(meeting: Meeting, fields: MeetingInput) -> None:
    meeting.start, meeting.end, meeting.rrule = fields.start, fields.end, fields.rrule
    meeting.location, meeting.online_url = fields.location, fields.online_url
    meeting.agenda = fields.agenda


def update_meeting(meeting: Meeting, fields: MeetingInput, author: User | None) -> Issue:
    """New time or place: SEQUENCE + 1 and a draft update for the coordinator to send.

    Its subject says what changed ("Změna termínu: … nově ve čtvrtek 11. prosince"),
    and a date in the meeting's title moves with the meeting, so the calendar's
    SUMMARY does not keep the old day.
    """
    if meeting.cancelled_at is not None:
        raise MeetingError(_("Setkání je zrušené; změnit ho už nelze."))
    title = meeting_title(meeting)
    old_start, old_end, old_location = meeting.start, meeting.end, meeting.location
    _apply(meeting, fields)
    meeting.sequence += 1
    _forget_lost_dates(meeting)
    meeting.title = retitle(title, old_start, meeting.start, meeting.mailing_list.language)[:200]
    subject, body = wording.update_text(title, old_start, old_end, old_location, meeting)
    return announcement(meeting, subject, body, "REQUEST", author)


def _forget_lost_dates(meeting: Meeting) -> None:
    """After the whole series changed: dates kept apart that its rule no longer gives
    are gone (a calendar drops exceptions of dates the series no longer has)."""
    zone = local_zone().key
    for row in occurrences.rows(meeting).values():
        if not meeting.rrule or not recurrence.is_rule_date(
            meeting.rrule, meeting.start, zone, row.recurrence_id
        ):
            db.session.delete(row)


def retitle(title: str, old_start: datetime, new_start: datetime, language: str = "cs") -> str:
    """`title` with the old date ("ve čtvrtek 10. prosince", "10. prosince", "10. 12.") moved.

    Only Czech titles are read for dates (a list in another language keeps its title).
    """
    tz = local_zone().key
    old, new = local_time(old_start, tz), local_time(new_start, tz)
    if old.date() == new.date() or language != "cs":
        return title
    month = MONTHS_GENITIVE[old.month - 1]
    new_month = MONTHS_GENITIVE[new.month - 1]
    day = rf"(?<!\d){old.day}\.\s*"
    weekday = "|".join(re.escape(w) for w in WEEKDAYS_ON)
    year = rf"(?P<year>\s+{old.year})?"

    def with_year(text: str) -> Callable[[re.Match[str]], str]:
        return lambda m: text + (f" {new.year}" if m["year"] else "")

    with in_language("cs"):
        new_day = on_day(new_start, tz)
    title = re.sub(rf"(?:{weekday})\s+{day}{month}{year}", with_year(new_day), title)
    title = re.sub(rf"{day}{month}{year}", with_year(f"{new.day}. {new_month}"), title)
    return re.sub(rf"{day}{old.month}\.", f"{new.day}. {new.month}.", title)


def cancel_meeting(meeting: Meeting, author: User | None) -> Issue:
    """Cancel the meeting and send METHOD:CANCEL to the group at once; returns that issue."""
    if meeting.cancelled_at is not None:
        raise MeetingError(_("Setkání už je zrušené."))
    if meeting.end <= utcnow():
        raise MeetingError(_("Setkání už proběhlo; zrušit ho nelze."))
    meeting.cancelled_at = utcnow()
    meeting.sequence += 1
    subject, body = wording.cancel_text(meeting)
    issue = announcement(meeting, subject, body, "CANCEL", author)
    send_now(issue)
    return issue


def start_minutes(
    meeting: Meeting, author: User | None, date: occurrences.Occurrence | None = None
) -> Issue:
    """A draft of the meeting's minutes (for a series, of one of its dates): an
    announcement tied to the meeting (no calendar), kept on the members' page with the
    agenda, the attendance and its documents."""
    if meeting.rrule and date is None:
        raise MeetingError(_("U pravidelného setkání vyberte termín, ze kterého je zápis."))
    if meeting.cancelled_at is not None or (date is not None and date.cancelled):
        raise MeetingError(_("Setkání bylo zrušeno; zápis z něj nevznikne."))
    start = date.start if date is not None else meeting.start
    if start > utcnow():
        raise MeetingError(_("Zápis lze napsat až od začátku setkání."))
    subject, body = wording.minutes_text(meeting, date)
    issue = announcement(meeting, subject, body, None, author)
    issue.meeting_occurrence = date.recurrence_id if date is not None else None
    return issue


def announcement(
    meeting: Meeting, subject: str, body: str, method: str | None, author: User | None
) -> Issue:
    """A draft issue to the group about its meeting: a change ("Změna termínu: …", METHOD
    REQUEST), a cancellation ("Zrušeno: …", CANCEL) or the minutes (no calendar)."""
    issue = create_issue(meeting.mailing_list, IssueInput(subject[:200], body), author)
    issue.meeting, issue.meeting_method = meeting, method
    db.session.flush()
    return issue


def meeting_json(meeting: Meeting) -> dict[str, Any]:
    """The meeting as the API shows it; times in UTC with an offset."""
    zone = local_zone().key
    return {
        "id": meeting.id,
        "uid": meeting.uid,
        "start": iso_utc(meeting.start),
        "end": iso_utc(meeting.end),
        "location": meeting.location,
        "online_url": meeting.online_url or None,
        "agenda": meeting.agenda or None,
        "sequence": meeting.sequence,
        "cancelled": meeting.cancelled_at is not None,
        "rrule": meeting.rrule or None,
        "rhythm": describe(meeting.rrule, meeting.start, zone) if meeting.rrule else None,
        "ics_url": ics_url(meeting),
        "dates": [_date_json(date) for date in occurrences.listed(meeting)]
        if meeting.rrule
        else [],
    }


def _date_json(date: occurrences.Occurrence) -> dict[str, Any]:
    """One date of a series as the API shows it (the last few held and the next few)."""
    return {
        "recurrence_id": iso_utc(date.recurrence_id),
        "key": date.key,
        "start": iso_utc(date.start),
        "end": iso_utc(date.end),
        "location": date.location,
        "changed": date.changed,
        "cancelled": date.cancelled,
        "sequence": date.sequence,
    }
