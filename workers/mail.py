"""Sending the single mails the web process composed (confirmations and the like)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, or_, select, update
from sqlalchemy.engine import Engine

from service import suppression
from service.bounces.recording import record_refusal
from service.bounces.verp import envelope_sender
from service.clock import utcnow
from service.extensions import db
from service.lease import LeaseKeeper
from service.models import MailStatus, OutgoingMail, Subscriber, SuppressionReason, rows_matched
from service.subscriptions.emails import CONFIRMATION

from .smtp import PermanentFailure, RecipientRefused, TransientFailure
from .transport import app_transport

log = logging.getLogger(__name__)


def claim_lease() -> timedelta:
    """How long a claimed mail stays claimed before another worker may take it over."""
    return timedelta(seconds=current_app.config["MAIL_CLAIM_LEASE_SECONDS"])


def _bounced(mail: OutgoingMail) -> bool:
    """Suppressed for bouncing: checked right before sending, like every send.

    A confirmation still goes out: a fresh double opt-in is the one way back
    for a bounced address (DESIGN.md §7).
    """
    if mail.kind == CONFIRMATION or mail.subscriber_id is None:
        return False
    email_key = db.session.scalar(
        select(Subscriber.email_key).where(Subscriber.id == mail.subscriber_id)
    )
    if email_key is None:
        return False
    return suppression.suppression_reason(email_key) == SuppressionReason.BOUNCED


def send_outgoing(mail_id: int) -> str:
    """Send one stored mail; safe to run twice (a sent or claimed mail is skipped).

    A transient failure puts the mail back in the queue state and raises, so
    RQ's Retry schedules the next attempt; a permanent one is recorded.
    """
    now = utcnow()
    claimed = rows_matched(
        update(OutgoingMail)
        .where(
            OutgoingMail.id == mail_id,
            or_(
                OutgoingMail.status == MailStatus.QUEUED,
                and_(
                    OutgoingMail.status == MailStatus.SENDING,
                    OutgoingMail.claimed_at < now - claim_lease(),
                ),
            ),
        )
        .values(status=MailStatus.SENDING, claimed_at=now, attempts=OutgoingMail.attempts + 1)
    )
    db.session.commit()
    if not claimed:
        log.info("outgoing mail %s is already sent, failed or being sent; skipping", mail_id)
        return "skipped"

    mail = db.session.get(OutgoingMail, mail_id)
    if mail is None:  # erased between the claim and now: nothing to send
        return "skipped"
    if _bounced(mail):
        mail.mark_failed("adresa je vyřazena jako nedoručitelná", claimed_at=now)
        db.session.commit()
        log.info("outgoing mail %s not sent: the address bounces", mail_id)
        return "failed"
    claim = _ClaimRenewal(db.engine, mail.id, now)
    try:
        _send_keeping_the_claim(mail, claim)
    except PermanentFailure as exc:
        if not mail.mark_failed(str(exc), claim.claimed_at):
            return _claim_lost(mail_id)
        if isinstance(exc, RecipientRefused):
            record_refusal(
                mail.recipient, str(exc), subscriber_id=mail.subscriber_id, mail_id=mail.id
            )
        db.session.commit()
        log.warning("outgoing mail %s refused for good: %s", mail_id, exc)
        return "failed"
    except TransientFailure as exc:
        if not mail.requeue(str(exc), claim.claimed_at):
            return _claim_lost(mail_id)  # the next holder retries, not RQ
        db.session.commit()
        log.warning("outgoing mail %s not sent yet: %s", mail_id, exc)
        raise
    if not mail.mark_sent(claim.claimed_at):
        return _claim_lost(mail_id)
    db.session.commit()
    log.info("outgoing mail %s sent", mail_id)
    return "sent"


def _claim_lost(mail_id: int) -> str:
    """This worker's claim ran out while it sent (its process frozen past the
    lease) and another holder has the mail: what that one records stands."""
    db.session.rollback()
    log.warning("outgoing mail %s: claim taken over by another worker; its record stands", mail_id)
    return "claim lost"


def _send_keeping_the_claim(mail: OutgoingMail, claim: _ClaimRenewal) -> None:
    """Send the mail, its claim renewed meanwhile (service/lease.py): a slow SMTP server
    must not make it look abandoned to the reconciler, which would send it again."""
    keeper = LeaseKeeper(
        claim, current_app.config["MAIL_CLAIM_LEASE_SECONDS"] / 6, name=f"mail-{mail.id}-lease"
    )
    keeper.start()
    try:
        with app_transport(mail.kind) as transport:
            # VERP: a bounce of this mail names it (service/bounces/verp.py).
            transport.send(
                envelope_sender("m", mail.id), mail.recipient, mail.raw, smtputf8=mail.smtputf8
            )
    finally:
        keeper.stop()


class _ClaimRenewal:
    """Moves a claimed mail's `claimed_at` on, while it is still this worker's claim."""

    def __init__(self, engine: Engine, mail_id: int, claimed_at: datetime) -> None:
        self.engine = engine
        self.mail_id = mail_id
        self.claimed_at = claimed_at

    def __call__(self) -> bool:
        now = utcnow()
        with self.engine.begin() as connection:
            renewed = connection.execute(
                update(OutgoingMail)
                .where(
                    OutgoingMail.id == self.mail_id,
                    OutgoingMail.status == MailStatus.SENDING,
                    OutgoingMail.claimed_at == self.claimed_at,
                )
                .values(claimed_at=now)
            ).rowcount
        if renewed:
            self.claimed_at = now
        return bool(renewed)

    def close(self) -> None:
        """Nothing to close: each renewal borrows a pooled connection."""
