"""The mails of group membership: one function per kind, one template pair each
(templates/email/group_<kind>.txt and .html)."""

from __future__ import annotations

from typing import Any

from flask_babel import gettext as _

from .. import tokens
from ..i18n import in_language
from ..links import external_url
from ..mail import send_to_subscriber
from ..models import MailingList, Subscriber, User
from ..subscriptions.emails import personal_links

INVITATION = "group_invitation"
JOIN_APPROVED = "group_join_approved"
JOIN_DECLINED = "group_join_declined"


def invitation_token(subscriber: Subscriber, group: MailingList) -> str:
    return tokens.dump("invite", {"s": subscriber.public_key, "l": group.slug})


def _send(
    subscriber: Subscriber, group: MailingList, kind: str, subject: str, **context: Any
) -> str:
    links = personal_links(subscriber)
    # Leaving this group only, not every list the person receives.
    links["unsubscribe_url"] = external_url(
        "subscriptions.unsubscribe", token=tokens.unsubscribe_token(subscriber, group.slug)
    )
    return send_to_subscriber(subscriber, kind, subject, group=group, **links, **context)


def send_invitation(subscriber: Subscriber, group: MailingList, invited_by: User | None) -> str:
    """The invitation with its signed accept link; returns the Message-ID for the consent record."""
    token = invitation_token(subscriber, group)
    with in_language(subscriber.language):
        subject = _("Pozvánka do skupiny: %(name)s", name=group.name)
    return _send(
        subscriber,
        group,
        INVITATION,
        subject,
        invitation_url=external_url("groups.invitation", token=token),
        invited_by=invited_by.email if invited_by is not None else "",
    )


def send_join_approved(subscriber: Subscriber, group: MailingList) -> str:
    """Tells the person their join request was approved."""
    with in_language(subscriber.language):
        subject = _("Jste členem skupiny: %(name)s", name=group.name)
    return _send(
        subscriber,
        group,
        JOIN_APPROVED,
        subject,
        group_url=external_url("groups.group_page", slug=group.slug),
    )


def send_join_declined(subscriber: Subscriber, group: MailingList) -> str:
    """Tells the person their join request was declined."""
    with in_language(subscriber.language):
        subject = _("Žádost o členství: %(name)s", name=group.name)
    return _send(subscriber, group, JOIN_DECLINED, subject)
