"""Recording bounces: hard ones suppress at once, soft ones once they keep coming.

Soft bounces are scored the way Mailman does it, by days rather than by
messages (an issue and a reminder bouncing on the same day are one bad day):
an address is suppressed when BOUNCE_SOFT_THRESHOLD different days with a
bounce fall within BOUNCE_SOFT_WINDOW_DAYS. Older bounces drop out of the
window, so a mailbox that was full for a day or two recovers by itself.

A suppressed address's subscriptions become `bounced`: every send skips
them, the export says so, and only an administrator (reactivate) or the
person through a fresh double opt-in brings them back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from .. import consent, suppression
from ..addresses import InvalidAddress, parse_address
from ..clock import utcnow
from ..consent import RequestInfo
from ..extensions import db
from ..models import (
    ACTIVE_SUBSCRIPTION_STATUSES,
    Bounce,
    Delivery,
    OutgoingMail,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    SuppressionReason,
    rows_matched,
)
from .parsing import BounceReport, Failure, NotABounce, classify, parse, status_of

# Statuses a bounce suppression ends: what would otherwise still get mail.
ACTIVE_STATUSES = ACTIVE_SUBSCRIPTION_STATUSES


@dataclass(frozen=True)
class Outcome:
    """What recording one failure did, for the CLI and the logs."""

    address: str | None
    kind: str
    status: str
    recorded: bool  # False: already recorded, or nobody of ours
    suppressed: bool = False
    score: int = 0
    note: str = ""


def record_report(report: BounceReport, raw: bytes) -> list[Outcome]:
    """Record every failure of `report`; the caller commits."""
    failures = report.failures
    if not failures and report.verp is not None and not report.auto_reply:
        # Sent to one of our VERP addresses, yet nothing a detector can read:
        # a mangled report still means that delivery came back. Count it soft.
        failures = [Failure(None, "soft", "", "nerozpoznaná zpráva o nedoručení")]
    target = _verp_target(report)
    if target is None:
        # Only a valid VERP token (a MAC under our key) says which of our mails
        # came back. Every message leaves with one, so a real bounce has it; a
        # report without one is something anybody could write naming anybody's
        # address (municipal addresses are public), and must suppress no one.
        return [_unproven(failure) for failure in failures]
    subscriber, delivery_id, mail_id = target
    outcomes = []
    for failure in failures:
        if subscriber is None:
            outcomes.append(_unmatched(failure))
            continue
        outcomes.append(_record_one(subscriber, failure, raw, delivery_id, mail_id))
    return outcomes


def _verp_target(report: BounceReport) -> tuple[Subscriber | None, int | None, int | None] | None:
    """(subscriber, delivery id, outgoing mail id) named by the VERP address."""
    if report.verp is None:
        return None
    if report.verp.kind == "delivery":
        delivery = db.session.get(Delivery, report.verp.row_id)
        if delivery is None:  # detail already reduced by retention, or erased
            return None
        return delivery.subscriber, delivery.id, None
    mail = db.session.get(OutgoingMail, report.verp.row_id)
    if mail is None:
        return None
    subscriber = db.session.get(Subscriber, mail.subscriber_id) if mail.subscriber_id else None
    return subscriber, None, mail.id


def _address_key(address: str) -> str | None:
    try:
        return parse_address(address, allow_smtputf8=True).key
    except InvalidAddress:
        return None


def _unproven(failure: Failure) -> Outcome:
    """A failure in a report that came without a valid VERP address: recorded nowhere."""
    return Outcome(failure.address, failure.kind, failure.status, False, note="no verp")


def _unmatched(failure: Failure) -> Outcome:
    """A failure of our own mail to an address we hold no subscriber for."""
    if failure.kind == "hard" and failure.address:
        # Our own mail (an invitation to someone not yet a member) bounced hard:
        # remember the address, hashed, so it is not invited or imported again.
        key = _address_key(failure.address)
        if key:
            suppression.suppress(key, SuppressionReason.BOUNCED)
            return Outcome(failure.address, failure.kind, failure.status, True, True, note="hash")
    return Outcome(failure.address, failure.kind, failure.status, False, note="unknown address")


def _record_one(
    subscriber: Subscriber,
    failure: Failure,
    raw: bytes,
    delivery_id: int | None,
    mail_id: int | None,
) -> Outcome:
    now = utcnow()
    digest = hashlib.sha256(raw + b"\0" + str(subscriber.id).encode()).hexdigest()
    bounce = Bounce(
        subscriber_id=subscriber.id,
        delivery_id=delivery_id,
        outgoing_mail_id=mail_id,
        kind=failure.kind,
        status=failure.status[:16],
        diagnostic=failure.diagnostic[:500],
        fingerprint=digest,
        received_at=now,
    )
    try:
        with db.session.begin_nested():
            db.session.add(bounce)
    except IntegrityError:
        return Outcome(
            subscriber.email, failure.kind, failure.status, False, note="already recorded"
        )
    score = soft_score(subscriber, now)
    threshold = current_app.config["BOUNCE_SOFT_THRESHOLD"]
    suppressed = False
    if failure.kind == "hard" or score >= threshold:
        why = " ".join(filter(None, (failure.status, failure.diagnostic)))
        suppressed = suppress_bounced(subscriber, why or f"{failure.kind} bounce")
    return Outcome(subscriber.email, failure.kind, failure.status, True, suppressed, score)


def record_refusal(
    address: str,
    reason: str,
    *,
    subscriber_id: int | None,
    delivery_id: int | None = None,
    mail_id: int | None = None,
) -> Outcome:
    """The SMTP server refused a recipient for good while we sent (5xx at RCPT TO).

    As good as a bounce, without waiting for one, and counted by the same
    rules: hard only with an enhanced status about the address (5.1.1 no such
    mailbox); a policy answer (5.7.x) or a bare "550" without one may be about
    us as much as about the address, so it counts soft. The caller commits.
    """
    status = status_of(reason)
    kind = classify(status, permanent=False) if status else "soft"
    failure = Failure(address, kind, status, " ".join(reason.split())[:500])
    subscriber = db.session.get(Subscriber, subscriber_id) if subscriber_id else None
    if subscriber is None:
        return _unmatched(failure)
    # The fingerprint keeps the same refusal of the same send from counting twice.
    raw = f"smtp refusal\0{delivery_id}\0{mail_id}\0{reason}".encode()
    return _record_one(subscriber, failure, raw, delivery_id, mail_id)


def soft_score(subscriber: Subscriber, now: datetime | None = None) -> int:
    """Days with a soft bounce within the window (since the last reactivation)."""
    now = now or utcnow()
    since = now - timedelta(days=current_app.config["BOUNCE_SOFT_WINDOW_DAYS"])
    if subscriber.bounce_reset_at and subscriber.bounce_reset_at > since:
        since = subscriber.bounce_reset_at
    moments = db.session.scalars(
        select(Bounce.received_at).where(
            Bounce.subscriber_id == subscriber.id,
            Bounce.kind == "soft",
            Bounce.received_at >= since,
        )
    )
    return len({moment.date() for moment in moments})


def suppress_bounced(subscriber: Subscriber, reason: str = "") -> bool:
    """Stop all mail to the address; True when it was still receiving some.

    Each subscription it ends gets a "bounce" step in the person's history,
    so the admin and the person's own export say why mail stopped.
    """
    ended = db.session.scalars(
        select(Subscription).where(
            Subscription.subscriber_id == subscriber.id,
            Subscription.status.in_(ACTIVE_STATUSES),
        )
    ).all()
    info = RequestInfo(ip=None, user_agent=None, channel="bounce")
    for subscription in ended:
        if subscription.mark_bounced():
            consent.record(
                subscriber,
                "bounce",
                info,
                mailing_list=subscription.mailing_list,
                detail=reason[:500] or None,
            )
    suppression.suppress(subscriber.email_key, SuppressionReason.BOUNCED)
    db.session.expire(subscriber, ["subscriptions"])
    return bool(ended)


def reactivate(subscriber: Subscriber, by: str = "") -> int:
    """An administrator fixed the cause: mail the address again, forget its old bounces.

    Bounced subscriptions that had been confirmed go back to confirmed (the
    consent given before the bounce still stands); ones that never were go
    back to pending, since only the person can confirm. The caller records
    who did it and commits.
    """
    bounced = (
        Subscription.subscriber_id == subscriber.id,
        Subscription.status == SubscriptionStatus.BOUNCED,
    )
    changed = 0
    for confirmed_before, status in (
        (True, SubscriptionStatus.CONFIRMED),
        (False, SubscriptionStatus.PENDING),
    ):
        was = (
            Subscription.confirmed_at.is_not(None)
            if confirmed_before
            else Subscription.confirmed_at.is_(None)
        )
        changed += rows_matched(
            update(Subscription)
            .where(*bounced, was)
            .values(status=status, unsubscribed_at=None)
            .execution_options(synchronize_session=False)
        )
    suppression.lift_suppression(subscriber.email_key)
    subscriber.bounce_reset_at = utcnow()
    if changed:
        info = RequestInfo(ip=None, user_agent=None, channel="admin")
        consent.record(subscriber, "reactivate", info, detail=by[:500] or None)
    db.session.expire(subscriber, ["subscriptions"])
    return changed


def bounces_of(subscriber: Subscriber) -> list[Bounce]:
    return list(
        db.session.scalars(
            select(Bounce).filter_by(subscriber_id=subscriber.id).order_by(Bounce.id.desc())
        )
    )


def process_message(
    raw: bytes, envelope_recipients: Iterable[str] = ()
) -> tuple[BounceReport, list[Outcome]]:
    """Parse and record one bounce, committing; raises parsing.NotABounce for non-bounces.

    An auto-reply (out of office) reaching the return path is no bounce: it
    comes back with no outcomes, and nothing is recorded.
    """
    report = parse(raw, envelope_recipients)
    if report.auto_reply:
        return report, []
    if not report.failures and report.verp is None:
        raise NotABounce("zpráva neobsahuje žádného nedoručeného příjemce")
    try:
        outcomes = record_report(report, raw)
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return report, outcomes
