"""The mails of the subscription flow: one function per kind, one template pair each."""

from __future__ import annotations

from flask import current_app
from flask_babel import gettext as _
from flask_babel import ngettext

from .. import tokens
from ..i18n import in_language
from ..links import external_url
from ..mail import send_to_subscriber
from ..models import MailingList, Subscriber

CONFIRMATION = "confirmation"
CONFIRMATION_REMINDER = "confirmation_reminder"
ALREADY_SUBSCRIBED = "already_subscribed"
WELCOME = "welcome"
PRIVACY_LINK = "privacy_link"


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


def send_confirmation(
    subscriber: Subscriber, lists: list[MailingList], *, reminder: bool = False
) -> str:
    """The double opt-in mail (or its one reminder); returns its Message-ID for the consent record.

    The reminder carries a fresh link of the same kind: a page with a button,
    which a link-fetching mail scanner cannot confirm.
    """
    names = ", ".join(m.name for m in lists)
    with in_language(subscriber.language):
        if reminder:
            subject = _("Připomínka: potvrďte prosím odběr: %(names)s", names=names)
        else:
            subject = _("Potvrďte prosím odběr: %(names)s", names=names)
    token = tokens.confirm_token(subscriber, [m.slug for m in lists])
    return send_to_subscriber(
        subscriber,
        CONFIRMATION_REMINDER if reminder else CONFIRMATION,
        subject,
        template=CONFIRMATION,
        reminder=reminder,
        lists=lists,
        confirm_url=external_url("subscriptions.confirm", token=token),
        valid_days=current_app.config["CONFIRM_TOKEN_MAX_AGE_DAYS"],
        **personal_links(subscriber),
    )


def send_already_subscribed(subscriber: Subscriber, lists: list[MailingList]) -> str:
    """Told instead of a second subscription when a confirmed address signs up again."""
    with in_language(subscriber.language):
        subject = _("Odběr už máte potvrzený")
    return send_to_subscriber(
        subscriber,
        ALREADY_SUBSCRIBED,
        subject,
        lists=lists,
        **personal_links(subscriber),
    )


def send_welcome(subscriber: Subscriber, lists: list[MailingList]) -> str:
    """After a confirmation: what the person now gets, where the archive is, how to leave.

    It also tells someone whose address was confirmed by a link-fetching
    scanner (rare: confirmation needs a POST) that it happened.
    """
    names = ", ".join(m.name for m in lists)
    with in_language(subscriber.language):
        subject = _("Odběr potvrzen: %(names)s", names=names)
    return send_to_subscriber(
        subscriber,
        WELCOME,
        subject,
        lists=lists,
        archive_urls={m.slug: external_url("archive.list_issues", slug=m.slug) for m in lists},
        **personal_links(subscriber),
    )


def privacy_link_lifetime() -> str:
    """PRIVACY_LINK_MAX_AGE in words for "platí …" / "valid for …": "1 hodinu", "30 minut"."""
    seconds = tokens.privacy_max_age()
    if seconds % 3600 == 0:
        return ngettext("%(num)d hodinu", "%(num)d hodin", seconds // 3600)
    return ngettext("%(num)d minutu", "%(num)d minut", seconds // 60)


def send_privacy_link(subscriber: Subscriber) -> str:
    """A fresh, short-lived link to export or erase one's data, mailed to the address itself.

    The preferences link travels in every mail and so in every forwarded one;
    export and erasure need proof that the person holds the mailbox now.
    """
    token = tokens.privacy_token(subscriber)
    with in_language(subscriber.language):
        subject = _("Odkaz pro export a výmaz vašich údajů")
        lifetime = privacy_link_lifetime()
    return send_to_subscriber(
        subscriber,
        PRIVACY_LINK,
        subject,
        export_url=external_url("subscriptions.preferences_export", token=token),
        erase_url=external_url("subscriptions.preferences_erase", token=token),
        lifetime=lifetime,
        **personal_links(subscriber),
    )
