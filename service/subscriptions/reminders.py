"""One reminder to a sign-up still unconfirmed after CONFIRM_REMINDER_HOURS (default 48).

Never more than one per sign-up: each is recorded in the consent ledger as a
`confirm_reminder` step of the subscription, and a subscription that has one
since it was (re)started gets no other. Never once the confirmation link has
expired (CONFIRM_TOKEN_MAX_AGE_DAYS after the sign-up): by then the person had
their chance, and retention will delete the sign-up. The reminder carries a
fresh link of the same kind as the first mail (a page with a button; a mail
scanner fetching it confirms nothing), in the subscriber's language.

The workers run `send_due_reminders` from their schedule (workers/schedule.py).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, exists, select

from .. import consent, suppression
from ..clock import utcnow
from ..consent import RequestInfo
from ..extensions import db
from ..models import (
    ConsentEvent,
    ListKind,
    MailingList,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)
from . import emails

REMINDER_ACTION = "confirm_reminder"
# Subscribers reminded per run: the schedule runs again soon, so a backlog drains in steps.
BATCH = 200


def due_subscriptions(now: datetime) -> list[Subscription]:
    """Pending newsletter sign-ups older than the reminder delay, younger than the link's expiry,
    with no reminder since they were (re)started."""
    config = current_app.config
    remind_before = now - timedelta(hours=config["CONFIRM_REMINDER_HOURS"])
    expired_before = now - timedelta(days=config["CONFIRM_TOKEN_MAX_AGE_DAYS"])
    reminded = exists().where(
        and_(
            ConsentEvent.subscriber_id == Subscription.subscriber_id,
            ConsentEvent.list_id == Subscription.list_id,
            ConsentEvent.action == REMINDER_ACTION,
            ConsentEvent.occurred_at >= Subscription.subscribed_at,
        )
    )
    query = (
        select(Subscription)
        .join(MailingList, MailingList.id == Subscription.list_id)
        .where(
            MailingList.kind == ListKind.NEWSLETTER,
            Subscription.status == SubscriptionStatus.PENDING,
            Subscription.subscribed_at <= remind_before,
            Subscription.subscribed_at > expired_before,
            ~reminded,
        )
        .order_by(Subscription.subscriber_id, Subscription.list_id)
    )
    return list(db.session.scalars(query))


def send_due_reminders(now: datetime | None = None) -> dict[str, int]:
    """Mail each due subscriber one reminder for their pending lists; commits per subscriber."""
    if current_app.config["CONFIRM_REMINDER_HOURS"] <= 0:
        return {}
    now = now or utcnow()
    by_subscriber: dict[int, list[Subscription]] = defaultdict(list)
    for subscription in due_subscriptions(now):
        by_subscriber[subscription.subscriber_id].append(subscription)
    sent = 0
    info = RequestInfo(ip=None, user_agent=None, channel="reminder")
    for subscriber_id in list(by_subscriber)[:BATCH]:
        subscriber = db.session.get(Subscriber, subscriber_id)
        if subscriber is None or suppression.suppression_reason(subscriber.email_key):
            continue
        subscriptions = by_subscriber[subscriber_id]
        lists = [s.mailing_list for s in subscriptions]
        message_id = emails.send_confirmation(subscriber, lists, reminder=True)
        for mailing_list in lists:
            consent.record(
                subscriber, REMINDER_ACTION, info, mailing_list=mailing_list, message_id=message_id
            )
        db.session.commit()
        sent += 1
    return {"confirm_reminders": sent} if sent else {}
