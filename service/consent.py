"""Evidence of consent (DESIGN.md §7): the exact text shown, and who did what when."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from flask import Request, current_app, render_template
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from . import metrics
from .extensions import db
from .i18n import current_language
from .models import ConsentEvent, ConsentText, MailingList, Subscriber
from .request_values import bound

CONSENT_TEMPLATE = "consent/subscribe.txt"

# Steps by which a person gave consent (to a list or a working group), and by
# which they took it back. Retention and imports read the history by them.
CONSENTING_ACTIONS = ("confirm", "import", "accept_invitation", "join_confirm", "preferences_add")
# A spam complaint (ARF) withdraws too: imports do not bring the person back.
WITHDRAWING_ACTIONS = ("unsubscribe", "preferences_remove", "complaint")


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
    # From the environ: a header the request lacks costs Werkzeug's `headers.get` more.
    environ = request.environ
    origin = environ.get("HTTP_ORIGIN")
    if not origin or origin == "null":
        referrer = environ.get("HTTP_REFERER")
        if not referrer:
            return None
        try:
            parts = urlsplit(referrer)
        except ValueError:  # e.g. a malformed IPv6 host: not evidence of anything
            return None
        origin = f"{parts.scheme}://{parts.netloc}" if parts.netloc else None
    return origin[:255] if origin else None


# Each kind of versioned text and the template it is rendered from. The
# rendered text, not the template, is what is stored and hashed: a text that
# takes settings (the privacy notice's retention periods) gets a new version
# when an operator changes them, since what people were shown changed.
TEXT_TEMPLATES = {
    "consent": CONSENT_TEMPLATE,
    "group_consent": "consent/group_join.txt",
    "privacy": "consent/privacy.md",
}


def render_text(kind: str) -> str:
    """The text of `kind` as it would be shown now (not stored)."""
    return render_template(TEXT_TEMPLATES[kind]).strip()


def current_text(kind: str, *, commit: bool = True) -> ConsentText:
    """The text of `kind` shown now, stored as the kind's next version whenever it changes.

    With `commit=False` a new version is added inside a savepoint and left to
    the caller's commit, for callers in the middle of a transaction of their
    own (recording a consent event must not commit half of a sign-up).
    """
    text = render_text(kind)
    digest = hashlib.sha256(text.encode()).hexdigest()
    found = text_by_hash(kind, digest)
    if found:
        return found
    for _ in range(3):  # two processes may store the same new version at once
        latest = select(func.max(ConsentText.version)).where(ConsentText.kind == kind)
        version = (db.session.scalar(latest) or 0) + 1
        row = ConsentText(kind=kind, version=version, sha256=digest, text=text)
        try:
            # A savepoint: losing the race undoes only this insert.
            with db.session.begin_nested():
                db.session.add(row)
        except IntegrityError:
            # The other process stored the same text (then it is found), or
            # another text under this number (then the next number is tried).
            found = text_by_hash(kind, digest)
            if found:
                if commit:  # the attempt began a write transaction (SQLite: its write lock)
                    db.session.commit()
                return found
            continue
        if commit:
            db.session.commit()
        return row
    raise RuntimeError(f"could not store the {kind} text")


def current_consent_text() -> ConsentText:
    """The newsletter form's consent text now (the "consent" kind)."""
    return current_text("consent")


def text_by_hash(kind: str, digest: str | None) -> ConsentText | None:
    """A stored version of `kind` with this SHA-256, e.g. the one a form says it showed."""
    if not digest or not isinstance(digest, str):
        return None
    return db.session.scalar(select(ConsentText).filter_by(kind=kind, sha256=digest))


def consent_text_by_hash(digest: str | None, kind: str = "consent") -> ConsentText | None:
    """The consent text a form posted the hash of; only texts of the form's own kind count,
    so a hash copied from another form never stands for consent it did not show."""
    return text_by_hash(kind, digest)


def form_consent_text_id(posted_hash: str | None, kind: str = "consent") -> int:
    """Id of the consent text a sign-up form showed: the one whose hash it posted, else
    the current one (e.g. an API client that posts none).

    Remembered per app by hash: a stored text never changes (the database refuses
    it), so once found its id holds for the process's life. The sign-up request
    then costs no query for it (issue 14), whatever the address.
    """
    known: dict[tuple[str, str], int] = bound(current_app).extensions.setdefault(
        "zpravodaj_consent_text_ids", {}
    )
    if isinstance(posted_hash, str) and (kind, posted_hash) in known:
        return known[(kind, posted_hash)]
    found = text_by_hash(kind, posted_hash)
    if found is None:
        digest = _current_digest(kind)
        if (kind, digest) in known:
            return known[(kind, digest)]
        found = current_text(kind)
    known[(kind, found.sha256)] = found.id
    return found.id


def _current_digest(kind: str) -> str:
    """SHA-256 of the form's text of `kind` as shown now, in this request's language.

    The forms' texts ("consent", "group_consent") depend on the language alone, so
    each language's digest is remembered per app: a sign-up that posts no hash (an
    API client) renders no template for it. Not while Flask reloads edited templates.
    """
    app = bound(current_app)  # each read through the proxy looks the app up again
    if app.jinja_env.auto_reload:
        return hashlib.sha256(render_text(kind).encode()).hexdigest()
    digests: dict[tuple[str, str], str] = app.extensions.setdefault(
        "zpravodaj_form_text_digests", {}
    )
    key = (kind, current_language())
    if key not in digests:
        digests[key] = hashlib.sha256(render_text(kind).encode()).hexdigest()
    return digests[key]


def text_version(kind: str, version: int) -> ConsentText | None:
    return db.session.scalar(select(ConsentText).filter_by(kind=kind, version=version))


def record(
    subscriber: Subscriber,
    action: str,
    info: RequestInfo,
    *,
    mailing_list: MailingList | None = None,
    consent_text: ConsentText | None = None,
    privacy_text: ConsentText | None = None,
    message_id: str | None = None,
    detail: str | None = None,
    occurred_at: datetime | None = None,
) -> ConsentEvent:
    """Append one consent step; the caller commits with the change it records.

    `occurred_at` is when the person took the step, when that was earlier
    than now (a sign-up recorded by the job that processes it); default now.

    A step that carries a consent text was given on a form, and every form
    links to the privacy notice: the notice's current version is recorded
    with it (art. 13 GDPR: what the person was told when consenting).
    """
    if consent_text is not None and privacy_text is None:
        privacy_text = current_text("privacy", commit=False)
    event = ConsentEvent(
        subscriber=subscriber,
        mailing_list=mailing_list,
        action=action,
        channel=info.channel,
        ip=info.ip,
        user_agent=info.user_agent,
        origin=info.origin,
        consent_text=consent_text,
        privacy_text=privacy_text,
        message_id=message_id,
        detail=detail,
        occurred_at=occurred_at,
    )
    db.session.add(event)
    metrics.consent_step(db.session, action, info.channel)
    return event
