"""Changing one date of a recurring meeting, or ending the series early.

A series keeps its one UID. A single date moved (or its place changed) is
an exception: a VEVENT with that date's RECURRENCE-ID and its own, higher
SEQUENCE, sent as a draft update about that date alone; cancelling a date
sends METHOD:CANCEL with its RECURRENCE-ID at once (RFC 5546 §3.2.2.5,
§3.2.5), and the series' calendar lists it as EXDATE from then on.
Cancelling the rest of the series ends its rule (UNTIL before the date) with
a REQUEST under the series' next SEQUENCE. Answers to the series stay
current through all of this: only the date's own SEQUENCE rises.

Moving a date and all after it splits the series, as calendar apps do
("this and following events"): the series ends before the date as above,
and a new series with its own UID starts at the date's new time with the
same rhythm. The new series is what members answer from then on, so their
answers come along (see `_carry_over`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from flask_babel import gettext as _
from sqlalchemy import or_, select

from ..clock import SkippedLocalTime, from_local, local_zone, utcnow
from ..extensions import db
from ..issues.sending import send_now
from ..models import Issue, Meeting, MeetingOccurrence, MeetingResponse, User
from . import occurrences, recurrence, wording
from .calendar import format_meeting_time, meeting_title
from .occurrences import Occurrence
from .recurrence import check_rule
from .rules import MeetingError, MeetingInput, announcement, new_uid


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
    _end_before(meeting, date.recurrence_id)
    subject, body = wording.rest_cancel_text(meeting, date)
    issue = announcement(meeting, subject, body, "REQUEST", author)
    send_now(issue)
    return issue


def _end_before(meeting: Meeting, moment: datetime) -> list[MeetingOccurrence]:
    """The series ends before `moment`: UNTIL, SEQUENCE + 1, and its dates kept apart from
    `moment` on are gone (a date moved alone would otherwise outlive the rule's end in
    the calendar, on the pages and in the reminders). Returns those rows, deleted."""
    meeting.rrule = recurrence.until_before(meeting.rrule, moment)
    meeting.sequence += 1
    later = [row for row in occurrences.rows(meeting).values() if row.recurrence_id >= moment]
    for row in later:
        db.session.delete(row)
    db.session.flush()
    return later


@dataclass(frozen=True)
class Split:
    """The two mails of a series moved from one date on: the end of the series so far
    (REQUEST, SEQUENCE + 1) and the invitation to the new series (its own UID)."""

    ended: Issue
    invitation: Issue


def move_following(
    meeting: Meeting, recurrence_id: datetime | None, fields: MeetingInput, author: User | None
) -> Split:
    """Move the date `recurrence_id` and all after it to `fields` (the date's new start, end
    and place; `rrule` empty for the same rhythm): the series ends before the date and
    a new one continues; both mails go to the group at once."""
    date = date_of(meeting, recurrence_id)
    if date.recurrence_id <= meeting.start:
        raise MeetingError(_("Od prvního termínu změňte raději celou řadu."))
    rule = _following_rule(meeting, date, fields)
    follower = Meeting(
        list_id=meeting.list_id, uid=new_uid(), sequence=0, title=meeting_title(meeting),
        start=fields.start, end=fields.end, location=fields.location,
        online_url=fields.online_url, agenda=fields.agenda, rrule=rule, follows_id=meeting.id,
    )  # fmt: skip
    db.session.add(follower)
    db.session.flush()
    later = _end_before(meeting, date.recurrence_id)
    _carry_over(meeting, follower, date.recurrence_id, later)
    (ended_subject, ended_body), (subject, body) = wording.split_texts(meeting, date, follower)
    ended = announcement(meeting, ended_subject, ended_body, "REQUEST", author)
    invitation = announcement(follower, subject, body, "REQUEST", author)
    send_now(ended)
    send_now(invitation)
    return Split(ended, invitation)


def _following_rule(meeting: Meeting, date: Occurrence, fields: MeetingInput) -> str:
    """The new series' rule: the one given, else the series' rhythm from the new start."""
    zone = local_zone().key
    before = recurrence.previous(meeting.rrule, meeting.start, zone, date.recurrence_id)
    if before is not None and fields.start <= before:
        raise MeetingError(
            _(
                "Nové termíny musí začínat až po předchozím termínu řady (%(day)s).",
                day=format_meeting_time(before, before + (meeting.end - meeting.start)),
            )
        )
    rule = fields.rrule or recurrence.continued(
        meeting.rrule, meeting.start, zone, date.recurrence_id, fields.start
    )
    problem = check_rule(rule, fields.start.replace(tzinfo=UTC).astimezone(local_zone()))
    if problem is None and not recurrence.is_rule_date(rule, fields.start, zone, fields.start):
        problem = _(
            "Nový začátek neodpovídá pravidlu opakování %(rule)s; uveďte pravidlo "
            "pro nové termíny (rrule).",
            rule=rule,
        )
    if problem:
        raise MeetingError(problem)
    return rule


def _same_day(follower: Meeting, recurrence_id: datetime) -> datetime | None:
    """The new series' date on the local day the old series had the date `recurrence_id`,
    or None when it does not meet that day."""
    zone = local_zone()
    day = recurrence_id.replace(tzinfo=UTC).astimezone(zone).date()
    clock = follower.start.replace(tzinfo=UTC).astimezone(zone).time()
    try:
        moment = from_local(datetime.combine(day, clock))
    except SkippedLocalTime:
        return None
    found = moment.astimezone(UTC).replace(tzinfo=None)
    return (
        found if recurrence.is_rule_date(follower.rrule, follower.start, zone.key, found) else None
    )


def _carry_over(
    meeting: Meeting, follower: Meeting, split: datetime, later: list[MeetingOccurrence]
) -> None:
    """What holds for the dates from `split` on moves to the new series.

    Answers to the series answered the group's regular meetings and stay the
    member's answer: the mail says the time changed and asks them to change it
    if it no longer suits (as a whole-series change keeps them too). An answer
    to one date, a date cancelled alone and a date moved alone carry over when
    the new series still meets that day (e.g. the same Tuesday an hour later);
    a date moved alone keeps its own time, one only given another place takes
    the new time. Where the new series no longer meets that day, they lapse.
    The date `split` itself is what the fields typed for the new series say: its
    own earlier change is not kept.
    """
    duration = follower.end - follower.start
    for row in later:
        if row.recurrence_id == split:
            continue
        moment = _same_day(follower, row.recurrence_id) if row.is_exception else None
        if moment is None:
            continue
        moved = row.start != row.recurrence_id
        db.session.add(
            MeetingOccurrence(
                meeting_id=follower.id, recurrence_id=moment,
                start=row.start if moved else moment, end=row.end if moved else moment + duration,
                location=row.location, online_url=row.online_url, agenda=row.agenda,
                sequence=follower.sequence, changed_at=row.changed_at,
                cancelled_at=row.cancelled_at,
            )
        )  # fmt: skip
    _carry_over_answers(meeting, follower, split)
    db.session.flush()


def _carry_over_answers(meeting: Meeting, follower: Meeting, split: datetime) -> None:
    """The members' answers to the series, and to its dates from `split` on that the new
    series has on the same day, become their answers to the new series."""
    answers = db.session.scalars(
        select(MeetingResponse).where(
            MeetingResponse.meeting_id == meeting.id,
            or_(MeetingResponse.occurrence.is_(None), MeetingResponse.occurrence >= split),
        )
    ).all()
    for answer in answers:
        occurrence = None
        if answer.occurrence is not None:
            occurrence = _same_day(follower, answer.occurrence)
            if occurrence is None:
                continue
        db.session.add(
            MeetingResponse(
                meeting_id=follower.id, subscriber_id=answer.subscriber_id,
                occurrence=occurrence, partstat=answer.partstat, note=answer.note,
                channel=answer.channel, sequence=follower.sequence,
                responded_at=answer.responded_at,
            )
        )  # fmt: skip


@dataclass(frozen=True)
class Neighbour:
    """The series a split one continues, or the one that continues it, as the admin links it."""

    meeting: Meeting
    rhythm: str  # "každý druhý čtvrtek v měsíci v 10:00", "…, naposledy 12. ledna 2027"
    invitation_id: int | None  # its first invitation: its page in the admin


def neighbours(meeting: Meeting) -> dict[str, Neighbour]:
    """{"previous": …, "next": …}: the series `meeting` continues and the one continuing it,
    where the series was split ("move this and all later dates")."""
    found = {}
    for kind, other in (("previous", meeting.previous_series()), ("next", meeting.next_series())):
        if other is None:
            continue
        invitation_id = db.session.scalar(
            select(Issue.id)
            .where(Issue.meeting_id == other.id, Issue.meeting_occurrence.is_(None))
            .order_by(Issue.id)
            .limit(1)
        )
        rhythm = recurrence.describe(other.rrule, other.start, local_zone().key)
        found[kind] = Neighbour(other, rhythm, invitation_id)
    return found
