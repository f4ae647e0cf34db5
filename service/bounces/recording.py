"""Recording bounces: hard ones suppress at once, soft ones once they keep coming.

Soft bounces are scored the way Mailman does it, by days rather than by
messages (an issue and a reminder bouncing on the same day are one bad day):
an address is suppressed once BOUNCE_SOFT_LIMIT days with a soft bounce,
spread over at least BOUNCE_SOFT_DAYS, came with no accepted delivery in
between. A delivery that was accepted and did not come back resets the
score, so a mailbox that was full for a week recovers by itself.

A block or spam refusal of one issue by several domains at once
(ABOUT_US_DOMAINS) is about us, our reputation or our DNS, not about the
subscribers: those bounces are marked `about_us`, shown on the issue
report, and count for nobody.

A suppressed address's subscriptions become `bounced`: every send skips
them, the export says so, and only an administrator (reactivate) or the
person through a fresh double opt-in brings them back.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy import func, select, update

from .. import consent, metrics, suppression
from ..addresses import InvalidAddress, parse_address
from ..clock import utcnow
from ..consent import RequestInfo
from ..extensions import db
from ..models import (
    ACTIVE_SUBSCRIPTION_STATUSES,
    Bounce,
    Delivery,
    DeliveryStatus,
    OutgoingMail,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    SuppressionReason,
    rows_matched,
)
from .classify import Reason, Stage, judge
from .parsing import BounceReport, Failure, MessageKind

# Statuses a bounce suppression ends: what would otherwise still get mail.
ACTIVE_STATUSES = ACTIVE_SUBSCRIPTION_STATUSES
# This many recipient domains refusing one issue as blocked or spam: it is us.
ABOUT_US_DOMAINS = 3
ABOUT_US_REASONS = (Reason.BLOCKED, Reason.SPAM)
# A raw report is kept up to this size (a bounce quoting a large issue whole).
MAX_RAW_CHARS = 200_000


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
    if report.kind != MessageKind.BOUNCE:
        return []  # complaints, replies, auto-replies, notices: no bounce of anybody
    failures = report.failures
    if not failures and report.verp is not None:
        # Sent to one of our VERP addresses, yet nothing a detector can read:
        # a mangled report still means that delivery came back. Count it soft.
        failures = [Failure(None, "soft", "", "nerozpoznaná zpráva o nedoručení")]
    target = verp_target(report)
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


def verp_target(report: BounceReport) -> tuple[Subscriber | None, int | None, int | None] | None:
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
    shown: bytes | None = None,
) -> Outcome:
    """Store one failure (`raw` identifies it, `shown` is kept for the admin, else `raw`)."""
    now = utcnow()
    digest = hashlib.sha256(raw + b"\0" + str(subscriber.id).encode()).hexdigest()
    bounce = Bounce(
        subscriber_id=subscriber.id,
        delivery_id=delivery_id,
        outgoing_mail_id=mail_id,
        kind=failure.kind,
        status=failure.status[:16],
        diagnostic=failure.diagnostic[:500].replace("\0", ""),
        reason=str(failure.reason or "")[:16],
        # PostgreSQL text cannot hold NUL, which a broken report may contain.
        raw=(shown or raw)[:MAX_RAW_CHARS].decode("utf-8", "replace").replace("\0", "\ufffd"),
        fingerprint=digest,
        received_at=now,
    )
    # Checked, not caught from a savepoint: on SQLite (pysqlite) releasing the
    # outermost savepoint commits, and a process killed after that would keep
    # the bounce but not its suppression. A concurrent twin still fails at
    # the unique index, and inbox.process_message then runs the message again.
    if db.session.scalar(select(Bounce.id).filter_by(fingerprint=digest)) is not None:
        return Outcome(
            subscriber.email, failure.kind, failure.status, False, note="already recorded"
        )
    db.session.add(bounce)
    db.session.flush()
    metrics.count_after_commit(db.session, metrics.BOUNCES, failure.kind)
    if failure.kind == "soft" and _about_us(bounce):
        return Outcome(subscriber.email, "soft", failure.status, True, note="about us")
    score = score_of(subscriber, now)
    suppressed = False
    if failure.kind == "hard" or score.reached:
        why = " ".join(filter(None, (failure.status, failure.diagnostic)))
        suppressed = suppress_bounced(subscriber, why or f"{failure.kind} bounce")
    return Outcome(subscriber.email, failure.kind, failure.status, True, suppressed, score.days)


def _about_us(bounce: Bounce) -> bool:
    """Mark the issue's block/spam bounces `about_us` once enough domains refuse it.

    True when `bounce` is one of them (then it counts for nobody).
    """
    if bounce.reason not in ABOUT_US_REASONS or bounce.delivery_id is None:
        return False
    issue_id = db.session.scalar(select(Delivery.issue_id).filter_by(id=bounce.delivery_id))
    rows = db.session.execute(
        select(Bounce.id, Subscriber.email_key)
        .join(Delivery, Delivery.id == Bounce.delivery_id)
        .join(Subscriber, Subscriber.id == Bounce.subscriber_id)
        .where(Delivery.issue_id == issue_id, Bounce.reason.in_(ABOUT_US_REASONS))
    ).all()
    domains = {key.rpartition("@")[2] for _, key in rows}
    if len(domains) < ABOUT_US_DOMAINS:
        return False
    db.session.execute(
        update(Bounce)
        .where(Bounce.id.in_([row_id for row_id, _ in rows]))
        .values(about_us=True)
        .execution_options(synchronize_session=False)
    )
    db.session.expire(bounce, ["about_us"])
    return True


def blocked_domains(issue_id: int) -> list[str]:
    """Domains that refused the issue as blocked or spam, when that was about us."""
    keys = db.session.scalars(
        select(Subscriber.email_key)
        .join(Bounce, Bounce.subscriber_id == Subscriber.id)
        .join(Delivery, Delivery.id == Bounce.delivery_id)
        .where(Delivery.issue_id == issue_id, Bounce.about_us.is_(True))
    )
    return sorted({key.rpartition("@")[2] for key in keys})


def record_refusal(
    address: str,
    reason: str,
    *,
    subscriber_id: int | None,
    delivery_id: int | None = None,
    mail_id: int | None = None,
) -> Outcome:
    """The SMTP server refused a recipient for good while we sent (5xx at RCPT TO).

    As good as a bounce, without waiting for one, and judged by the same
    classifier (`classify.judge`): hard only with evidence about the address
    (5.1.1, "user unknown", or RFC 5321's "mailbox unavailable", which at RCPT
    is about the address); a policy answer (5.7.x) or a bare "550" may be
    about us as much as about the address, so it counts soft. The caller commits.
    """
    # A refusal of RCPT TO: "mailbox unavailable" there is about the address.
    verdict = judge("", reason, stage=Stage.RCPT)
    failure = Failure(
        address, verdict.kind, verdict.status, " ".join(reason.split())[:500], verdict.reason
    )
    subscriber = db.session.get(Subscriber, subscriber_id) if subscriber_id else None
    if subscriber is None:
        return _unmatched(failure)
    # The fingerprint keeps the same refusal of the same send from counting twice.
    raw = f"smtp refusal\0{delivery_id}\0{mail_id}\0{reason}".encode()
    # What the admin sees: the server's own answer, as it came in the SMTP conversation.
    return _record_one(subscriber, failure, raw, delivery_id, mail_id, reason.encode())


@dataclass(frozen=True)
class Score:
    """Soft bounces that count now: the days they fell on, and how far apart."""

    days: int
    first: datetime | None
    last: datetime | None
    limit: int
    span_days: int

    @property
    def spread(self) -> int:
        """Whole days between the first and the last counted bounce."""
        return (self.last - self.first).days if self.first and self.last else 0

    @property
    def reached(self) -> bool:
        return self.days >= self.limit and self.spread >= self.span_days


def score_of(subscriber: Subscriber, now: datetime | None = None) -> Score:
    """The soft-bounce score: bounce days since the last reset.

    A reset is a reactivation, or a delivery that was accepted and did not
    come back, sent after the bounced mail: from then on the address worked.
    Bounces about us (`about_us`) never count.
    """
    config = current_app.config
    since = _last_accepted(subscriber)
    if subscriber.bounce_reset_at and (since is None or subscriber.bounce_reset_at > since):
        since = subscriber.bounce_reset_at
    sent = func.coalesce(Delivery.sent_at, Bounce.received_at)
    query = (
        select(Bounce.received_at)
        .outerjoin(Delivery, Delivery.id == Bounce.delivery_id)
        .where(
            Bounce.subscriber_id == subscriber.id,
            Bounce.kind == "soft",
            Bounce.about_us.is_(False),
        )
    )
    if since is not None:
        query = query.where(sent > since, Bounce.received_at > since)
    if now is not None:
        query = query.where(Bounce.received_at <= now)
    moments = sorted(db.session.scalars(query))
    days = len({moment.date() for moment in moments})
    return Score(
        days,
        moments[0] if moments else None,
        moments[-1] if moments else None,
        config["BOUNCE_SOFT_LIMIT"],
        config["BOUNCE_SOFT_DAYS"],
    )


def _last_accepted(subscriber: Subscriber) -> datetime | None:
    """When the latest delivery to the subscriber that came back with no bounce was sent."""
    bounced = select(Bounce.id).where(Bounce.delivery_id == Delivery.id).exists()
    return db.session.scalar(
        select(func.max(Delivery.sent_at)).where(
            Delivery.subscriber_id == subscriber.id,
            Delivery.status == DeliveryStatus.SENT,
            Delivery.sent_at.is_not(None),
            ~bounced,
        )
    )


def soft_score(subscriber: Subscriber, now: datetime | None = None) -> int:
    """Days with a counted soft bounce (see `score_of`)."""
    return score_of(subscriber, now).days


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
