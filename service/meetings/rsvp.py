"""Members' answers to meeting invitations: the signed links and addresses, and recording.

An answer comes two ways. The mail's "Přijdu / Možná / Nepřijdu" links open
`/rsvp/<token>` (routes.py); the token names the member and the meeting. A
calendar app's Accept button mails an iTIP REPLY to the invitation's
ORGANIZER, which is `rsvp+m<meeting id>-<mac>@<bounce domain>` (replies.py):
the MAC is keyed on the member's public key, so the address names the member
without showing any id, and nobody can answer for someone else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from ..bounces.verp import bounce_base
from ..clock import utcnow
from ..extensions import db
from ..models import (
    Meeting,
    MeetingResponse,
    PartStat,
    ResponseChannel,
    Subscriber,
    Subscription,
)
from . import occurrences
from .occurrences import Occurrence, from_timestamp, timestamp

RSVP_LOCAL_PART = "rsvp"
MAC_LENGTH = 16  # hex digits
NOTE_MAX = 500
# The choice a mail link preselects (`?odpoved=…`): Czech words in every language's URL.
CHOICES = {
    "prijdu": PartStat.ACCEPTED,
    "mozna": PartStat.TENTATIVE,
    "neprijdu": PartStat.DECLINED,
}
LABELS = {
    PartStat.ACCEPTED: _l("Přijdu"),
    PartStat.TENTATIVE: _l("Možná"),
    PartStat.DECLINED: _l("Nepřijdu"),
    PartStat.NEEDS_ACTION: _l("Zatím neodpověděl(a)"),
}
_ADDRESS = re.compile(
    rf"^{RSVP_LOCAL_PART}\+m(?P<meeting>[0-9]{{1,10}})-(?P<mac>[0-9a-f]{{{MAC_LENGTH}}})@",
    re.IGNORECASE,
)


class RsvpRefused(Exception):
    """An answer that cannot be taken now; the message is in the request's language."""

    status = 409


# --- the signed link and the signed address ---------------------------------------


class RsvpTokens:
    """The signed part of a member's /rsvp/<token> link: `<meeting id>.<public key>.<MAC>`,
    or `<meeting id>-<date>.<public key>.<MAC>` for one date of a series (its
    RECURRENCE-ID as a Unix time).

    Not an itsdangerous token like the other links: the delivery engine signs
    one per copy, and the serializer's JSON, zlib and key derivation cost more
    than the rest of the copy's personal parts together. Same guarantees: an
    HMAC-SHA256 (128 bits) under SECRET_KEY, older keys still verify, opaque ids only.
    """

    def __init__(self) -> None:
        self.keys = [k.encode() for k in _keys()]

    def _mac(self, key: bytes, meeting: str, public_key: str) -> str:
        digest = hmac.new(key, f"rsvp-link:{meeting}:{public_key}".encode(), "sha256")
        return base64.urlsafe_b64encode(digest.digest()[:16]).rstrip(b"=").decode("ascii")

    def dump(self, public_key: str, meeting_id: int, recurrence_id: datetime | None = None) -> str:
        meeting = str(meeting_id)
        if recurrence_id is not None:
            meeting += f"-{timestamp(recurrence_id)}"
        return f"{meeting}.{public_key}.{self._mac(self.keys[0], meeting, public_key)}"

    def load(self, token: str) -> tuple[int, str, datetime | None] | None:
        """(meeting id, public key, the date or None) of a genuine token, else None."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        meeting, public_key, mac = parts
        meeting_id, _, date = meeting.partition("-")
        if not meeting_id.isdigit() or len(meeting_id) > 10 or (date and not date.isdigit()):
            return None
        if not any(
            hmac.compare_digest(mac, self._mac(key, meeting, public_key)) for key in self.keys
        ):
            return None
        return int(meeting_id), public_key, from_timestamp(date) if date else None


def rsvp_token(public_key: str, meeting_id: int, recurrence_id: datetime | None = None) -> str:
    return RsvpTokens().dump(public_key, meeting_id, recurrence_id)


def _keys() -> list[str]:
    config = current_app.config
    return [config["SECRET_KEY"], *config.get("SECRET_KEY_FALLBACKS", [])]


def _mac(key: str, meeting_id: int, public_key: str) -> str:
    message = f"rsvp:{meeting_id}:{public_key}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()[:MAC_LENGTH]


class OrganizerAddresses:
    """Builds each member's ORGANIZER address of one meeting; made once per issue."""

    def __init__(self, meeting_id: int) -> None:
        self.meeting_id = meeting_id
        self.key = _keys()[0]
        self.domain = bounce_base()[1]

    def __call__(self, public_key: str | None) -> str:
        """`rsvp+m12-…@domain`; a preview or test copy (no key) gets the plain address."""
        if public_key is None:
            return f"{RSVP_LOCAL_PART}@{self.domain}"
        mac = _mac(self.key, self.meeting_id, public_key)
        return f"{RSVP_LOCAL_PART}+m{self.meeting_id}-{mac}@{self.domain}"


def is_rsvp_address(address: str) -> bool:
    """Whether mail to `address` is a calendar reply for us (the bounce domain's rsvp+…)."""
    local, _, domain = address.rpartition("@")
    local = local.lower()
    return domain.lower() == bounce_base()[1].lower() and (
        local == RSVP_LOCAL_PART or local.startswith(RSVP_LOCAL_PART + "+")
    )


@dataclass(frozen=True)
class SignedAddress:
    meeting: Meeting
    subscriber: Subscriber


def parse_rsvp_address(address: str) -> SignedAddress | None:
    """The meeting and member an ORGANIZER address was made for, or None (not ours, forged).

    The member is found by checking the MAC against the group's members: a
    working group has tens of members, so this is a handful of HMACs.
    """
    match = _ADDRESS.match(address or "")
    if match is None:
        return None
    meeting = db.session.get(Meeting, int(match["meeting"]))
    if meeting is None:
        return None
    mac = match["mac"].lower()
    candidates = db.session.scalars(
        select(Subscriber)
        .join(Subscription, Subscription.subscriber_id == Subscriber.id)
        .where(Subscription.list_id == meeting.list_id)
    )
    keys = _keys()
    for subscriber in candidates:
        for key in keys:
            if hmac.compare_digest(mac, _mac(key, meeting.id, subscriber.public_key)):
                return SignedAddress(meeting, subscriber)
    return None


# --- recording --------------------------------------------------------------------


def response_of(
    meeting: Meeting, subscriber: Subscriber, occurrence: datetime | None = None
) -> MeetingResponse | None:
    """The member's own row for the series (or single meeting), or for one date of it."""
    return db.session.scalar(
        select(MeetingResponse).where(
            MeetingResponse.meeting_id == meeting.id,
            MeetingResponse.subscriber_id == subscriber.id,
            MeetingResponse.occurrence.is_(None)
            if occurrence is None
            else MeetingResponse.occurrence == occurrence,
        )
    )


def answer_for(
    meeting: Meeting, subscriber: Subscriber, occurrence: datetime | None = None
) -> MeetingResponse | None:
    """The answer that holds for a date: its own, else the one to the whole series."""
    own = response_of(meeting, subscriber, occurrence) if occurrence is not None else None
    return own or response_of(meeting, subscriber)


def _response_row(
    meeting: Meeting, subscriber: Subscriber, occurrence: datetime | None
) -> MeetingResponse:
    found = response_of(meeting, subscriber, occurrence)
    if found is None:
        found = MeetingResponse(
            meeting_id=meeting.id,
            subscriber_id=subscriber.id,
            occurrence=occurrence,
            partstat=PartStat.NEEDS_ACTION,
        )
        db.session.add(found)
    return found


def closed_because(meeting: Meeting, date: Occurrence | None) -> str | None:
    """Why no answer can be taken now (in the current language), or None while it can: until
    the date (or a single meeting) starts; for a whole series, while it has a date ahead."""
    if meeting.cancelled_at is not None or (date is not None and date.cancelled):
        return _("Setkání bylo zrušeno; odpověď už není potřeba.")
    started = _("Setkání už začalo; odpověď už změnit nelze.")
    if date is not None:
        return started if date.started else None
    if meeting.rrule:
        if not occurrences.upcoming(meeting, after=utcnow(), count=1):
            return _("Všechna setkání řady už proběhla; odpověď už změnit nelze.")
        return None
    return started if meeting.started else None


def answer_from_page(
    meeting: Meeting, subscriber: Subscriber, partstat: PartStat, note: str,
    date: Occurrence | None = None,
) -> MeetingResponse:  # fmt: skip
    """The member's choice on the RSVP page (for the meeting, the series, or one date of
    it); refused once it started or was cancelled."""
    refused = closed_because(meeting, date)
    if refused:
        raise RsvpRefused(refused)
    occurrence = date.recurrence_id if date is not None else None
    sequence = date.sequence if date is not None else meeting.sequence
    response = _response_row(meeting, subscriber, occurrence)
    response.answer(partstat, ResponseChannel.WEB, sequence, note.strip()[:NOTE_MAX])
    return response


def answer_from_calendar(
    meeting: Meeting, subscriber: Subscriber, partstat: PartStat, sequence: int,
    recurrence_id: datetime | None = None,
) -> str:  # fmt: skip
    """A calendar app's REPLY (to the series, or with RECURRENCE-ID to one date): recorded
    unless stale (a SEQUENCE below the date's or the series') or too late."""
    date = None
    if recurrence_id is not None and meeting.rrule:
        date = occurrences.find(meeting, recurrence_id)
        if date is None:
            return "unknown"
    if sequence < (date.sequence if date is not None else meeting.sequence):
        return "stale"
    if closed_because(meeting, date):
        return "closed"
    occurrence = date.recurrence_id if date is not None else None
    response = _response_row(meeting, subscriber, occurrence)
    response.answer(partstat, ResponseChannel.CALENDAR, sequence, None)
    return "recorded"
