"""What a meeting's mails carry: the iCalendar part, the meeting's box in the mail.

Every mail of an issue about a meeting carries a `text/calendar` part
(RFC 5545, built with the `icalendar` library) under the meeting's one UID.
The calendar an issue carries is frozen when the issue starts sending
(`freeze_calendar`), like its rendered body, so a later change of the
meeting never alters mails still going out.

RFC 5546 wants a REQUEST to name its recipient as ATTENDEE, and a calendar
app mails its answer to the ORGANIZER, which is personal too (rsvp.py). So the
frozen calendar leaves a slot before each `END:VEVENT`, and the per-recipient
personalisation (issues/rendering.py) fills it with `InvitationLines`: two
content lines per copy, the rest encoded once per issue.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import select

from ..clock import local_zone
from ..extensions import db
from ..groups.dates import format_meeting_time as zoned_meeting_time
from ..i18n import in_language
from ..issues.markdown import markdown_to_html, markdown_to_text
from ..links import external_url
from ..mail import sender_address
from ..models import Attachment, Issue, MailingList, Meeting
from . import occurrences
from .occurrences import Occurrence
from .recurrence import describe
from .reminders import schedule_date_reminder, schedule_reminder
from .rsvp import OrganizerAddresses
from .timezones import UnsupportedZone, vtimezone

# icalendar (~3 MB) is imported where a calendar is built, not here: every web and
# worker process loads this module with the app, for the few issues that are
# meeting invitations (timezones.py and replies.py do the same).
if TYPE_CHECKING:
    import icalendar

CALENDAR_CONTENT_TYPE = "text/calendar"
CALENDAR_FILENAME = "pozvanka.ics"
METHODS = ("REQUEST", "CANCEL")
PRODID = "-//Socialni bydleni//Zpravodaj//CS"
# Where each copy's ORGANIZER and ATTENDEE lines go (one slot per VEVENT).
ATTENDEE_SLOT = "@@ZPRAVODAJ-ATTENDEE@@"


def meeting_title(meeting: Meeting) -> str:
    """The calendar's SUMMARY: the meeting's title (rules.py keeps it), else the invitation's
    subject (meetings from before titles), else the group's name."""
    if meeting.title:
        return meeting.title
    subject = db.session.scalar(
        select(Issue.subject).where(Issue.meeting_id == meeting.id).order_by(Issue.id).limit(1)
    )
    return subject or meeting.mailing_list.name


def title_from_subject(subject: str) -> str:
    """The meeting's title from its invitation's subject ("Pozvánka: setkání" → "Setkání",
    "Invitation to the meeting" → "The meeting")."""
    title = re.sub(
        r"^\s*(?:pozvánka(?:\s+na|\s*[:–-])|invitation(?:\s+to|\s*[:–-]))\s*",
        "",
        subject,
        flags=re.IGNORECASE,
    ).strip()
    title = title or subject.strip()
    return title[:1].upper() + title[1:]


# --- what the mail shows ------------------------------------------------------


def format_meeting_time(start_utc: datetime, end_utc: datetime) -> str:
    """ "čtvrtek 10. prosince 2026 od 9:30 do 11:30" in the service's zone (TIMEZONE), in the
    current language."""
    return zoned_meeting_time(start_utc, end_utc, current_app.config["TIMEZONE"])


def ics_url(meeting: Meeting) -> str:
    return external_url("meetings.download", uid=meeting.uid)


def mail_context(issue: Issue) -> dict[str, Any] | None:
    """What the mail template shows about the issue's meeting, or None (none, or minutes).

    An issue about one date of a series (its change, cancellation or reminder)
    shows that date.
    """
    meeting = issue.meeting
    if meeting is None or issue.meeting_method is None:
        return None
    date = _date_of(issue)
    rhythm = describe(meeting.rrule, meeting.start, local_zone().key) if meeting.rrule else ""
    return {
        "when": format_meeting_time(date.start, date.end),
        "rhythm": rhythm if issue.meeting_occurrence is None else "",
        "location": date.location,
        "online_url": date.online_url,
        "agenda_html": markdown_to_html(date.agenda) if date.agenda else "",
        "agenda_text": markdown_to_text(date.agenda) if date.agenda else "",
        "ics_url": ics_url(meeting),
        "cancelled": issue.meeting_method == "CANCEL",
        # The mail's "Přijdu / Možná / Nepřijdu" links: invitations, updates and reminders.
        "rsvp": issue.meeting_method == "REQUEST" and not date.cancelled,
    }


def _date_of(issue: Issue) -> Occurrence:
    """The date an issue is about: the one it names, else the meeting's first."""
    meeting = issue.meeting
    assert meeting is not None
    if issue.meeting_occurrence is not None:
        found = occurrences.find(meeting, issue.meeting_occurrence)
        if found is not None:
            return found
    return occurrences.Occurrence(
        meeting.id, meeting.start, meeting.start, meeting.end, meeting.location,
        meeting.online_url, meeting.agenda, meeting.sequence, False,
        meeting.cancelled_at is not None,
    )  # fmt: skip


# --- iCalendar ------------------------------------------------------------------


def ics_for(
    meeting: Meeting, method: str, sequence: int, recurrence_id: datetime | None = None
) -> bytes:
    """The meeting as an RFC 5545 calendar (METHOD REQUEST, CANCEL or PUBLISH).

    A series carries its rule, its cancelled dates as EXDATE and each date
    moved alone as a VEVENT with RECURRENCE-ID. With `recurrence_id` the
    calendar is about that one date only (its change or cancellation, RFC 5546
    §3.2.2.5 and §3.2.5), under its own SEQUENCE.

    No ATTENDEE: a mail's copy gets its own (`InvitationLines`); the ORGANIZER here
    is the sender, which each mailed copy replaces with the member's reply address.
    """
    calendar = _calendar(method)
    cancelled = method == "CANCEL" or meeting.cancelled_at is not None
    if recurrence_id is not None:
        date = occurrences.find(meeting, recurrence_id)
        if date is None:
            raise ValueError(f"meeting {meeting.id} has no date {recurrence_id}")
        calendar.add_component(date_event(meeting, date, sequence, cancelled or date.cancelled))
    else:
        for event in series_events(meeting, sequence, cancelled):
            calendar.add_component(event)
    add_timezone(calendar)
    return calendar.to_ical()


def feed_for(group: MailingList, meetings: list[Meeting]) -> bytes:
    """A group's meetings as one subscribed calendar (METHOD:PUBLISH, a member's feed)."""
    calendar = _calendar("PUBLISH")
    calendar.add("x-wr-calname", group.name)
    calendar.add("x-wr-timezone", current_app.config["TIMEZONE"])
    # Calendar apps poll a subscribed feed; hourly is plenty for meetings.
    calendar.add("refresh-interval", timedelta(hours=1), parameters={"VALUE": "DURATION"})
    calendar.add("x-published-ttl", "PT1H")
    for meeting in meetings:
        for event in series_events(meeting, meeting.sequence, meeting.cancelled_at is not None):
            calendar.add_component(event)
    add_timezone(calendar)
    return calendar.to_ical()


def _calendar(method: str) -> icalendar.Calendar:
    import icalendar  # on use: see the imports

    calendar = icalendar.Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", method)
    return calendar


def _local(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC).astimezone(local_zone())


def series_events(meeting: Meeting, sequence: int, cancelled: bool) -> list[icalendar.Event]:
    """The meeting's VEVENT and, for a series, one per date moved alone (RECURRENCE-ID);
    dates cancelled alone are the rule's EXDATEs."""
    master = meeting_event(meeting, sequence, cancelled)
    if not meeting.rrule or cancelled:
        return [master]
    events = [master]
    kept = sorted(occurrences.rows(meeting).values(), key=lambda row: row.recurrence_id)
    gone = [_local(row.recurrence_id) for row in kept if row.cancelled_at is not None]
    if gone:
        master.add("exdate", gone)
    for row in kept:
        if row.changed_at is not None and row.cancelled_at is None:
            date = occurrences.find(meeting, row.recurrence_id)
            if date is not None:
                events.append(date_event(meeting, date, date.sequence, False))
    return events


def meeting_event(meeting: Meeting, sequence: int, cancelled: bool) -> icalendar.Event:
    """The meeting's VEVENT (a series' with its RRULE): times in TIMEZONE, the agenda as
    DESCRIPTION, the sender as ORGANIZER."""
    import icalendar  # on use: see the imports

    event = _event(
        meeting, meeting.start, meeting.end, meeting.location, meeting.online_url,
        meeting.agenda, sequence, cancelled,
    )  # fmt: skip
    if meeting.rrule:
        event.add("rrule", icalendar.vRecur.from_ical(meeting.rrule))
    return event


def date_event(
    meeting: Meeting, date: occurrences.Occurrence, sequence: int, cancelled: bool
) -> icalendar.Event:
    """One date of a series as it holds now, named by its RECURRENCE-ID."""
    event = _event(
        meeting, date.start, date.end, date.location, date.online_url, date.agenda,
        sequence, cancelled,
    )  # fmt: skip
    if meeting.rrule:
        event.add("recurrence-id", _local(date.recurrence_id))
    return event


def _event(
    meeting: Meeting,
    start: datetime,
    end: datetime,
    location: str,
    online_url: str,
    agenda: str,
    sequence: int,
    cancelled: bool,
) -> icalendar.Event:
    import icalendar  # on use: see the imports

    event = icalendar.Event()
    event.add("uid", meeting.uid)
    event.add("dtstamp", datetime.now(UTC).replace(microsecond=0))
    event.add("dtstart", _local(start))
    event.add("dtend", _local(end))
    event.add("summary", meeting_title(meeting))
    where = ", ".join(part for part in (location, online_url) if part)
    if where:
        event.add("location", where)
    if online_url:
        event.add("url", online_url)
    description = _description(meeting, agenda, online_url)
    if description:
        event.add("description", description)
    name, address = sender_address()
    organizer = icalendar.vCalAddress(f"mailto:{address}")
    organizer.params["cn"] = icalendar.vText(meeting.mailing_list.name or name)
    event.add("organizer", organizer)
    event.add("sequence", sequence)
    _add_series_links(event, meeting)
    event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    event.add("transp", "OPAQUE")
    return event


def _add_series_links(event: icalendar.Event, meeting: Meeting) -> None:
    """A series split ("move this and all later dates") and its continuation name each
    other (RFC 9253 RELATED-TO, an ordering relation): the series so far names the one
    that continues it as NEXT, and a continuation names the first series of the line as
    FIRST (RFC 9253 has no "previous"; FIRST and the NEXT chain give the whole line).
    Not SIBLING, PARENT or CHILD (RFC 5545): those are hierarchy, not succession."""
    if meeting.follows_id is not None:
        event.add("related-to", meeting.first_series().uid, parameters={"RELTYPE": "FIRST"})
    following = meeting.next_series()
    if following is not None:
        event.add("related-to", following.uid, parameters={"RELTYPE": "NEXT"})


def add_timezone(calendar: icalendar.Calendar) -> None:
    """The VTIMEZONE of TIMEZONE with its yearly rules (timezones.py)."""
    try:
        calendar.add_component(vtimezone(current_app.config["TIMEZONE"]))
    except UnsupportedZone:
        # A zone without a POSIX rule (none of Europe's): icalendar's transition list.
        calendar.add_missing_timezones()


# --- each member's copy -----------------------------------------------------------


def with_attendee_slots(ics: bytes) -> str:
    """The frozen calendar as text, its ORGANIZER lines taken out and a slot before each
    END:VEVENT for the copy's own ORGANIZER and ATTENDEE."""
    lines, skipping = [], False
    for line in ics.decode("utf-8").split("\r\n"):
        if skipping and line[:1] in (" ", "\t"):
            continue  # a folded continuation of the ORGANIZER line
        skipping = line.upper().startswith(("ORGANIZER;", "ORGANIZER:"))
        if skipping:
            continue
        if line == "END:VEVENT":
            lines.append(ATTENDEE_SLOT)
        lines.append(line)
    return "\r\n".join(lines)


class InvitationLines:
    """A member's ORGANIZER and ATTENDEE lines of one issue's calendar; made once per issue.

    Called per recipient by the delivery engine, so it only formats two
    content lines (a few microseconds): the rest of the calendar is shared.
    """

    def __init__(self, meeting: Meeting) -> None:
        self.organizer_address = OrganizerAddresses(meeting.id)
        self.organizer_name = meeting.mailing_list.name or sender_address()[0]

    def __call__(self, name: str, address: str, public_key: str | None) -> str:
        organizer = content_line(
            "ORGANIZER",
            [("CN", self.organizer_name)],
            f"mailto:{self.organizer_address(public_key)}",
        )
        attendee = content_line(
            "ATTENDEE",
            [
                ("CUTYPE", "INDIVIDUAL"),
                ("ROLE", "REQ-PARTICIPANT"),
                ("PARTSTAT", "NEEDS-ACTION"),
                ("RSVP", "TRUE"),
                ("CN", name or address),
            ],
            f"mailto:{address}",
        )
        return organizer + "\r\n" + attendee


# RFC 5545 §3.1: a parameter value with these is quoted; RFC 6868 escapes the rest.
_NEEDS_QUOTES = re.compile(r'[;:,"]')


def _param_value(value: str) -> str:
    value = value.replace("^", "^^").replace('"', "^'").replace("\r", "").replace("\n", "^n")
    return f'"{value}"' if not value.isascii() or _NEEDS_QUOTES.search(value) else value


def content_line(name: str, params: list[tuple[str, str]], value: str) -> str:
    """One folded content line. Hand-made: icalendar's Contentline costs ~0.25 ms a line,
    and the delivery engine formats two per recipient."""
    line = name + "".join(f";{key}={_param_value(v)}" for key, v in params) + ":" + value
    return fold(line)


def fold(line: str) -> str:
    """RFC 5545 §3.1 folding: at most 75 octets a line, never inside a UTF-8 character."""
    data = line.encode("utf-8")
    if len(data) <= 75:
        return line
    pieces, start, limit = [], 0, 75
    while len(data) - start > limit:
        end = start + limit
        while data[end] & 0xC0 == 0x80:  # a UTF-8 continuation byte: cut before its character
            end -= 1
        pieces.append(data[start:end])
        start, limit = end, 74  # a continuation line starts with one space
    pieces.append(data[start:])
    return b"\r\n ".join(pieces).decode("utf-8")


def _description(meeting: Meeting, agenda: str, online_url: str) -> str:
    """The event's DESCRIPTION, in the group's language (the agenda is written in it)."""
    parts = []
    with in_language(meeting.mailing_list.language):
        if agenda:
            parts.append(_("Program:") + "\n" + markdown_to_text(agenda).strip())
        if online_url:
            parts.append(_("Online připojení: %(url)s", url=online_url))
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
        sequence = _date_of(issue).sequence
    return issue.meeting_method, ics_for(
        issue.meeting, issue.meeting_method, sequence, issue.meeting_occurrence
    )


def documents(issue: Issue) -> list[Attachment]:
    """The issue's attachments people added (the frozen calendar is not one of them)."""
    return [a for a in issue.attachments if a.content_type != CALENDAR_CONTENT_TYPE]


def freeze_calendar(issue: Issue) -> None:
    """At the start of sending: store the calendar the issue carries, once, on the issue.

    Also schedules the reminder when this is an invitation (or update) and none went yet
    (for a series, the next date's).
    """
    meeting = issue.meeting
    if meeting is None or issue.meeting_method not in METHODS:
        return
    for attachment in list(issue.attachments):
        if attachment.content_type == CALENDAR_CONTENT_TYPE:
            issue.attachments.remove(attachment)
    issue.meeting_sequence = _date_of(issue).sequence
    if not meeting.title:
        # The invitation names the meeting: its subject, without "Pozvánka:", is the
        # calendar's title from now on (an update moves the date in it).
        meeting.title = title_from_subject(issue.subject)[:200]
    data = ics_for(meeting, issue.meeting_method, issue.meeting_sequence, issue.meeting_occurrence)
    issue.attachments.append(
        Attachment(
            filename=CALENDAR_FILENAME,
            content_type=CALENDAR_CONTENT_TYPE,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            data=data,
        )
    )
    if issue.meeting_method == "REQUEST" and meeting.cancelled_at is None:
        _schedule_reminder_of(issue, meeting)


def _schedule_reminder_of(issue: Issue, meeting: Meeting) -> None:
    """The reminder an invitation or update promises: the meeting's, a series' next
    date's, or the date's one an update of a single date is about."""
    if issue.meeting_occurrence is not None:
        date = occurrences.find(meeting, issue.meeting_occurrence)
        if date is not None:
            schedule_date_reminder(meeting, date)
    elif meeting.rrule or meeting.reminder_sent_at is None:
        schedule_reminder(meeting)
