"""The mails of group membership: one function per kind, one template pair each
(templates/email/group_<kind>.txt and .html)."""

from __future__ import annotations

from typing import Any

from .. import tokens
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
    return _send(
        subscriber,
        group,
        INVITATION,
        f"Pozvánka do skupiny: {group.name}",
        invitation_url=external_url("groups.invitation", token=token),
        invited_by=invited_by.email if invited_by is not None else "",
    )


def send_join_approved(subscriber: Subscriber, group: MailingList) -> str:
    """Tells the person their join request was approved."""
    return _send(
        subscriber,
        group,
        JOIN_APPROVED,
        f"Jste členem skupiny: {group.name}",
        group_url=external_url("groups.group_page", slug=group.slug),
    )


def send_join_declined(subscriber: Subscriber, group: MailingList) -> str:
    """Tells the person their join request was declined."""
    return _send(subscriber, group, JOIN_DECLINED, f"Žádost o členství: {group.name}")
