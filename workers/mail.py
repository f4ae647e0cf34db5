"""Sending the single mails the web process composed (confirmations and the like)."""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app
from sqlalchemy import and_, or_, update

from service.clock import utcnow
from service.extensions import db
from service.models import OutgoingMail

from .smtp import PermanentFailure, TransientFailure
from .transport import app_transport

log = logging.getLogger(__name__)


def claim_lease() -> timedelta:
    """How long a claimed mail stays claimed before another worker may take it over."""
    return timedelta(seconds=current_app.config["MAIL_CLAIM_LEASE_SECONDS"])


def send_outgoing(mail_id: int) -> str:
    """Send one stored mail; safe to run twice (a sent or claimed mail is skipped).

    A transient failure puts the mail back in the queue state and raises, so
    RQ's Retry schedules the next attempt; a permanent one is recorded.
    """
    now = utcnow()
    claimed = db.session.execute(
        update(OutgoingMail)
        .where(
            OutgoingMail.id == mail_id,
            or_(
                OutgoingMail.status == "queued",
                and_(
                    OutgoingMail.status == "sending", OutgoingMail.claimed_at < now - claim_lease()
                ),
            ),
        )
        .values(status="sending", claimed_at=now, attempts=OutgoingMail.attempts + 1)
    ).rowcount
    db.session.commit()
    if not claimed:
        log.info("outgoing mail %s is already sent, failed or being sent; skipping", mail_id)
        return "skipped"

    mail = db.session.get(OutgoingMail, mail_id)
    if mail is None:  # erased between the claim and now: nothing to send
        return "skipped"
    try:
        with app_transport() as transport:
            transport.send(mail.sender, mail.recipient, mail.raw, smtputf8=mail.smtputf8)
    except PermanentFailure as exc:
        mail.status, mail.last_error = "failed", str(exc)[:2000]
        db.session.commit()
        log.warning("outgoing mail %s refused for good: %s", mail_id, exc)
        return "failed"
    except TransientFailure as exc:
        mail.status, mail.last_error = "queued", str(exc)[:2000]
        db.session.commit()
        log.warning("outgoing mail %s not sent yet: %s", mail_id, exc)
        raise
    mail.status, mail.sent_at, mail.last_error = "sent", utcnow(), None
    db.session.commit()
    log.info("outgoing mail %s sent", mail_id)
    return "sent"
