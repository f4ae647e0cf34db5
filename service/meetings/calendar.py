"""What a meeting's mails carry: the iCalendar part, the meeting's box in the mail.

Every mail of an issue about a meeting carries the same `text/calendar` part
(RFC 5545, built with the `icalendar` library), so calendars file the meeting
under one UID. The calendar an issue carries is frozen when the issue starts
sending (`freeze_calendar`), like its rendered body, so a later change of the
meeting never alters mails still going out.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import icalendar
from flask import current_app
from sqlalchemy import select

from ..clock import local_zone
from ..extensions import db
from ..groups.dates import format_meeting_time as czech_meeting_time
from ..issues.markdown import markdown_to_html, markdown_to_text
from ..links import external_url
from ..mail import sender_address
from ..models import Attachment, Issue, Meeting
from .reminders import schedule_reminder

CALENDAR_CONTENT_TYPE = "text/calendar"
CALENDAR_FILENAME = "pozvanka.ics"
METHODS = ("REQUEST", "CANCEL")
PRODID = "-//Socialni bydleni//Zpravodaj//CS"


def meeting_title(meeting: Meeting) -> str:
    """The invitation's subject (the first issue about the meeting), else the group's name."""
    subject = db.session.scalar(
        select(Issue.subject).where(Issue.meeting_id == meeting.id).order_by(Issue.id).limit(1)
    )
    return subject or meeting.mailing_list.name


# --- what the mail shows ------------------------------------------------------


def format_meeting_time(start_utc: datetime, end_utc: datetime) -> str:
    """ "čtvrtek 10. prosince 2026 od 9:30 do 11:30" in the service's zone (TIMEZONE)."""
    return czech_meeting_time(start_utc, end_utc, current_app.config["TIMEZONE"])


def ics_url(meeting: Meeting) -> str:
    return external_url("meetings.download", uid=meeting.uid)


def mail_context(issue: Issue) -> dict[str, Any] | None:
    """What the mail template shows about the issue's meeting, or None."""
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
    local = local_zone()
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
