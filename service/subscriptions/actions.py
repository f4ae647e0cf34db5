"""What subscribers can do, independent of HTTP: sign up, confirm, leave, export, erase.

Routes, the CLI and (later) the admin call these; each records its consent
step and leaves committing to the caller unless it says otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import message_from_bytes
from email import policy as email_policy
from typing import Any

from flask import current_app
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from .. import consent, ledger
from ..addresses import Address
from ..clock import iso_utc, utcnow
from ..consent import RequestInfo
from ..extensions import db
from ..i18n import DEFAULT_LANGUAGE
from ..models import (
    Bounce,
    Complaint,
    ConsentEvent,
    ConsentText,
    Delivery,
    Issue,
    ListKind,
    MailingList,
    Meeting,
    MeetingResponse,
    OutgoingMail,
    SignupRequest,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    SuppressionReason,
)
from ..suppression import lift_suppression, suppress, suppression_reason
from . import emails

# Mail kinds counted against CONFIRMATION_MAILS_PER_HOUR: what a stranger can
# make the service send to someone else's address by typing it in the form.
SIGNUP_MAIL_KINDS = (emails.CONFIRMATION, emails.ALREADY_SUBSCRIBED)


@dataclass
class SignupResult:
    """What a sign-up did; the public answer is the same whatever it says (no enumeration)."""

    pending: list[MailingList] = field(default_factory=list)
    already_confirmed: list[MailingList] = field(default_factory=list)


def public_newsletters() -> list[MailingList]:
    """Lists a visitor may sign up for on the public form."""
    return list(
        db.session.scalars(
            select(MailingList).filter_by(kind=ListKind.NEWSLETTER).order_by(MailingList.id)
        )
    )


def newsletters_by_slug(slugs: Iterable[str]) -> tuple[list[MailingList], list[str]]:
    """(found newsletter lists in the given order, unknown slugs)."""
    wanted = list(dict.fromkeys(slugs))
    rows = db.session.scalars(
        select(MailingList).where(
            MailingList.slug.in_(wanted), MailingList.kind == ListKind.NEWSLETTER
        )
    )
    by_slug = {row.slug: row for row in rows}
    return [by_slug[s] for s in wanted if s in by_slug], [s for s in wanted if s not in by_slug]


def find_subscriber(address: Address) -> Subscriber | None:
    return db.session.scalar(select(Subscriber).filter_by(email_key=address.key))


def subscriber_by_public_key(public_key: Any) -> Subscriber | None:
    if not isinstance(public_key, str):
        return None
    return db.session.scalar(select(Subscriber).filter_by(public_key=public_key))


def get_or_create_subscriber(
    address: Address, name: str = "", language: str = DEFAULT_LANGUAGE
) -> Subscriber:
    """The subscriber for `address`, created when new (safe against a concurrent twin).

    An existing subscriber's name and language are left alone: whoever types
    the address into the form is not necessarily its owner.
    """
    subscriber = find_subscriber(address)
    if subscriber is not None:
        return subscriber
    subscriber = Subscriber(
        email=address.email,
        email_key=address.key,
        ascii_email=address.ascii_email,
        name=name,
        language=language,
    )
    try:
        with db.session.begin_nested():
            db.session.add(subscriber)
    except IntegrityError:
        # Another request created the same address between our SELECT and INSERT.
        subscriber = find_subscriber(address)
        if subscriber is None:
            raise
    return subscriber


def subscription_for(subscriber: Subscriber, mailing_list: MailingList) -> Subscription | None:
    for subscription in subscriber.subscriptions:
        if subscription.list_id == mailing_list.id:
            return subscription
    return None


def signup(
    address: Address,
    name: str,
    lists: list[MailingList],
    info: RequestInfo,
    consent_text: ConsentText,
    *,
    at: datetime | None = None,
    language: str = DEFAULT_LANGUAGE,
) -> SignupResult:
    """A visitor asks to receive `lists`: record it and mail a confirmation link.

    A new, pending or unsubscribed subscription (re)starts double opt-in; a
    confirmed one stays as it is. Mails are capped per address per hour so the
    form cannot be used to flood someone's mailbox. `at` is when the visitor
    asked (the sign-up job runs a moment later; see subscriptions/signup.py).
    A new subscriber's mails are in `language`, the language of the page they
    signed up on.
    """
    subscriber = get_or_create_subscriber(address, name, language)
    # One sign-up of an address at a time (PostgreSQL row lock; SQLite
    # serialises writers anyway): keeps the per-hour mail cap exact.
    db.session.refresh(subscriber, with_for_update=True)
    now = at or utcnow()
    result = SignupResult()
    for mailing_list in lists:
        subscription = subscription_for(subscriber, mailing_list)
        if subscription is None:
            subscription = Subscription(mailing_list=mailing_list, subscribed_at=now)
            subscriber.subscriptions.append(subscription)
        elif subscription.status == SubscriptionStatus.CONFIRMED:
            result.already_confirmed.append(mailing_list)
            continue
        elif subscription.status != SubscriptionStatus.PENDING:
            subscription.restart(now)
        result.pending.append(mailing_list)

    message_id = None
    if _signup_mails_left(subscriber) > 0:
        if result.pending:
            message_id = emails.send_confirmation(subscriber, result.pending)
        else:
            message_id = emails.send_already_subscribed(subscriber, result.already_confirmed)
    for mailing_list in result.pending:
        consent.record(
            subscriber,
            "signup",
            info,
            mailing_list=mailing_list,
            consent_text=consent_text,
            message_id=message_id,
            occurred_at=now,
        )
    return result


def _signup_mails_left(subscriber: Subscriber) -> int:
    if subscriber.id is None:
        return current_app.config["CONFIRMATION_MAILS_PER_HOUR"]
    since = utcnow() - timedelta(hours=1)
    sent = db.session.scalar(
        select(func.count(OutgoingMail.id)).where(
            OutgoingMail.subscriber_id == subscriber.id,
            OutgoingMail.kind.in_(SIGNUP_MAIL_KINDS),
            OutgoingMail.created_at >= since,
        )
    )
    return current_app.config["CONFIRMATION_MAILS_PER_HOUR"] - (sent or 0)


def resend_confirmation(subscriber: Subscriber, list_slugs: list[str]) -> bool:
    """Mail a fresh confirmation link for the still-pending lists; False when none or capped."""
    pending = [
        s.mailing_list
        for s in subscriber.subscriptions
        if s.status == SubscriptionStatus.PENDING and s.mailing_list.slug in list_slugs
    ]
    if not pending or _signup_mails_left(subscriber) <= 0:
        return False
    emails.send_confirmation(subscriber, pending)
    return True


# Export/erase links mailed per address per hour: anyone holding a forwarded
# preferences link can press the button, and must not flood the owner's mailbox.
PRIVACY_LINKS_PER_HOUR = 3


def request_privacy_link(subscriber: Subscriber) -> bool:
    """Mail the address a fresh export/erase link; False when the hourly cap is reached."""
    since = utcnow() - timedelta(hours=1)
    sent = db.session.scalar(
        select(func.count(OutgoingMail.id)).where(
            OutgoingMail.subscriber_id == subscriber.id,
            OutgoingMail.kind == emails.PRIVACY_LINK,
            OutgoingMail.created_at >= since,
        )
    )
    if (sent or 0) >= PRIVACY_LINKS_PER_HOUR:
        return False
    emails.send_privacy_link(subscriber)
    return True


def confirm(subscriber: Subscriber, list_slugs: list[str], info: RequestInfo) -> list[MailingList]:
    """Confirm the pending subscriptions named by a confirmation link; harmless to repeat.

    Returns the lists the subscriber is now confirmed on among those named.
    """
    now = utcnow()
    confirmed, newly = [], []
    for subscription in subscriber.subscriptions:
        if subscription.mailing_list.slug not in list_slugs:
            continue
        # Of two concurrent clicks on the link only one moves it and records the step.
        if subscription.confirm(now):
            consent.record(subscriber, "confirm", info, mailing_list=subscription.mailing_list)
            newly.append(subscription.mailing_list)
        if subscription.status == SubscriptionStatus.CONFIRMED:
            confirmed.append(subscription.mailing_list)
    if confirmed:
        # A fresh double opt-in is the one way back for an erased address.
        lift_suppression(subscriber.email_key)
    if newly:  # once per confirmation, never for a repeated click
        emails.send_welcome(subscriber, newly)
    return confirmed


def unsubscribe(
    subscriber: Subscriber, list_slug: str | None, info: RequestInfo
) -> list[MailingList]:
    """Leave one list (or all when `list_slug` is None) at once; harmless to repeat."""
    now = utcnow()
    left = []
    for subscription in subscriber.subscriptions:
        if list_slug is not None and subscription.mailing_list.slug != list_slug:
            continue
        if subscription.unsubscribe(now):
            consent.record(subscriber, "unsubscribe", info, mailing_list=subscription.mailing_list)
            left.append(subscription.mailing_list)
    return left


def update_preferences(
    subscriber: Subscriber, name: str, wanted: list[MailingList], info: RequestInfo
) -> None:
    """Apply the preferences page: join the ticked newsletters, leave the unticked ones.

    Joining here needs no second opt-in: the signed link proves the person
    holds the mailbox, as the confirmation link would.
    """
    now = utcnow()
    subscriber.name = name
    wanted_ids = {m.id for m in wanted}
    # A bounced address gets no new list either: mail to it would only bounce.
    bounced = suppression_reason(subscriber.email_key) == SuppressionReason.BOUNCED
    for mailing_list in public_newsletters():
        subscription = subscription_for(subscriber, mailing_list)
        active = subscription is not None and subscription.status in (
            SubscriptionStatus.PENDING,
            SubscriptionStatus.CONFIRMED,
        )
        if mailing_list.id in wanted_ids and not (
            subscription is not None and subscription.status == SubscriptionStatus.CONFIRMED
        ):
            if bounced or (
                subscription is not None and subscription.status == SubscriptionStatus.BOUNCED
            ):
                continue  # only an administrator reactivates a bounced address
            if subscription is None:
                subscription = Subscription(mailing_list=mailing_list, subscribed_at=now)
                subscriber.subscriptions.append(subscription)
            subscription.confirm_directly(now)
            consent.record(subscriber, "preferences_add", info, mailing_list=mailing_list)
        elif mailing_list.id not in wanted_ids and active and subscription is not None:
            subscription.leave(now)
            consent.record(subscriber, "preferences_remove", info, mailing_list=mailing_list)


def export(subscriber: Subscriber) -> dict[str, Any]:
    """Everything held about one subscriber, as JSON-ready data (GDPR art. 15 and 20)."""
    events = db.session.scalars(
        select(ConsentEvent).filter_by(subscriber_id=subscriber.id).order_by(ConsentEvent.id)
    )
    mails = db.session.scalars(
        select(OutgoingMail).filter_by(subscriber_id=subscriber.id).order_by(OutgoingMail.id)
    )
    deliveries = db.session.execute(
        select(Delivery, Issue)
        .join(Issue, Issue.id == Delivery.issue_id)
        .where(Delivery.subscriber_id == subscriber.id)
        .order_by(Delivery.id)
    )
    return {
        "email": subscriber.email,
        "name": subscriber.name,
        "created_at": iso_utc(subscriber.created_at, zulu=True),
        "subscriptions": [_subscription_export(s) for s in subscriber.subscriptions],
        "deliveries": [
            {
                "list": issue.mailing_list.slug,
                "issue": issue.subject,
                "status": delivery.status,
                "sent_at": iso_utc(delivery.sent_at, zulu=True),
                "message_id": delivery.message_id,
            }
            for delivery, issue in deliveries
        ],
        "consent_events": [_consent_event_export(e) for e in events],
        "mails": [
            {
                "kind": m.kind,
                "message_id": m.message_id,
                "status": m.status,
                "created_at": iso_utc(m.created_at, zulu=True),
                "sent_at": iso_utc(m.sent_at, zulu=True),
            }
            for m in mails
        ],
        # Bounce reports are personal data too: they decided a suppression.
        "bounces": _bounces_export(subscriber),
        # Spam complaints their mail provider reported about our mail to them.
        "complaints": [
            {"feedback_type": c.feedback_type, "received_at": iso_utc(c.received_at, zulu=True)}
            for c in db.session.scalars(
                select(Complaint).filter_by(subscriber_id=subscriber.id).order_by(Complaint.id)
            )
        ],
        # Their answers to working groups' meeting invitations, notes and attendance.
        "meeting_answers": _meeting_answers_export(subscriber),
    }


def _meeting_answers_export(subscriber: Subscriber) -> list[dict[str, Any]]:
    """Each answer to a meeting (Přijdu / Možná / Nepřijdu), its note, and whether they came."""
    rows = db.session.execute(
        select(MeetingResponse, Meeting)
        .join(Meeting, Meeting.id == MeetingResponse.meeting_id)
        .where(MeetingResponse.subscriber_id == subscriber.id)
        .order_by(Meeting.start, MeetingResponse.id)
    )
    return [
        {
            "list": meeting.mailing_list.slug,
            "meeting": meeting.title or meeting.mailing_list.name,
            "meeting_uid": meeting.uid,
            "start": iso_utc(meeting.start, zulu=True),
            # For one date of a recurring meeting: that date (else the whole meeting).
            "date": iso_utc(response.occurrence, zulu=True),
            "answer": response.partstat,
            "note": response.note,
            "channel": response.channel,
            "answered_at": iso_utc(response.responded_at, zulu=True),
            "attended": response.attended,
        }
        for response, meeting in rows
    ]


def _bounces_export(subscriber: Subscriber) -> list[dict[str, Any]]:
    """The subscriber's bounces in the export, each with its reason and the report kept."""
    return [
        {
            "kind": b.kind,
            "reason": b.reason,
            "status": b.status,
            "diagnostic": b.diagnostic,
            "report": b.raw,
            "received_at": iso_utc(b.received_at, zulu=True),
        }
        for b in db.session.scalars(
            select(Bounce).filter_by(subscriber_id=subscriber.id).order_by(Bounce.id)
        )
    ]


def _subscription_export(subscription: Subscription) -> dict[str, Any]:
    """One subscription in the export; a working group's adds the member's details."""
    exported = {
        "list": subscription.mailing_list.slug,
        "list_name": subscription.mailing_list.name,
        "status": subscription.status,
        "subscribed_at": iso_utc(subscription.subscribed_at, zulu=True),
        "confirmed_at": iso_utc(subscription.confirmed_at, zulu=True),
        "unsubscribed_at": iso_utc(subscription.unsubscribed_at, zulu=True),
    }
    if subscription.mailing_list.kind == ListKind.GROUP:
        exported["organization"] = subscription.organization
        exported["institution"] = subscription.institution
        exported["function"] = subscription.function
    return exported


def _consent_event_export(event: ConsentEvent) -> dict[str, Any]:
    """One step of the consent history in the export, with the texts the person saw."""
    return {
        "action": event.action,
        "list": event.mailing_list.slug if event.mailing_list else None,
        "channel": event.channel,
        "occurred_at": iso_utc(event.occurred_at, zulu=True),
        "ip": event.ip,
        "user_agent": event.user_agent,
        "origin": event.origin,
        # The newsletter's or a working group's consent text, and the privacy
        # notice the form linked to, each as shown.
        "consent_text": _text_export(event.consent_text),
        "privacy_text": _text_export(event.privacy_text),
        "confirmation_message_id": event.message_id,
        "detail": event.detail,
    }


def _text_export(text: ConsentText | None) -> dict[str, Any] | None:
    if text is None:
        return None
    return {"kind": text.kind, "version": text.version, "sha256": text.sha256, "text": text.text}


def erase(subscriber: Subscriber) -> None:
    """Delete everything about the subscriber, keeping only a keyed hash that stops imports.

    Consent events are append-only for everyone else (the database refuses
    it); erasure (GDPR art. 17) deletes a person's whole ledger through
    `ledger.purging`, as retention does.
    """
    suppress(subscriber.email_key, SuppressionReason.ERASED)
    # A sign-up of the address still waiting for its job (subscriptions/signup.py).
    db.session.execute(delete(SignupRequest).where(SignupRequest.email_key == subscriber.email_key))
    about_them = mails_naming([subscriber.email, subscriber.ascii_email])
    db.session.execute(delete(OutgoingMail).where(OutgoingMail.id.in_(about_them)))
    with ledger.purging(db.session):
        for model in (ConsentEvent, OutgoingMail, Subscription):
            db.session.execute(delete(model).where(model.subscriber_id == subscriber.id))
        db.session.execute(delete(Subscriber).where(Subscriber.id == subscriber.id))
    db.session.expire_all()


# Mails to someone else that name a subscriber: a coordinator's notice of a join
# request holds the applicant's address, name and organisation
# (groups.joining.JOIN_REQUEST_NOTICE; imported from there it would be circular).
# A coordinator's notice of a member's COUNTER proposal names the member and their
# organisation too (meetings.replies.COUNTER_NOTICE).
MAILS_NAMING_OTHERS = ("join_request_notice", "meeting_counter_notice")


def mails_naming(addresses: Iterable[str | None]) -> list[int]:
    """Ids of stored mails, linked to no subscriber, to or about one of `addresses`.

    Erasure and retention take them with the person. Two kinds exist: a mail
    sent to the address without being tied to a subscriber (an editor's test
    copy of an issue, `issue_test`, goes to whatever address was typed, in any
    capitals), and a mail to someone else naming the address (MAILS_NAMING_OTHERS).
    Give every form of the address (as typed, case-folded, ASCII domain): the
    recipient column holds the ASCII form. The bodies are MIME-encoded, so each
    mail naming others is parsed; there are few (one per coordinator per join
    request, deleted after DELIVERY_DETAIL_DAYS), as there are few test copies.
    """
    wanted = {a.casefold() for a in addresses if a}
    if not wanted:
        return []
    unlinked = OutgoingMail.subscriber_id.is_(None)
    found = [
        mail_id
        for mail_id, recipient in db.session.execute(
            select(OutgoingMail.id, OutgoingMail.recipient).where(unlinked)
        )
        if recipient.casefold() in wanted
    ]
    rows = db.session.execute(
        select(OutgoingMail.id, OutgoingMail.raw).where(
            OutgoingMail.kind.in_(MAILS_NAMING_OTHERS), unlinked
        )
    )
    for mail_id, raw in rows:
        message = message_from_bytes(bytes(raw), policy=email_policy.default)
        text = "\n".join(
            part.get_content() for part in message.walk() if part.get_content_maintype() == "text"
        ).casefold()
        if mail_id not in found and any(address in text for address in wanted):
            found.append(mail_id)
    return found
