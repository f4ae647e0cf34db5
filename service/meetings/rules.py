"""Meetings of working groups: what a meeting may be, and how it changes.

A meeting is announced by an issue on its group list (the invitation); a
change of time or place is an update with a higher SEQUENCE, a cancellation
sends METHOD:CANCEL (`calendar.py` builds what those mails carry). Only an
invitation nobody has received yet may change silently.
"""

from __future__ import annotations

import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from ..clock import utcnow
from ..czech import group_genitive
from ..extensions import db
from ..issues.sending import IssueInput, create_issue, send_now
from ..mail import sender_domain
from ..models import Issue, MailingList, Meeting, User
from .calendar import ics_url, meeting_title, zone

LOCATION_MAX = 300
ONLINE_URL_MAX = 500
AGENDA_MAX = 20_000
TIME_MAX_LENGTH = 64
# A meeting lasts at most this long; longer is a typo in a date.
DURATION_MAX = timedelta(days=7)
# Meetings are planned at most this far ahead.
HORIZON = timedelta(days=2 * 366)


class MeetingError(Exception):
    """A meeting cannot be changed this way now; the message is Czech (409)."""

    status = 409


@dataclass
class MeetingInput:
    """A validated meeting: times as naive UTC, like the database keeps them."""

    start: datetime
    end: datetime
    location: str = ""
    online_url: str = ""
    agenda: str = ""


# --- validation ---------------------------------------------------------------


def parse_time(value: Any) -> tuple[datetime | None, str | None]:
    """An ISO 8601 time as naive UTC; without an offset it is Prague time. Or a Czech error."""
    example = "např. 2026-12-10T09:30"
    if not isinstance(value, str) or not value.strip():
        return None, f"Zadejte čas ve formátu ISO 8601, {example}."
    if len(value) > TIME_MAX_LENGTH:
        return None, f"Čas není platný údaj ve formátu ISO 8601, {example}."
    try:
        moment = datetime.fromisoformat(value.strip())
        if moment.tzinfo is None:
            naive, moment = moment, moment.replace(tzinfo=zone())
            # 02:30 on the spring-forward Sunday does not exist in Prague.
            if moment.astimezone(UTC).astimezone(zone()).replace(tzinfo=None) != naive:
                return None, "Tento čas kvůli změně na letní čas neexistuje; zvolte jiný."
        return moment.astimezone(UTC).replace(tzinfo=None), None
    except (ValueError, OverflowError):
        return None, f"Čas není platný údaj ve formátu ISO 8601, {example}."


def validate_meeting(data: Any) -> tuple[MeetingInput | None, dict[str, str]]:
    """Clean a meeting dict; errors map field names (start, end, …) to Czech messages."""
    if not isinstance(data, dict):
        return None, {"meeting": "Setkání musí být objekt s údaji start, end a location."}
    errors: dict[str, str] = {}
    start, problem = parse_time(data.get("start"))
    if problem:
        errors["start"] = problem
    end, problem = parse_time(data.get("end"))
    if problem:
        errors["end"] = problem
    now = utcnow()
    if start is not None and start <= now:
        errors["start"] = "Začátek setkání musí být v budoucnosti."
    elif start is not None and start > now + HORIZON:
        errors["start"] = "Setkání lze naplánovat nejvýše dva roky dopředu."
    if start is not None and end is not None and "start" not in errors:
        if end <= start:
            errors["end"] = "Konec setkání musí být po jeho začátku."
        elif end - start > DURATION_MAX:
            errors["end"] = "Setkání může trvat nejvýše sedm dní."
    location = _text(data.get("location"), "location", LOCATION_MAX, errors, one_line=True)
    online_url = _text(data.get("online_url"), "online_url", ONLINE_URL_MAX, errors, one_line=True)
    agenda = _text(data.get("agenda"), "agenda", AGENDA_MAX, errors, one_line=False)
    if "online_url" not in errors and online_url and not _is_web_link(online_url):
        errors["online_url"] = "Odkaz na online připojení musí začínat http:// nebo https://."
    if "location" not in errors and "online_url" not in errors and not (location or online_url):
        errors["location"] = "Vyplňte místo setkání (nebo odkaz na online připojení)."
    if errors:
        return None, errors
    return MeetingInput(start, end, location, online_url, agenda.replace("\r\n", "\n")), {}


_LABELS = {"location": "Místo", "online_url": "Odkaz", "agenda": "Program"}


def _text(value: Any, field: str, limit: int, errors: dict, *, one_line: bool) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        errors[field] = f"{_LABELS[field]} musí být text."
        return ""
    value = value.strip()
    if len(value) > limit:
        errors[field] = f"{_LABELS[field]} může mít nejvýše {limit} znaků."
    elif one_line and any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in value):
        errors[field] = f"{_LABELS[field]} musí být na jednom řádku a bez řídicích znaků."
    elif "\x00" in value:
        errors[field] = f"{_LABELS[field]} obsahuje nepovolené znaky."
    return value


def _is_web_link(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and " " not in url


def meeting_problem(mailing_list: MailingList, data: Any) -> dict[str, str]:
    """Czech errors (keys `meeting` or `meeting.<field>`) for a new issue's meeting."""
    if data is None:
        return {}
    if mailing_list.kind != "group":
        return {"meeting": "Pozvánku na setkání lze připojit jen k oznámení pracovní skupiny."}
    _, errors = validate_meeting(data)
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
        raise MeetingError("Pozvánku na setkání lze připojit jen k oznámení pracovní skupiny.")
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
        raise MeetingError("Odeslanou pozvánku nelze upravit; použijte „Změnit termín nebo místo“.")
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
    meeting.start, meeting.end = fields.start, fields.end
    meeting.location, meeting.online_url = fields.location, fields.online_url
    meeting.agenda = fields.agenda


def update_meeting(meeting: Meeting, fields: MeetingInput, author: User | None) -> Issue:
    """New time or place: SEQUENCE + 1 and a draft update for the coordinator to send."""
    if meeting.cancelled_at is not None:
        raise MeetingError("Setkání je zrušené; změnit ho už nelze.")
    _apply(meeting, fields)
    meeting.sequence += 1
    body = (
        "Dobrý den,\n\nposíláme **změněné údaje** o setkání "
        f"{group_genitive(meeting.mailing_list.name)}. "
        "Aktuální termín, místo a program najdete níže; "
        "pozvánka v kalendáři se sama aktualizuje.\n"
    )
    issue = create_issue(
        meeting.mailing_list, IssueInput(f"Změna: {meeting_title(meeting)}"[:200], body), author
    )
    issue.meeting, issue.meeting_method = meeting, "REQUEST"
    db.session.flush()
    return issue


def cancel_meeting(meeting: Meeting, author: User | None) -> Issue:
    """Cancel the meeting and send METHOD:CANCEL to the group at once; returns that issue."""
    if meeting.cancelled_at is not None:
        raise MeetingError("Setkání už je zrušené.")
    if meeting.end <= utcnow():
        raise MeetingError("Setkání už proběhlo; zrušit ho nelze.")
    meeting.cancelled_at = utcnow()
    meeting.sequence += 1
    body = (
        "Dobrý den,\n\nsetkání "
        f"{group_genitive(meeting.mailing_list.name)} uvedené níže se **ruší**. "
        "Z kalendáře se odstraní samo.\n"
    )
    issue = create_issue(
        meeting.mailing_list, IssueInput(f"Zrušeno: {meeting_title(meeting)}"[:200], body), author
    )
    issue.meeting, issue.meeting_method = meeting, "CANCEL"
    db.session.flush()
    send_now(issue)
    return issue


def meeting_json(meeting: Meeting) -> dict[str, Any]:
    """The meeting as the API shows it; times in UTC with an offset."""
    return {
        "id": meeting.id,
        "uid": meeting.uid,
        "start": meeting.start.replace(tzinfo=UTC).isoformat(),
        "end": meeting.end.replace(tzinfo=UTC).isoformat(),
        "location": meeting.location,
        "online_url": meeting.online_url or None,
        "agenda": meeting.agenda or None,
        "sequence": meeting.sequence,
        "cancelled": meeting.cancelled_at is not None,
        "ics_url": ics_url(meeting),
    }
