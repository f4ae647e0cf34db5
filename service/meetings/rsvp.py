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

from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from ..bounces.verp import bounce_base
from ..extensions import db
from ..models import (
    Meeting,
    MeetingResponse,
    PartStat,
    ResponseChannel,
    Subscriber,
    Subscription,
)

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
    """The signed part of a member's /rsvp/<token> link: `<meeting id>.<public key>.<MAC>`.

    Not an itsdangerous token like the other links: the delivery engine signs
    one per copy, and the serializer's JSON, zlib and key derivation cost more
    than the rest of the copy's personal parts together. Same guarantees: an
    HMAC-SHA256 (128 bits) under SECRET_KEY, older keys still verify, opaque ids only.
    """

    def __init__(self) -> None:
        self.keys = [k.encode() for k in _keys()]

    def _mac(self, key: bytes, meeting_id: int, public_key: str) -> str:
        digest = hmac.new(key, f"rsvp-link:{meeting_id}:{public_key}".encode(), "sha256")
        return base64.urlsafe_b64encode(digest.digest()[:16]).rstrip(b"=").decode("ascii")

    def dump(self, public_key: str, meeting_id: int) -> str:
        return f"{meeting_id}.{public_key}.{self._mac(self.keys[0], meeting_id, public_key)}"

    def load(self, token: str) -> tuple[int, str] | None:
        """(meeting id, public key) of a genuine token, else None."""
        parts = token.split(".")
        if len(parts) != 3 or not parts[0].isdigit() or len(parts[0]) > 10:
            return None
        meeting_id, public_key, mac = int(parts[0]), parts[1], parts[2]
        if not any(
            hmac.compare_digest(mac, self._mac(key, meeting_id, public_key)) for key in self.keys
        ):
            return None
        return meeting_id, public_key


def rsvp_token(public_key: str, meeting_id: int) -> str:
    return RsvpTokens().dump(public_key, meeting_id)


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


def response_of(meeting: Meeting, subscriber: Subscriber) -> MeetingResponse | None:
    return db.session.scalar(
        select(MeetingResponse).filter_by(meeting_id=meeting.id, subscriber_id=subscriber.id)
    )


def _response_row(meeting: Meeting, subscriber: Subscriber) -> MeetingResponse:
    found = response_of(meeting, subscriber)
    if found is None:
        found = MeetingResponse(
            meeting_id=meeting.id, subscriber_id=subscriber.id, partstat=PartStat.NEEDS_ACTION
        )
        db.session.add(found)
    return found


def answer_from_page(
    meeting: Meeting, subscriber: Subscriber, partstat: PartStat, note: str
) -> MeetingResponse:
    """The member's choice on the RSVP page; refused once the meeting started or was cancelled."""
    if meeting.cancelled_at is not None:
        raise RsvpRefused(_("Setkání bylo zrušeno; odpověď už není potřeba."))
    if meeting.started:
        raise RsvpRefused(_("Setkání už začalo; odpověď už změnit nelze."))
    response = _response_row(meeting, subscriber)
    response.answer(partstat, ResponseChannel.WEB, meeting.sequence, note.strip()[:NOTE_MAX])
    return response


def answer_from_calendar(
    meeting: Meeting, subscriber: Subscriber, partstat: PartStat, sequence: int
) -> str:
    """A calendar app's REPLY: recorded unless stale or too late; returns what happened."""
    if sequence < meeting.sequence:
        return "stale"
    if meeting.cancelled_at is not None or meeting.started:
        return "closed"
    response = _response_row(meeting, subscriber)
    response.answer(partstat, ResponseChannel.CALENDAR, sequence, None)
    return "recorded"
