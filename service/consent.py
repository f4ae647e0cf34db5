"""Evidence of consent (DESIGN.md §7): the exact text shown, and who did what when."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import Request, render_template
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from .extensions import db
from .models import ConsentEvent, ConsentText, MailingList, Subscriber

CONSENT_TEMPLATE = "consent/subscribe.txt"


@dataclass(frozen=True)
class RequestInfo:
    """Who asked, from where: recorded with every consent step."""

    ip: str | None
    user_agent: str | None
    channel: str
    origin: str | None = None

    @classmethod
    def from_request(cls, request: Request, channel: str) -> RequestInfo:
        return cls(
            ip=request.remote_addr,
            user_agent=(request.user_agent.string or None) and request.user_agent.string[:512],
            channel=channel,
            origin=_origin_of(request),
        )


def _origin_of(request: Request) -> str | None:
    """The page the request came from, scheme and host only (no paths, no queries)."""
    origin = request.headers.get("Origin")
    if not origin or origin == "null":
        referrer = request.headers.get("Referer")
        if not referrer:
            return None
        try:
            parts = urlsplit(referrer)
        except ValueError:  # e.g. a malformed IPv6 host: not evidence of anything
            return None
        origin = f"{parts.scheme}://{parts.netloc}" if parts.netloc else None
    return origin[:255] if origin else None


def current_consent_text() -> ConsentText:
    """The consent text the form shows now, stored as a new version whenever it changes."""
    text = render_template(CONSENT_TEMPLATE).strip()
    digest = hashlib.sha256(text.encode()).hexdigest()
    found = consent_text_by_hash(digest)
    if found:
        return found
    for _ in range(3):  # two processes may store the first version at once
        version = (db.session.scalar(select(func.max(ConsentText.version))) or 0) + 1
        row = ConsentText(version=version, sha256=digest, text=text)
        db.session.add(row)
        try:
            db.session.commit()
            return row
        except IntegrityError:
            db.session.rollback()
            found = consent_text_by_hash(digest)
            if found:
                return found
    raise RuntimeError("could not store the consent text")


def consent_text_by_hash(digest: str | None) -> ConsentText | None:
    if not digest:
        return None
    return db.session.scalar(select(ConsentText).filter_by(sha256=digest))


def record(
    subscriber: Subscriber,
    action: str,
    info: RequestInfo,
    *,
    mailing_list: MailingList | None = None,
    consent_text: ConsentText | None = None,
    message_id: str | None = None,
    detail: str | None = None,
) -> ConsentEvent:
    """Append one consent step; the caller commits with the change it records."""
    event = ConsentEvent(
        subscriber=subscriber,
        mailing_list=mailing_list,
        action=action,
        channel=info.channel,
        ip=info.ip,
        user_agent=info.user_agent,
        origin=info.origin,
        consent_text=consent_text,
        message_id=message_id,
        detail=detail,
    )
    db.session.add(event)
    return event
