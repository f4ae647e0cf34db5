"""Meeting reminders: scheduled when an invitation starts sending, fired by RQ's scheduler.

The job itself (`workers.meetings.send_reminder`) is enqueued by dotted name,
MEETING_REMINDER_HOURS before the start; the reconciler puts back reminder
jobs a flushed Redis forgot. A series is reminded date by date: each
reminder, once sent, schedules the next date's (`schedule_reminder`), and
a date moved alone gets its own job when its update goes out.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from flask import current_app
from sqlalchemy import select

from .. import jobs
from ..clock import utcnow
from ..extensions import db
from ..models import Meeting, MeetingOccurrence
from . import occurrences
from .occurrences import Occurrence

if TYPE_CHECKING:  # RQ is imported where jobs are queued (jobs.py says why)
    from rq.job import Job

# How many dates ahead a series is searched for the next one to remind.
LOOKAHEAD = 12


def reminder_time(meeting: Meeting) -> datetime:
    """Naive UTC: MEETING_REMINDER_HOURS before the start."""
    return before(meeting.start)


def before(start: datetime) -> datetime:
    return start - timedelta(hours=current_app.config["MEETING_REMINDER_HOURS"])


def reminder_job_id(meeting_id: int, start: datetime, recurrence_id: datetime | None = None) -> str:
    # The start is part of the id: a moved meeting gets a new job, and the old
    # one finds the start changed and does nothing. A series' date adds its
    # RECURRENCE-ID, which never changes.
    stamp = int(start.replace(tzinfo=UTC).timestamp())
    if recurrence_id is None:
        return f"meeting-{meeting_id}-reminder-{stamp}"
    return f"meeting-{meeting_id}-{occurrences.timestamp(recurrence_id)}-reminder-{stamp}"


def schedule_reminder(meeting: Meeting) -> bool:
    """After commit, have RQ's scheduler fire the reminder (if its time is still ahead):
    a single meeting's, or the next date's of a series that is not reminded yet."""
    if meeting.rrule:
        date = next_to_remind(meeting)
        return date is not None and schedule_date_reminder(meeting, date)
    at = reminder_time(meeting)
    if at <= utcnow():
        return False
    jobs.after_commit(enqueue_reminder, meeting.id, meeting.start, at)
    return True


def schedule_date_reminder(meeting: Meeting, date: Occurrence) -> bool:
    """After commit, the reminder of one date of a series (if its time is still ahead)."""
    at = before(date.start)
    if at <= utcnow() or date.cancelled or reminded(meeting, date.recurrence_id):
        return False
    jobs.after_commit(enqueue_reminder, meeting.id, date.start, at, date.recurrence_id)
    return True


def reminded(meeting: Meeting, recurrence_id: datetime) -> bool:
    return (
        db.session.scalar(
            select(MeetingOccurrence.id).where(
                MeetingOccurrence.meeting_id == meeting.id,
                MeetingOccurrence.recurrence_id == recurrence_id,
                MeetingOccurrence.reminder_sent_at.is_not(None),
            )
        )
        is not None
    )


def next_to_remind(meeting: Meeting) -> Occurrence | None:
    """The series' next date whose reminder is still ahead and not sent."""
    now = utcnow()
    for date in occurrences.upcoming(meeting, after=now, count=LOOKAHEAD):
        if before(date.start) > now and not reminded(meeting, date.recurrence_id):
            return date
    return None


def enqueue_reminder(
    meeting_id: int, start: datetime, at: datetime, recurrence_id: datetime | None = None
) -> Job:
    arguments: tuple[int, ...] = (meeting_id, int(start.replace(tzinfo=UTC).timestamp()))
    if recurrence_id is not None:
        arguments += (occurrences.timestamp(recurrence_id),)
    return jobs.enqueue(
        "workers.meetings.send_reminder",
        *arguments,
        job_id=reminder_job_id(meeting_id, start, recurrence_id),
        at=at,
    )
