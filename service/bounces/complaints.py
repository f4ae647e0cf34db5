"""Spam complaints (ARF feedback reports): the person said "this is spam".

A complaint is not a bounce: the address works, the person does not want
the mail. So the person leaves the list the complaint is about and every
other newsletter (no marketing to them any more; working groups they are a
member of stay), each step in the consent ledger as a "complaint"; a
`Complaint` row counts it for the complaint rate.

Only a complaint whose returned original carries our VERP return path (a MAC
under our key) names somebody: anybody can write a feedback report naming
any public address, and it must unsubscribe no one.

The complaint rate is complaints per delivered mail. Gmail's sender
guidelines ask to stay below 0.1 % and never reach 0.3 %; both lines are
drawn on the issue report and the dashboard.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select

from .. import consent, metrics
from ..clock import utcnow
from ..consent import RequestInfo
from ..extensions import db
from ..models import (
    Complaint,
    Delivery,
    DeliveryStatus,
    Issue,
    MailingList,
    Subscriber,
    SubscriptionStatus,
)
from .parsing import BounceReport, MessageKind
from .recording import verp_target

# Feedback types that are the person's own word against the mail (RFC 5965
# abuse, other; opt-out from RFC 6650 practice). auth-failure, fraud, virus
# and not-spam say nothing about wanting the mail.
ACTED_ON = ("abuse", "opt-out", "other")
WARN_RATE = 0.001  # Gmail: keep below 0.1 %
LIMIT_RATE = 0.003  # Gmail: never reach 0.3 %
RATE_DAYS = 30


@dataclass(frozen=True)
class ComplaintOutcome:
    """What one complaint did, for the CLI and the logs."""

    address: str | None
    recorded: bool
    left: tuple[str, ...] = ()  # slugs of the lists the person left
    note: str = ""


def record_complaints(report: BounceReport, raw: bytes) -> list[ComplaintOutcome]:
    """Record the complaints of `report`; the caller commits."""
    if report.kind != MessageKind.COMPLAINT:
        return []
    outcomes = []
    for complaint in report.complaints:
        feedback_type = (complaint.feedback_type or "abuse").lower()
        if feedback_type not in ACTED_ON:
            outcomes.append(ComplaintOutcome(complaint.address, False, note=feedback_type))
            continue
        target = verp_target(report)
        if target is None or (subscriber := target[0]) is None:
            metrics.count_after_commit(db.session, metrics.COMPLAINTS, "unmatched")
            outcomes.append(ComplaintOutcome(complaint.address, False, note="no verp"))
            continue
        _, delivery_id, _mail_id = target
        outcomes.append(_record_one(subscriber, delivery_id, complaint.list_id, feedback_type, raw))
    return outcomes


def _record_one(
    subscriber: Subscriber, delivery_id: int | None, list_id: str, feedback_type: str, raw: bytes
) -> ComplaintOutcome:
    issue_id = mailing_list = None
    if delivery_id is not None:
        issue_id = db.session.scalar(select(Delivery.issue_id).filter_by(id=delivery_id))
        issue = db.session.get(Issue, issue_id) if issue_id else None
        mailing_list = issue.mailing_list if issue is not None else None
    mailing_list = mailing_list or _list_by_id(list_id)
    digest = hashlib.sha256(raw + b"\0" + str(subscriber.id).encode()).hexdigest()
    if db.session.scalar(select(Complaint.id).filter_by(fingerprint=digest)) is not None:
        return ComplaintOutcome(subscriber.email, False, note="already recorded")
    db.session.add(
        Complaint(
            subscriber_id=subscriber.id,
            list_id=mailing_list.id if mailing_list else None,
            issue_id=issue_id,
            feedback_type=feedback_type,
            fingerprint=digest,
        )
    )
    left = _leave_marketing(subscriber, mailing_list, feedback_type)
    metrics.count_after_commit(db.session, metrics.COMPLAINTS, "unsubscribed")
    return ComplaintOutcome(subscriber.email, True, tuple(left))


def _leave_marketing(
    subscriber: Subscriber, complained: MailingList | None, feedback_type: str
) -> list[str]:
    """Unsubscribe from the list complained about and from every other newsletter."""
    info = RequestInfo(ip=None, user_agent=None, channel="complaint")
    now, left = utcnow(), []
    for subscription in subscriber.subscriptions:
        mailing_list = subscription.mailing_list
        if mailing_list != complained and mailing_list.kind != "newsletter":
            continue  # a working group's mail is no marketing
        if subscription.status == SubscriptionStatus.BOUNCED:
            continue
        if subscription.unsubscribe(now):
            consent.record(
                subscriber,
                "complaint",
                info,
                mailing_list=mailing_list,
                detail=f"hlášení spamu (ARF {feedback_type})",
            )
            left.append(mailing_list.slug)
    return left


def _list_by_id(list_id: str) -> MailingList | None:
    """Our list named by a List-Id such as `"Zpravodaj" <zpravodaj.example.cz>`."""
    match = re.search(r"<([^.>]+)\.", list_id or "")
    if not match:
        return None
    return db.session.scalar(select(MailingList).filter_by(slug=match.group(1)))


@dataclass(frozen=True)
class Rate:
    """Complaints per delivered mail, with Gmail's two lines."""

    complaints: int
    delivered: int

    @property
    def rate(self) -> float:
        return self.complaints / self.delivered if self.delivered else 0.0

    @property
    def level(self) -> str:
        """ "ok" below 0.1 %, "warn" from 0.1 %, "bad" from 0.3 %."""
        if self.rate >= LIMIT_RATE:
            return "bad"
        return "warn" if self.rate >= WARN_RATE else "ok"

    @property
    def chart(self) -> dict:
        """Geometry of a bar with the 0.1 % and 0.3 % lines (drawn by _complaint_rate.html)."""
        scale = max(0.005, self.rate * 1.25)
        width, left, right = 420, 10, 410

        def x(value: float) -> float:
            return round(left + (right - left) * min(value, scale) / scale, 1)

        return {
            "width": width,
            "bar": x(self.rate) - left,
            "left": left,
            "warn": x(WARN_RATE),
            "limit": x(LIMIT_RATE),
        }


def issue_rate(issue: Issue, delivered: int) -> Rate:
    """Complaints about one issue per its delivered mails."""
    count = db.session.scalar(
        select(func.count(Complaint.id)).where(Complaint.issue_id == issue.id)
    )
    return Rate(count or 0, delivered)


def recent_rate(days: int = RATE_DAYS) -> Rate:
    """Complaints of the last `days` per issue mails delivered in them."""
    since = utcnow() - timedelta(days=days)
    complaints = db.session.scalar(
        select(func.count(Complaint.id)).where(Complaint.received_at >= since)
    )
    delivered = db.session.scalar(
        select(func.count(Delivery.id)).where(
            Delivery.status == DeliveryStatus.SENT, Delivery.sent_at >= since
        )
    )
    return Rate(complaints or 0, delivered or 0)
