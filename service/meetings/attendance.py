"""Who is coming to a meeting, whom they represent, and who came.

The programme's point is all parties at one table: the coordinator sees the
answers grouped by institution type, and which kinds of institution nobody
comes for. The group's confirmed members are the invited; a member who
answered and left since still shows with their answer. After the meeting
the coordinator ticks who actually came (the printed attendance sheet,
prezenční listina, is signed on paper).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import or_, select

from ..extensions import db
from ..institutions import institution_labels
from ..models import (
    INSTITUTION_TYPES,
    Meeting,
    MeetingResponse,
    PartStat,
    ResponseChannel,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)
from . import occurrences

# The API's names of the counts (DESIGN.md §5.5).
COUNT_KEYS = {
    PartStat.ACCEPTED: "accepted",
    PartStat.TENTATIVE: "tentative",
    PartStat.DECLINED: "declined",
    PartStat.NEEDS_ACTION: "needs_action",
}
UNSTATED = _l("neuvedeno")
# "jiné" is no kind of institution a group could miss.
EXPECTED_KINDS = tuple(key for key in INSTITUTION_TYPES if key != "jine")


class AttendanceRefused(Exception):
    """Attendance cannot be recorded now; the message is in the request's language (409)."""

    status = 409


@dataclass(frozen=True)
class Attendee:
    """One invited member with their answer (NEEDS-ACTION when none) and attendance."""

    subscriber_id: int
    name: str
    email: str
    organization: str
    institution: str  # INSTITUTION_TYPES key, or ""
    function: str
    partstat: str
    note: str
    attended: bool | None

    @property
    def institution_label(self) -> str:
        """The institution type in the current language ("neuvedeno" when not given)."""
        return institution_labels().get(self.institution) or str(UNSTATED)


def attendees(meeting: Meeting, occurrence: datetime | None = None) -> list[Attendee]:
    """The group's confirmed members and anyone who answered, by name.

    For one date of a series (`occurrence`, its RECURRENCE-ID) a member's answer
    to that date wins over their answer to the series, and only that date's
    ticks count as attendance.
    """
    own = _date_responses(meeting, occurrence) if occurrence is not None else {}
    rows = db.session.execute(
        select(Subscriber, Subscription, MeetingResponse)
        .join(
            Subscription,
            (Subscription.subscriber_id == Subscriber.id)
            & (Subscription.list_id == meeting.list_id),
        )
        .outerjoin(
            MeetingResponse,
            (MeetingResponse.subscriber_id == Subscriber.id)
            & (MeetingResponse.meeting_id == meeting.id)
            & MeetingResponse.occurrence.is_(None),
        )
        .where(
            or_(
                Subscription.status == SubscriptionStatus.CONFIRMED,
                MeetingResponse.id.is_not(None),
                Subscriber.id.in_(list(own)),
            )
        )
    ).all()
    found = []
    for subscriber, membership, series in rows:
        date = own.get(subscriber.id)
        response = date or series
        found.append(
            Attendee(
                subscriber_id=subscriber.id,
                name=subscriber.name,
                email=subscriber.email,
                organization=membership.organization,
                institution=membership.institution,
                function=membership.function,
                partstat=response.partstat if response else PartStat.NEEDS_ACTION,
                note=response.note if response else "",
                attended=(date.attended if date else None)
                if occurrence is not None
                else (series.attended if series else None),
            )
        )
    return sorted(found, key=lambda a: ((a.name or a.email).casefold(), a.subscriber_id))


def _date_responses(meeting: Meeting, occurrence: datetime) -> dict[int, MeetingResponse]:
    return {
        r.subscriber_id: r
        for r in db.session.scalars(
            select(MeetingResponse).filter_by(meeting_id=meeting.id, occurrence=occurrence)
        )
    }


def counts(meeting: Meeting, occurrence: datetime | None = None) -> dict[str, int]:
    """{"accepted", "tentative", "declined", "needs_action"} as the API shows them."""
    result = dict.fromkeys(COUNT_KEYS.values(), 0)
    for attendee in attendees(meeting, occurrence):
        result[COUNT_KEYS[PartStat(attendee.partstat)]] += 1
    return result


@dataclass(frozen=True)
class InstitutionGroup:
    label: str
    attendees: list[Attendee]

    def count(self, partstat: str) -> int:
        return sum(1 for a in self.attendees if a.partstat == partstat)


def by_institution(people: list[Attendee]) -> list[InstitutionGroup]:
    """The attendees grouped by institution type, in the programme's order of types."""
    order = {key: index for index, key in enumerate(INSTITUTION_TYPES)}
    labels = institution_labels()
    groups: dict[str, list[Attendee]] = {}
    for attendee in people:
        key = attendee.institution if attendee.institution in INSTITUTION_TYPES else ""
        groups.setdefault(key, []).append(attendee)
    return [
        InstitutionGroup(labels.get(key) or str(UNSTATED), groups[key])
        for key in sorted(groups, key=lambda k: order.get(k, len(order)))
    ]


def missing_kinds(people: list[Attendee]) -> tuple[list[str], list[str]]:
    """(kinds of institution with members but nobody coming, kinds with no member at all)."""
    present = {a.institution for a in people}
    coming = {a.institution for a in people if a.partstat == PartStat.ACCEPTED}
    labels = institution_labels()
    not_coming = [labels[k] for k in EXPECTED_KINDS if k in present - coming]
    absent = [labels[k] for k in EXPECTED_KINDS if k not in present]
    return not_coming, absent


def record_attendance(
    meeting: Meeting, present: set[int], occurrence: datetime | None = None
) -> int:
    """The coordinator's ticks after the meeting (for a series, after one of its dates):
    who came; returns how many came."""
    date = occurrences.find(meeting, occurrence) if occurrence is not None else None
    if meeting.rrule and date is None:
        raise AttendanceRefused(_("U pravidelného setkání vyberte termín, jehož účast zapisujete."))
    if not (date.started if date is not None else meeting.started):
        raise AttendanceRefused(_("Účast lze zaznamenat až od začátku setkání."))
    if meeting.cancelled_at is not None or (date is not None and date.cancelled):
        raise AttendanceRefused(_("Setkání bylo zrušeno; účast se nezaznamenává."))
    key = date.recurrence_id if date is not None else None
    responses = {
        r.subscriber_id: r
        for r in db.session.scalars(
            select(MeetingResponse).where(
                MeetingResponse.meeting_id == meeting.id,
                MeetingResponse.occurrence.is_(None)
                if key is None
                else MeetingResponse.occurrence == key,
            )
        )
    }
    came = 0
    for attendee in attendees(meeting, key):
        response = responses.get(attendee.subscriber_id)
        if response is None:
            # A date's own row keeps the answer that held for it (the series').
            response = MeetingResponse(
                meeting_id=meeting.id,
                subscriber_id=attendee.subscriber_id,
                occurrence=key,
                partstat=attendee.partstat,
                note=attendee.note,
                channel=ResponseChannel.COORDINATOR,
                sequence=date.sequence if date is not None else meeting.sequence,
            )
            db.session.add(response)
        response.attended = attendee.subscriber_id in present
        came += response.attended
    return came
