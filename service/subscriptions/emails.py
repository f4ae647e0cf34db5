"""The mails of the subscription flow: one function per kind, one template pair each."""

from __future__ import annotations

from flask import current_app

from .. import tokens
from ..links import external_url
from ..mail import send_to_subscriber
from ..models import MailingList, Subscriber

CONFIRMATION = "confirmation"
ALREADY_SUBSCRIBED = "already_subscribed"
WELCOME = "welcome"


def personal_links(subscriber: Subscriber) -> dict[str, str]:
    """The preferences and leave-everything links every mail to a subscriber carries."""
    return {
        "preferences_url": external_url(
            "subscriptions.preferences", token=tokens.preferences_token(subscriber)
        ),
        "unsubscribe_url": external_url(
            "subscriptions.unsubscribe", token=tokens.unsubscribe_token(subscriber)
        ),
    }


def send_confirmation(subscriber: Subscriber, lists: list[MailingList]) -> str:
    """The double opt-in mail; returns its Message-ID for the consent record."""
    subject = (
        f"Potvrďte prosím odběr: {lists[0].name}"
        if len(lists) == 1
        else "Potvrďte prosím odběr: " + ", ".join(m.name for m in lists)
    )
    token = tokens.confirm_token(subscriber, [m.slug for m in lists])
    return send_to_subscriber(
        subscriber,
        CONFIRMATION,
        subject,
        lists=lists,
        confirm_url=external_url("subscriptions.confirm", token=token),
        valid_days=current_app.config["CONFIRM_TOKEN_MAX_AGE_DAYS"],
        **personal_links(subscriber),
    )


def send_already_subscribed(subscriber: Subscriber, lists: list[MailingList]) -> str:
    """Told instead of a second subscription when a confirmed address signs up again."""
    return send_to_subscriber(
        subscriber,
        ALREADY_SUBSCRIBED,
        "Odběr už máte potvrzený",
        lists=lists,
        **personal_links(subscriber),
    )


def send_welcome(subscriber: Subscriber, lists: list[MailingList]) -> str:
    """After a confirmation: what the person now gets, where the archive is, how to leave.

    It also tells someone whose address was confirmed by a link-fetching
    scanner (rare: confirmation needs a POST) that it happened.
    """
    names = ", ".join(m.name for m in lists)
    return send_to_subscriber(
        subscriber,
        WELCOME,
        f"Odběr potvrzen: {names}",
        lists=lists,
        archive_urls={m.slug: external_url("archive.list_issues", slug=m.slug) for m in lists},
        **personal_links(subscriber),
    )
