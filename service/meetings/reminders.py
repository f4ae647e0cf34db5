"""Meeting reminders: scheduled when an invitation starts sending, fired by RQ's scheduler.

The job itself (`workers.meetings.send_reminder`) is enqueued by dotted name,
MEETING_REMINDER_HOURS before the start; the reconciler puts back reminder
jobs a flushed Redis forgot.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import current_app
from rq.job import Job

from .. import jobs
from ..clock import utcnow
from ..models import Meeting


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


def enqueue_reminder(meeting_id: int, start: datetime, at: datetime) -> Job:
    return jobs.enqueue(
        "workers.meetings.send_reminder",
        meeting_id,
        int(start.replace(tzinfo=UTC).timestamp()),
        job_id=reminder_job_id(meeting_id, start),
        at=at,
    )
