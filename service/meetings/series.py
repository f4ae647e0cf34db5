"""Changing one date of a recurring meeting, or ending the series early.

A series keeps its one UID. A single date moved (or its place changed) is
an exception: a VEVENT with that date's RECURRENCE-ID and its own, higher
SEQUENCE, sent as a draft update about that date alone; cancelling a date
sends METHOD:CANCEL with its RECURRENCE-ID at once (RFC 5546 §3.2.2.5,
§3.2.5), and the series' calendar lists it as EXDATE from then on.
Cancelling the rest of the series ends its rule (UNTIL before the date) with
a REQUEST under the series' next SEQUENCE. Answers to the series stay
current through all of this: only the date's own SEQUENCE rises.
"""

from __future__ import annotations

from datetime import datetime

from flask_babel import gettext as _

from ..clock import utcnow
from ..issues.sending import send_now
from ..models import Issue, Meeting, User
from . import occurrences, recurrence, wording
from .occurrences import Occurrence
from .rules import MeetingError, MeetingInput, announcement


def date_of(meeting: Meeting, recurrence_id: datetime | None) -> Occurrence:
    """The series' date named `recurrence_id`, or a MeetingError (409)."""
    if not meeting.rrule:
        raise MeetingError(_("Setkání se neopakuje; změňte ho celé."))
    if meeting.cancelled_at is not None:
        raise MeetingError(_("Setkání je zrušené; změnit ho už nelze."))
    date = occurrences.find(meeting, recurrence_id) if recurrence_id is not None else None
    if date is None:
        raise MeetingError(_("Takový termín setkání v řadě není."))
    if date.cancelled:
        raise MeetingError(_("Tento termín už je zrušený."))
    if date.started:
        raise MeetingError(_("Tento termín už začal nebo proběhl; změnit ho nelze."))
    return date


def update_occurrence(
    meeting: Meeting, recurrence_id: datetime | None, fields: MeetingInput, author: User | None
) -> Issue:
    """Move one date (or change its place): a draft update about that date alone."""
    date = date_of(meeting, recurrence_id)
    if fields.rrule:
        raise MeetingError(_("Jednomu termínu nelze nastavit opakování; změňte celou řadu."))
    row = occurrences.row_for(meeting, date.recurrence_id)
    row.start, row.end = fields.start, fields.end
    row.location, row.online_url, row.agenda = fields.location, fields.online_url, fields.agenda
    row.sequence = max(row.sequence, meeting.sequence) + 1
    row.changed_at = utcnow()
    subject, body = wording.date_update_text(meeting, date, row)
    issue = announcement(meeting, subject, body, "REQUEST", author)
    issue.meeting_occurrence = date.recurrence_id
    return issue


def cancel_occurrence(
    meeting: Meeting, recurrence_id: datetime | None, author: User | None
) -> Issue:
    """Cancel one date: METHOD:CANCEL with its RECURRENCE-ID goes to the group at once."""
    date = date_of(meeting, recurrence_id)
    row = occurrences.row_for(meeting, date.recurrence_id)
    if row.changed_at is None:  # the row may be older than the series' last change
        row.start, row.end = date.start, date.end
        row.location, row.online_url, row.agenda = date.location, date.online_url, date.agenda
    row.cancelled_at = utcnow()
    row.sequence = max(row.sequence, meeting.sequence) + 1
    subject, body = wording.date_cancel_text(meeting, date)
    issue = announcement(meeting, subject, body, "CANCEL", author)
    issue.meeting_occurrence = date.recurrence_id
    send_now(issue)
    return issue


def cancel_rest(meeting: Meeting, recurrence_id: datetime | None, author: User | None) -> Issue:
    """End the series before the date `recurrence_id`: its rule gets UNTIL, SEQUENCE + 1,
    and the shortened series goes to the group at once."""
    date = date_of(meeting, recurrence_id)
    if date.recurrence_id <= meeting.start:
        raise MeetingError(_("Od prvního termínu zrušte raději celé setkání."))
    meeting.rrule = recurrence.until_before(meeting.rrule, date.recurrence_id)
    meeting.sequence += 1
    subject, body = wording.rest_cancel_text(meeting, date)
    issue = announcement(meeting, subject, body, "REQUEST", author)
    send_now(issue)
    return issue
