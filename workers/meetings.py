"""Meeting reminders: fired by RQ's scheduler MEETING_REMINDER_HOURS before a meeting.

`send_reminder` is safe to run twice and after anything changed: it sends
nothing when the meeting was cancelled, moved (the job was for another
start), already reminded, or has begun. A series is reminded date by date
(the date's MeetingOccurrence row holds the claim), each reminder scheduling
the next date's. The reconciler puts back reminder
jobs a flushed Redis forgot (`reconcile_reminders`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from rq.job import Job
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from service.clock import utcnow
from service.extensions import db
from service.issues import sending
from service.jobs import LIVE_JOB_STATES, redis_connection
from service.meetings import occurrences
from service.meetings.occurrences import from_timestamp
from service.meetings.reminders import (
    before,
    enqueue_reminder,
    next_to_remind,
    reminder_job_id,
    reminder_time,
    schedule_reminder,
)
from service.meetings.wording import reminder_text
from service.models import (
    Issue,
    IssueStatus,
    Meeting,
    MeetingMethod,
    MeetingOccurrence,
    rows_matched,
)

log = logging.getLogger(__name__)


def send_reminder(
    meeting_id: int, start_timestamp: int, recurrence_timestamp: int | None = None
) -> str:
    """Send the reminder of a meeting (or of one date of a series, named by its
    RECURRENCE-ID) starting at `start_timestamp`, once."""
    start = datetime.fromtimestamp(start_timestamp, UTC).replace(tzinfo=None)
    if recurrence_timestamp is not None:
        return _send_date_reminder(meeting_id, start, from_timestamp(recurrence_timestamp))
    now = utcnow()
    # The conditional UPDATE is the claim: of two twin jobs only one sets it.
    claimed = rows_matched(
        update(Meeting)
        .where(
            Meeting.id == meeting_id,
            Meeting.start == start,
            Meeting.start > now,
            Meeting.cancelled_at.is_(None),
            Meeting.reminder_sent_at.is_(None),
        )
        .values(reminder_sent_at=now)
    )
    if not claimed:
        db.session.rollback()
        return "skipped"
    meeting = db.session.get_one(Meeting, meeting_id)  # the claim above found it
    _send(meeting, None)
    return "sent"


def _send_date_reminder(meeting_id: int, start: datetime, recurrence_id: datetime | None) -> str:
    """One date of a series: claimed on its MeetingOccurrence row, then the next scheduled."""
    meeting = db.session.get(Meeting, meeting_id)
    date = occurrences.find(meeting, recurrence_id) if meeting and recurrence_id else None
    if meeting is None or date is None or date.cancelled or date.start != start or date.started:
        db.session.rollback()
        return "skipped"
    try:
        with db.session.begin_nested():
            row = occurrences.row_for(meeting, date.recurrence_id)
    except IntegrityError:  # a twin job made the row this moment: it claims the date
        db.session.rollback()
        return "skipped"
    claimed = rows_matched(
        update(MeetingOccurrence)
        .where(
            MeetingOccurrence.id == row.id,
            MeetingOccurrence.reminder_sent_at.is_(None),
            MeetingOccurrence.cancelled_at.is_(None),
        )
        .values(reminder_sent_at=utcnow())
    )
    if not claimed:
        db.session.rollback()
        return "skipped"
    _send(meeting, date.recurrence_id)
    return "sent"


def _send(meeting: Meeting, recurrence_id: datetime | None) -> None:
    """The reminder issue "Připomínka: …" to the group, at once; a series' next date's
    reminder scheduled after it."""
    subject, body = reminder_text(meeting)
    issue = sending.create_issue(
        meeting.mailing_list, sending.IssueInput(subject[: sending.SUBJECT_MAX], body), None
    )
    issue.meeting, issue.meeting_method = meeting, MeetingMethod.REQUEST
    issue.meeting_occurrence = recurrence_id
    db.session.flush()
    sending.send_now(issue)
    if meeting.rrule:
        schedule_reminder(meeting)
    db.session.commit()
    log.info("meeting %s: reminder issue %s sent", meeting.id, issue.id)


def reconcile_reminders() -> int:
    """Re-schedule reminders of announced meetings whose job Redis no longer has: a
    single meeting's, or a series' next date's."""
    now = utcnow()
    announced = (
        select(Issue.meeting_id, func.min(Issue.started_at).label("started_at"))
        .where(
            Issue.meeting_method == MeetingMethod.REQUEST,
            Issue.status.in_((IssueStatus.SENDING, IssueStatus.PAUSED, IssueStatus.SENT)),
            Issue.meeting_id.is_not(None),
        )
        .group_by(Issue.meeting_id)
        .subquery()
    )
    rows = db.session.execute(
        select(Meeting, announced.c.started_at)
        .join(announced, announced.c.meeting_id == Meeting.id)
        .where(Meeting.cancelled_at.is_(None), (Meeting.start > now) | (Meeting.rrule != ""))
    ).all()
    due: list[tuple[int, datetime, datetime, datetime | None]] = []
    for meeting, started_at in rows:
        if meeting.rrule:
            date = next_to_remind(meeting)
            if date is not None:
                due.append((meeting.id, date.start, before(date.start), date.recurrence_id))
        # Only reminders that were ahead when an invitation went out were ever promised.
        elif meeting.reminder_sent_at is None and (
            started_at is not None and reminder_time(meeting) > started_at
        ):
            due.append((meeting.id, meeting.start, reminder_time(meeting), None))
    db.session.commit()
    if not due:
        return 0
    ids = [reminder_job_id(meeting_id, start, rid) for meeting_id, start, _, rid in due]
    found = Job.fetch_many(ids, connection=redis_connection())
    count = 0
    for (meeting_id, start, at, rid), job in zip(due, found, strict=True):
        if job is None or job.get_status(refresh=False) not in LIVE_JOB_STATES:
            enqueue_reminder(meeting_id, start, at, rid)
            count += 1
    if count:
        log.info("reconciler re-scheduled %d meeting reminder(s)", count)
    return count
