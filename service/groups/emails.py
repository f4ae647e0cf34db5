"""The mails of group membership: one function per kind, one template pair each
(templates/email/group_<kind>.txt and .html)."""

from __future__ import annotations

from flask import current_app
from werkzeug.routing import BuildError

from .. import tokens
from ..links import external_url
from ..mail import compose, queue_message, render_pair
from ..models import MailingList, Subscriber, User
from ..subscriptions.emails import personal_links

INVITATION = "group_invitation"
JOIN_APPROVED = "group_join_approved"
JOIN_DECLINED = "group_join_declined"
JOIN_REQUEST = "group_join_request"


def invitation_token(subscriber: Subscriber, group: MailingList) -> str:
    return tokens.dump("invite", {"s": subscriber.public_key, "l": group.slug})


def _public_url(endpoint: str, path: str, **values: str) -> str:
    """external_url, or the contract path on BASE_URL while the public route is not
    registered (the public pages live in groups/routes.py, built alongside)."""
    try:
        return external_url(endpoint, **values)
    except BuildError:
        return current_app.config["BASE_URL"].rstrip("/") + path


def _send(subscriber: Subscriber, group: MailingList, kind: str, subject: str, **context) -> str:
    links = personal_links(subscriber)
    # Leaving this group only, not every list the person receives.
    links["unsubscribe_url"] = external_url(
        "subscriptions.unsubscribe", token=tokens.unsubscribe_token(subscriber, group.slug)
    )
    text, html = render_pair(
        kind, subscriber=subscriber, group=group, subject=subject, **links, **context
    )
    msg = compose(
        # No display name: the name was typed by someone else (a coordinator, a visitor).
        to_name="",
        to_address=subscriber.envelope_address,
        smtputf8=subscriber.ascii_email is None,
        subject=subject,
        text=text,
        html=html,
    )
    queue_message(msg, kind=kind, recipient=subscriber.envelope_address, subscriber=subscriber)
    return str(msg["Message-ID"])


def send_invitation(subscriber: Subscriber, group: MailingList, invited_by: User | None) -> str:
    """The invitation with its signed accept link; returns the Message-ID for the consent record."""
    token = invitation_token(subscriber, group)
    return _send(
        subscriber,
        group,
        INVITATION,
        f"Pozvánka do skupiny: {group.name}",
        invitation_url=_public_url("groups.invitation", f"/groups/invitation/{token}", token=token),
        invited_by=invited_by.email if invited_by is not None else "",
    )


def send_join_approved(subscriber: Subscriber, group: MailingList) -> str:
    """Tells the person their join request was approved."""
    return _send(
        subscriber,
        group,
        JOIN_APPROVED,
        f"Jste členem skupiny: {group.name}",
        group_url=_public_url("groups.group_page", f"/groups/{group.slug}", slug=group.slug),
    )


def send_join_declined(subscriber: Subscriber, group: MailingList) -> str:
    """Tells the person their join request was declined."""
    return _send(subscriber, group, JOIN_DECLINED, f"Žádost o členství: {group.name}")


def send_join_request_notice(coordinator: User, group: MailingList, requester: Subscriber) -> str:
    """Tells a coordinator that someone asks to join (they decide in the admin)."""
    subject = f"Nová žádost o členství: {group.name}"
    text, html = render_pair(
        JOIN_REQUEST,
        subject=subject,
        group=group,
        requester=requester,
        admin_url=external_url("admin.group", slug=group.slug),
    )
    msg = compose(
        to_name="",
        to_address=coordinator.email,
        smtputf8=not coordinator.email.isascii(),
        subject=subject,
        text=text,
        html=html,
    )
    queue_message(msg, kind=JOIN_REQUEST, recipient=coordinator.email, subscriber=None)
    return str(msg["Message-ID"])
