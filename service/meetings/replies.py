"""Calendar apps' answers to invitations: iTIP REPLY and COUNTER (RFC 5546) mailed to us.

Outlook, Gmail, Thunderbird and Apple Calendar answer an invitation by
mailing a `METHOD:REPLY` calendar to its ORGANIZER, which is the member's
signed `rsvp+…@<bounce domain>` address (rsvp.py). The message reaches us
through the SMTP receiver (`zpravodaj bounces serve`, bounces/receiver.py) or
an MTA pipe (`zpravodaj replies process`). A REPLY is recorded for the member
the address was signed for when its UID is the meeting's and its SEQUENCE is
not older than the meeting's; a COUNTER (a proposal of another time) is
answered with a polite note to the group's coordinators instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from typing import TYPE_CHECKING

from flask_babel import gettext as _
from sqlalchemy import select

from ..clock import local_zone
from ..extensions import db
from ..groups.dates import format_meeting_time
from ..groups.joining import admin_group_url, coordinators_of
from ..i18n import in_language
from ..institutions import institution_labels
from ..mail import compose, queue_message, render_pair
from ..models import Meeting, PartStat, Subscriber, Subscription
from .calendar import meeting_title
from .rsvp import answer_from_calendar, is_rsvp_address, parse_rsvp_address

if TYPE_CHECKING:  # imported on use, as in calendar.py
    import icalendar

log = logging.getLogger(__name__)

MAX_REPLY_BYTES = 2 * 1024 * 1024
CALENDAR_TYPES = ("text/calendar", "application/ics")
ANSWERS = {PartStat.ACCEPTED, PartStat.TENTATIVE, PartStat.DECLINED}
COUNTER_NOTICE = "meeting_counter_notice"


class NotAReply(ValueError):
    """The message carries no calendar answer at all; the message says why (Czech)."""


@dataclass(frozen=True)
class ReplyOutcome:
    """What became of one message: recorded, stale, closed, counter, unknown or ignored."""

    status: str
    partstat: str = ""
    meeting_id: int | None = None


def process_reply(
    raw: bytes,
    envelope_recipients: list[str] | tuple[str, ...] = (),
    *,
    before_commit: Callable[[], None] | None = None,
) -> ReplyOutcome:
    """Parse and record one calendar answer, committing; raises NotAReply for other mail.

    `before_commit` runs in the same transaction whatever the outcome (the
    mailbox poller notes the message there, so recording it and marking it
    done are one).
    """
    message = message_from_bytes(raw, policy=policy.default)
    calendar = _calendar_of(message)
    try:
        outcome = _answer(calendar, message, envelope_recipients)
        if before_commit is not None:
            before_commit()
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    log.info("calendar reply for meeting %s: %s", outcome.meeting_id, outcome.status)
    return outcome


def addressed_to_us(raw: bytes) -> bool:
    """Whether a message's headers (Delivered-To, X-Original-To, To, Cc) name a meeting's
    reply address: how the mailbox poller, which has no envelope, tells a calendar answer."""
    headers = BytesHeaderParser(policy=policy.default).parsebytes(raw[:65536])
    return any(is_rsvp_address(address) for address in _addresses(headers, ()))


def _answer(
    calendar: icalendar.Calendar,
    message: EmailMessage,
    envelope_recipients: Iterable[str],
) -> ReplyOutcome:
    method = str(calendar.get("METHOD", "")).upper()
    if method not in ("REPLY", "COUNTER"):
        return ReplyOutcome("ignored")
    signed = None
    for address in _addresses(message, envelope_recipients):
        signed = parse_rsvp_address(address)
        if signed is not None:
            break
    if signed is None:
        log.info("calendar %s to no signed rsvp address; ignored", method)
        return ReplyOutcome("unknown")
    meeting, subscriber = signed.meeting, signed.subscriber
    events = [e for e in calendar.walk("VEVENT") if str(e.get("UID", "")) == meeting.uid]
    if not events:
        return ReplyOutcome("unknown", meeting_id=meeting.id)
    if method == "COUNTER":
        _notify_counter(meeting, subscriber, events[0])
        return ReplyOutcome("counter", meeting_id=meeting.id)
    return _record(meeting, subscriber, events[0])


def _record(meeting: Meeting, subscriber: Subscriber, event: icalendar.Component) -> ReplyOutcome:
    partstat = _partstat(event, subscriber)
    if partstat not in ANSWERS:
        return ReplyOutcome("ignored", meeting_id=meeting.id)
    try:
        sequence = int(event.get("SEQUENCE", 0))
    except (TypeError, ValueError):
        sequence = 0
    status = answer_from_calendar(
        meeting, subscriber, PartStat(partstat), sequence, _recurrence_id(event)
    )
    return ReplyOutcome(status, partstat, meeting.id)


def _recurrence_id(event: icalendar.Component) -> datetime | None:
    """A REPLY about one date of a series names it by RECURRENCE-ID: as naive UTC."""
    if "RECURRENCE-ID" not in event:
        return None
    try:
        value = event.decoded("RECURRENCE-ID")
    except (KeyError, ValueError, TypeError):
        return None
    if not isinstance(value, datetime):
        return None  # a whole-day date: not how our invitations name a date
    if value.tzinfo is None:  # floating time: the service's wall clock
        value = value.replace(tzinfo=local_zone())
    return value.astimezone(UTC).replace(tzinfo=None)


def _partstat(event: icalendar.Component, subscriber: Subscriber) -> str:
    """The PARTSTAT of the replying ATTENDEE: the member's address, else the only one."""
    attendees = event.get("ATTENDEE", [])
    if not isinstance(attendees, list):
        attendees = [attendees]
    mine = {subscriber.email.casefold(), (subscriber.ascii_email or "").casefold()}
    chosen = [a for a in attendees if _mailto(a) in mine] or attendees[:1]
    if not chosen:
        return ""
    return str(chosen[0].params.get("PARTSTAT", "")).upper()


def _mailto(address: object) -> str:
    value = str(address)
    return value[7:].casefold() if value.lower().startswith("mailto:") else value.casefold()


def _calendar_of(message: EmailMessage) -> icalendar.Calendar:
    import icalendar  # on use: see calendar.py

    for part in message.walk():
        if part.get_content_type() not in CALENDAR_TYPES:
            continue
        try:
            payload = part.get_payload(decode=True)
            if not isinstance(payload, bytes):
                payload = b""
            return icalendar.Calendar.from_ical(payload)
        except (ValueError, IndexError, KeyError) as exc:
            raise NotAReply(f"kalendář ve zprávě nelze přečíst: {exc}") from exc
    raise NotAReply("zpráva neobsahuje kalendář (text/calendar)")


def _addresses(message: Message, envelope_recipients: Iterable[str]) -> list[str]:
    """The envelope's recipients first (what the MTA delivered to), then the headers'."""
    found = list(envelope_recipients)
    for header in ("Delivered-To", "X-Original-To", "To", "Cc"):
        found.extend(address for _, address in getaddresses(message.get_all(header, [])))
    return found


def _notify_counter(meeting: Meeting, subscriber: Subscriber, event: icalendar.Component) -> None:
    """A member proposes another time: tell the coordinators, kindly, what and who (in the
    group's language, the one its coordinators write its announcements in)."""
    group = meeting.mailing_list
    with in_language(group.language):
        subject, text, html = _counter_notice(meeting, subscriber, event)
    for user in coordinators_of(group):
        msg = compose(
            to_name="",
            to_address=user.email,
            smtputf8=not user.email.isascii(),
            subject=subject,
            text=text,
            html=html,
        )
        queue_message(msg, kind=COUNTER_NOTICE, recipient=user.email, subscriber=None)


def _counter_notice(
    meeting: Meeting, subscriber: Subscriber, event: icalendar.Component
) -> tuple[str, str, str]:
    """(subject, text, html) of the coordinators' notice of a proposed time."""
    membership = db.session.get(Subscription, _membership_id(meeting, subscriber))
    proposer = subscriber.name or subscriber.email
    if membership is not None and membership.organization:
        institution = institution_labels().get(membership.institution, "")
        details = ", ".join(part for part in (membership.organization, institution) if part)
        proposer = f"{proposer} ({details})"
    subject = _("Návrh jiného termínu: %(title)s", title=meeting_title(meeting))[:200]
    text, html = render_pair(
        COUNTER_NOTICE,
        subject=subject,
        group=meeting.mailing_list,
        meeting_title=meeting_title(meeting),
        when=format_meeting_time(meeting.start, meeting.end, local_zone().key),
        proposed=_proposed_time(event),
        comment=str(event.get("COMMENT", ""))[:1000],
        subscriber=subscriber,
        proposer=proposer,
        admin_url=admin_group_url(meeting.mailing_list),
    )
    return subject, text, html


def _proposed_time(event: icalendar.Component) -> str:
    """The time a COUNTER proposes, as the notice says it; "" when it names none."""
    try:
        start, end = event.decoded("DTSTART"), event.decoded("DTEND")
    except (KeyError, ValueError, TypeError):
        return ""
    if not (isinstance(start, datetime) and isinstance(end, datetime)):
        return ""
    return format_meeting_time(
        start.astimezone(UTC).replace(tzinfo=None),
        end.astimezone(UTC).replace(tzinfo=None),
        local_zone().key,
    )


def _membership_id(meeting: Meeting, subscriber: Subscriber) -> int | None:
    return db.session.scalar(
        select(Subscription.id).filter_by(list_id=meeting.list_id, subscriber_id=subscriber.id)
    )
