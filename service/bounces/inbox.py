"""One message reaching the bounce address, handled whatever it is.

The single entry for the pipe (`zpravodaj bounces process`), the SMTP
receiver (`bounces serve`) and the mailbox poller (`bounces poll`):
a bounce is recorded (recording.py), a complaint unsubscribes
(complaints.py), a human reply is forwarded (replies.py), an auto-reply or
a provider's notice is dropped.
"""

from __future__ import annotations

import email.message
from collections.abc import Callable, Iterable

from sqlalchemy.exc import IntegrityError

from ..extensions import db
from .complaints import record_complaints
from .parsing import BounceReport, MessageKind, NotABounce, message_of, parse_message
from .recording import record_report
from .replies import forward_reply


def process_message(
    raw: bytes,
    envelope_recipients: Iterable[str] = (),
    *,
    before_commit: Callable[[BounceReport], None] | None = None,
) -> tuple[BounceReport, list]:
    """Parse, record and commit one message; raises parsing.NotABounce for ordinary mail.

    Returns the report and what recording did (bounce or complaint outcomes;
    nothing for replies, auto-replies and notices). `before_commit` runs in
    the same transaction (the mailbox poller notes the message there, so
    recording it and marking it done are one).
    """
    message = message_of(raw)
    report = parse_message(message, envelope_recipients)
    if report.kind == MessageKind.OTHER:
        raise NotABounce("zpráva neobsahuje žádného nedoručeného příjemce")
    if report.kind == MessageKind.BOUNCE and not report.failures and report.verp is None:
        raise NotABounce("zpráva neobsahuje žádného nedoručeného příjemce")
    try:
        return report, _record(report, message, raw, before_commit)
    except IntegrityError:
        # The same message recorded meanwhile by another process (a mailbox
        # read twice, an MTA retrying the pipe): run again, it finds the row.
        return report, _record(report, message, raw, before_commit)


def _record(
    report: BounceReport,
    message: email.message.Message,
    raw: bytes,
    before_commit: Callable[[BounceReport], None] | None,
) -> list:
    """Record what `report` is, in one transaction; rolled back on any error."""
    try:
        outcomes: list = []
        if report.kind == MessageKind.BOUNCE:
            outcomes = record_report(report, raw)
        elif report.kind == MessageKind.COMPLAINT:
            outcomes = record_complaints(report, raw)
        elif report.kind == MessageKind.REPLY:
            forward_reply(report.kind, message, raw)
        if before_commit is not None:
            before_commit(report)
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return outcomes
