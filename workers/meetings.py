"""Meeting reminders: fired by RQ's scheduler MEETING_REMINDER_HOURS before a meeting.

`send_reminder` is safe to run twice and after anything changed: it sends
nothing when the meeting was cancelled, moved (the job was for another
start), already reminded, or has begun. The reconciler puts back reminder
jobs a flushed Redis forgot (`reconcile_reminders`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from rq.job import Job
from sqlalchemy import select, update

from service.clock import utcnow
from service.extensions import db
from service.issues import sending
from service.jobs import LIVE_JOB_STATES, redis_connection
from service.meetings.reminders import enqueue_reminder, reminder_job_id, reminder_time
from service.meetings.wording import reminder_text
from service.models import Issue, IssueStatus, Meeting, MeetingMethod, rows_matched

log = logging.getLogger(__name__)


def send_reminder(meeting_id: int, start_timestamp: int) -> str:
    """Send the reminder of a meeting starting at `start_timestamp`, once."""
    start = datetime.fromtimestamp(start_timestamp, UTC).replace(tzinfo=None)
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
    subject, body = reminder_text(meeting)
    issue = sending.create_issue(
        meeting.mailing_list, sending.IssueInput(subject[: sending.SUBJECT_MAX], body), None
    )
    issue.meeting, issue.meeting_method = meeting, MeetingMethod.REQUEST
    db.session.flush()
    sending.send_now(issue)
    db.session.commit()
    log.info("meeting %s: reminder issue %s sent", meeting_id, issue.id)
    return "sent"


def reconcile_reminders() -> int:
    """Re-schedule reminders of announced meetings whose job Redis no longer has."""
    now = utcnow()
    announced = (
        select(Issue.meeting_id, Issue.started_at)
        .where(
            Issue.meeting_method == MeetingMethod.REQUEST,
            Issue.status.in_((IssueStatus.SENDING, IssueStatus.PAUSED, IssueStatus.SENT)),
            Issue.meeting_id.is_not(None),
        )
        .subquery()
    )
    rows = db.session.execute(
        select(Meeting, announced.c.started_at)
        .join(announced, announced.c.meeting_id == Meeting.id)
        .where(
            Meeting.cancelled_at.is_(None),
            Meeting.reminder_sent_at.is_(None),
            Meeting.start > now,
        )
    ).all()
    due: dict[int, Meeting] = {}
    for meeting, started_at in rows:
        # Only reminders that were ahead when an invitation went out were ever promised.
        if started_at is not None and reminder_time(meeting) > started_at:
            due[meeting.id] = meeting
    db.session.commit()
    if not due:
        return 0
    ids = [reminder_job_id(m.id, m.start) for m in due.values()]
    found = Job.fetch_many(ids, connection=redis_connection())
    count = 0
    for meeting, job in zip(due.values(), found, strict=True):
        if job is None or job.get_status(refresh=False) not in LIVE_JOB_STATES:
            enqueue_reminder(meeting.id, meeting.start, reminder_time(meeting))
            count += 1
    if count:
        log.info("reconciler re-scheduled %d meeting reminder(s)", count)
    return count
