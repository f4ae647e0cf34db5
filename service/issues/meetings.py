"""Meeting invitations of working groups: validation, updates, cancellation, iCalendar.

A meeting is announced by an issue on its group list; every mail of that
issue carries the same `text/calendar` part (RFC 5545, built with the
`icalendar` library), so calendars file the meeting under one UID. Changing
the time or place raises SEQUENCE and sends an update; cancelling sends
METHOD:CANCEL. The calendar an issue carries is frozen when the issue starts
sending (`freeze_calendar`), like its rendered body, so a later change of the
meeting never alters mails still going out.
"""

from __future__ import annotations

import hashlib
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, abort, current_app
from sqlalchemy import select

from .. import jobs
from ..clock import utcnow
from ..extensions import db
from ..mail import sender_address, sender_domain
from ..models import Attachment, Issue, MailingList, Meeting, User

LOCATION_MAX = 300
ONLINE_URL_MAX = 500
AGENDA_MAX = 20_000
TIME_MAX_LENGTH = 64
# A meeting lasts at most this long; longer is a typo in a date.
DURATION_MAX = timedelta(days=7)
# Meetings are planned at most this far ahead.
HORIZON = timedelta(days=2 * 366)
CALENDAR_CONTENT_TYPE = "text/calendar"
CALENDAR_FILENAME = "pozvanka.ics"
METHODS = ("REQUEST", "CANCEL")
PRODID = "-//Socialni bydleni//Zpravodaj//CS"

bp = Blueprint("meetings", __name__, url_prefix="/meetings")


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


def zone() -> ZoneInfo:
    return ZoneInfo(current_app.config["TIMEZONE"])


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
    from .sending import IssueInput, create_issue

    if meeting.cancelled_at is not None:
        raise MeetingError("Setkání je zrušené; změnit ho už nelze.")
    _apply(meeting, fields)
    meeting.sequence += 1
    body = (
        "Dobrý den,\n\nposíláme **změněné údaje** o setkání pracovní skupiny "
        f"{meeting.mailing_list.name}. Aktuální termín, místo a program najdete níže; "
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
    from .sending import IssueInput, create_issue, send_now

    if meeting.cancelled_at is not None:
        raise MeetingError("Setkání už je zrušené.")
    if meeting.end <= utcnow():
        raise MeetingError("Setkání už proběhlo; zrušit ho nelze.")
    meeting.cancelled_at = utcnow()
    meeting.sequence += 1
    body = (
        "Dobrý den,\n\nsetkání pracovní skupiny "
        f"{meeting.mailing_list.name} uvedené níže se **ruší**. "
        "Z kalendáře se odstraní samo.\n"
    )
    issue = create_issue(
        meeting.mailing_list, IssueInput(f"Zrušeno: {meeting_title(meeting)}"[:200], body), author
    )
    issue.meeting, issue.meeting_method = meeting, "CANCEL"
    db.session.flush()
    send_now(issue)
    return issue


def meeting_title(meeting: Meeting) -> str:
    """The invitation's subject (the first issue about the meeting), else the group's name."""
    subject = db.session.scalar(
        select(Issue.subject).where(Issue.meeting_id == meeting.id).order_by(Issue.id).limit(1)
    )
    return subject or meeting.mailing_list.name


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


# --- what the mail shows ------------------------------------------------------


def format_meeting_time(start_utc: datetime, end_utc: datetime) -> str:
    """ "čtvrtek 10. prosince 2026 od 9:30 do 11:30" in the service's zone (TIMEZONE)."""
    from ..groups.dates import format_meeting_time as czech_meeting_time

    return czech_meeting_time(start_utc, end_utc, current_app.config["TIMEZONE"])


def ics_url(meeting: Meeting) -> str:
    from ..links import external_url

    return external_url("meetings.download", uid=meeting.uid)


def mail_context(issue: Issue) -> dict[str, Any] | None:
    """What the mail template shows about the issue's meeting, or None."""
    from .markdown import markdown_to_html, markdown_to_text

    meeting = issue.meeting
    if meeting is None:
        return None
    return {
        "when": format_meeting_time(meeting.start, meeting.end),
        "location": meeting.location,
        "online_url": meeting.online_url,
        "agenda_html": markdown_to_html(meeting.agenda) if meeting.agenda else "",
        "agenda_text": markdown_to_text(meeting.agenda) if meeting.agenda else "",
        "ics_url": ics_url(meeting),
        "cancelled": issue.meeting_method == "CANCEL",
    }


# --- iCalendar ------------------------------------------------------------------


def ics_for(meeting: Meeting, method: str, sequence: int) -> bytes:
    """The meeting as an RFC 5545 calendar (METHOD REQUEST, CANCEL or PUBLISH).

    No ATTENDEE: the same bytes go to every member, encoded once per issue.
    """
    import icalendar

    local = zone()
    cancelled = method == "CANCEL" or meeting.cancelled_at is not None
    calendar = icalendar.Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", method)
    event = icalendar.Event()
    event.add("uid", meeting.uid)
    event.add("dtstamp", datetime.now(UTC).replace(microsecond=0))
    event.add("dtstart", meeting.start.replace(tzinfo=UTC).astimezone(local))
    event.add("dtend", meeting.end.replace(tzinfo=UTC).astimezone(local))
    event.add("summary", meeting_title(meeting))
    location = ", ".join(part for part in (meeting.location, meeting.online_url) if part)
    if location:
        event.add("location", location)
    if meeting.online_url:
        event.add("url", meeting.online_url)
    description = _description(meeting)
    if description:
        event.add("description", description)
    name, address = sender_address()
    organizer = icalendar.vCalAddress(f"mailto:{address}")
    organizer.params["cn"] = icalendar.vText(meeting.mailing_list.name or name)
    event.add("organizer", organizer)
    event.add("sequence", sequence)
    event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    event.add("transp", "OPAQUE")
    calendar.add_component(event)
    # The VTIMEZONE of Europe/Prague, generated from the zoneinfo database.
    calendar.add_missing_timezones()
    return calendar.to_ical()


def _description(meeting: Meeting) -> str:
    from .markdown import markdown_to_text

    parts = []
    if meeting.agenda:
        parts.append("Program:\n" + markdown_to_text(meeting.agenda).strip())
    if meeting.online_url:
        parts.append(f"Online připojení: {meeting.online_url}")
    return "\n\n".join(parts)


def calendar_for(issue: Issue) -> tuple[str, bytes] | None:
    """(method, ICS bytes) an issue's mails carry: frozen at send, fresh for a draft."""
    if issue.meeting is None or issue.meeting_method not in METHODS:
        return None
    for attachment in issue.attachments:
        if attachment.content_type == CALENDAR_CONTENT_TYPE:
            return issue.meeting_method, attachment.data
    sequence = issue.meeting_sequence
    if sequence is None:
        sequence = issue.meeting.sequence
    return issue.meeting_method, ics_for(issue.meeting, issue.meeting_method, sequence)


def documents(issue: Issue) -> list[Attachment]:
    """The issue's attachments people added (the frozen calendar is not one of them)."""
    return [a for a in issue.attachments if a.content_type != CALENDAR_CONTENT_TYPE]


def freeze_calendar(issue: Issue) -> None:
    """At the start of sending: store the calendar the issue carries, once, on the issue.

    Also schedules the reminder when this is an invitation (or update) and none went yet.
    """
    meeting = issue.meeting
    if meeting is None or issue.meeting_method not in METHODS:
        return
    for attachment in list(issue.attachments):
        if attachment.content_type == CALENDAR_CONTENT_TYPE:
            issue.attachments.remove(attachment)
    issue.meeting_sequence = meeting.sequence
    data = ics_for(meeting, issue.meeting_method, meeting.sequence)
    issue.attachments.append(
        Attachment(
            filename=CALENDAR_FILENAME,
            content_type=CALENDAR_CONTENT_TYPE,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            data=data,
        )
    )
    if (
        issue.meeting_method == "REQUEST"
        and meeting.cancelled_at is None
        and meeting.reminder_sent_at is None
    ):
        schedule_reminder(meeting)


# --- reminders --------------------------------------------------------------------


def reminder_time(meeting: Meeting) -> datetime:
    """Naive UTC: MEETING_REMINDER_HOURS before the start."""
    return meeting.start - timedelta(hours=current_app.config["MEETING_REMINDER_HOURS"])


def reminder_job_id(meeting_id: int, start: datetime) -> str:
    # The start is part of the id: a moved meeting gets a new job, and the old
    # one finds the start changed and does nothing.
    return f"meeting-{meeting_id}-reminder-{int(start.replace(tzinfo=UTC).timestamp())}"


def schedule_reminder(meeting: Meeting) -> bool:
    """After commit, have RQ's scheduler fire the reminder (if its time is still ahead)."""
    at = reminder_time(meeting)
    if at <= utcnow():
        return False
    jobs.after_commit(enqueue_reminder, meeting.id, meeting.start, at)
    return True


def enqueue_reminder(meeting_id: int, start: datetime, at: datetime):
    return jobs.enqueue(
        "workers.meetings.send_reminder",
        meeting_id,
        int(start.replace(tzinfo=UTC).timestamp()),
        job_id=reminder_job_id(meeting_id, start),
        at=at,
    )


# --- the public .ics download ---------------------------------------------------------


@bp.get("/<uid>.ics")
def download(uid: str):
    """ "Přidat do kalendáře": the meeting's current state as a file (METHOD:PUBLISH)."""
    meeting = None
    if len(uid) <= 255:
        meeting = db.session.scalar(select(Meeting).filter_by(uid=uid))
    if meeting is None:
        abort(404)
    data = ics_for(meeting, "PUBLISH", meeting.sequence)
    return Response(
        data,
        mimetype="text/calendar",
        headers={
            "Content-Disposition": f'attachment; filename="setkani-{meeting.id}.ics"',
            "Cache-Control": "no-store",
        },
    )


@bp.record_once
def _register_upload_limit(state) -> None:
    from .attachments import init_app

    init_app(state.app)
