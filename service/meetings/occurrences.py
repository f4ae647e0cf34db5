"""The dates of a recurring meeting as they hold now: the rule's dates, with those moved
or cancelled alone (MeetingOccurrence rows) applied.

A date is named for good by its RECURRENCE-ID, the start the rule gives it
(naive UTC), even after it moved. A meeting without a rule has one date, its
own start, and no rows here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from ..clock import local_zone, utcnow
from ..extensions import db
from ..models import Meeting, MeetingOccurrence
from . import recurrence

# How many dates of a series the pages list around now.
LISTED_BEFORE = 6
LISTED_AFTER = 6


@dataclass(frozen=True)
class Occurrence:
    """One date of a series (or a single meeting's only date)."""

    meeting_id: int
    recurrence_id: datetime  # naive UTC; for a single meeting its start
    start: datetime
    end: datetime
    location: str
    online_url: str
    agenda: str
    sequence: int
    changed: bool
    cancelled: bool

    @property
    def started(self) -> bool:
        return self.start <= utcnow()

    @property
    def key(self) -> str:
        """The date in links and forms: its RECURRENCE-ID as a Unix time."""
        return str(timestamp(self.recurrence_id))


def timestamp(moment: datetime) -> int:
    """A naive UTC moment as whole seconds since 1970 (links, job ids)."""
    return int((moment - datetime(1970, 1, 1)).total_seconds())


def from_timestamp(value: str | int | None) -> datetime | None:
    """The naive UTC moment of a link's or form's date key, or None for junk."""
    text = str(value or "").strip()
    if not text.isdigit() or len(text) > 11:
        return None
    return datetime(1970, 1, 1) + timedelta(seconds=int(text))


def rows(meeting: Meeting) -> dict[datetime, MeetingOccurrence]:
    """The meeting's dates kept apart (moved, cancelled or reminded), by RECURRENCE-ID."""
    return {
        row.recurrence_id: row
        for row in db.session.scalars(select(MeetingOccurrence).filter_by(meeting_id=meeting.id))
    }


def _from_rule(meeting: Meeting, start: datetime, end: datetime) -> Occurrence:
    return Occurrence(
        meeting.id, start, start, end, meeting.location, meeting.online_url, meeting.agenda,
        meeting.sequence, False, meeting.cancelled_at is not None,
    )  # fmt: skip


def _from_row(meeting: Meeting, row: MeetingOccurrence) -> Occurrence:
    return Occurrence(
        meeting.id, row.recurrence_id, row.start, row.end, row.location, row.online_url,
        row.agenda, max(row.sequence, meeting.sequence), row.changed_at is not None,
        row.cancelled_at is not None or meeting.cancelled_at is not None,
    )  # fmt: skip


def _of(meeting: Meeting, start: datetime, end: datetime, kept: dict) -> Occurrence:
    row = kept.get(start)
    if row is not None and row.is_exception:
        return _from_row(meeting, row)
    return _from_rule(meeting, start, end)


def find(meeting: Meeting, recurrence_id: datetime) -> Occurrence | None:
    """The date of `meeting` named `recurrence_id`, or None when the series has no such date."""
    kept = rows(meeting)
    if recurrence_id in kept:
        return _of(meeting, recurrence_id, recurrence_id + (meeting.end - meeting.start), kept)
    if not meeting.rrule:
        return _from_rule(meeting, meeting.start, meeting.end) if (
            recurrence_id == meeting.start
        ) else None  # fmt: skip
    if not recurrence.is_rule_date(meeting.rrule, meeting.start, local_zone().key, recurrence_id):
        return None
    return _from_rule(meeting, recurrence_id, recurrence_id + (meeting.end - meeting.start))


def upcoming(
    meeting: Meeting, *, after: datetime, count: int, with_cancelled: bool = False
) -> list[Occurrence]:
    """The next `count` dates starting after `after`, by their current start.

    A date moved from before `after` to after it counts; one moved the other way
    does not. Cancelled dates only `with_cancelled`.
    """
    if not meeting.rrule:
        single = _from_rule(meeting, meeting.start, meeting.end)
        return [single] if single.start > after and (with_cancelled or not single.cancelled) else []
    kept = rows(meeting)
    exceptions = [row for row in kept.values() if row.is_exception]
    by_rule = recurrence.occurrences(
        meeting.rrule, meeting.start, meeting.end, local_zone().key,
        after=after - timedelta(seconds=1), count=count + len(exceptions),
    )  # fmt: skip
    found = {start: _of(meeting, start, end, kept) for start, end in by_rule}
    for row in exceptions:  # moved here from before `after`
        if row.recurrence_id not in found and row.start > after:
            found[row.recurrence_id] = _from_row(meeting, row)
    dates = sorted(found.values(), key=lambda o: (o.start, o.recurrence_id))
    return [o for o in dates if o.start > after and (with_cancelled or not o.cancelled)][:count]


def listed(meeting: Meeting) -> list[Occurrence]:
    """The dates the coordinator's pages list: the last few held and the next few."""
    first = meeting.start - timedelta(seconds=1)
    now = utcnow()
    dates: list[Occurrence] = []
    after = first
    while True:  # the series from its start, a page at a time, up to the next few
        page = upcoming(meeting, after=after, count=50, with_cancelled=True)
        dates += page
        if len(page) < 50 or sum(1 for o in dates if o.start > now) >= LISTED_AFTER:
            break
        after = page[-1].start
    dates = sorted({o.recurrence_id: o for o in dates}.values(), key=lambda o: o.start)
    past = [o for o in dates if o.start <= now][-LISTED_BEFORE:]
    return past + [o for o in dates if o.start > now][:LISTED_AFTER]


def row_for(meeting: Meeting, recurrence_id: datetime) -> MeetingOccurrence:
    """The date's row, made from the series' details when it has none yet."""
    found = db.session.scalar(
        select(MeetingOccurrence).filter_by(meeting_id=meeting.id, recurrence_id=recurrence_id)
    )
    if found is None:
        found = MeetingOccurrence(
            meeting_id=meeting.id,
            recurrence_id=recurrence_id,
            start=recurrence_id,
            end=recurrence_id + (meeting.end - meeting.start),
            location=meeting.location,
            online_url=meeting.online_url,
            agenda=meeting.agenda,
            sequence=meeting.sequence,
        )
        db.session.add(found)
        db.session.flush()
    return found
