"""What visitors and members do in a working group: ask to join, confirm, accept an invitation.

A join request is double opt-in plus a coordinator: the form creates a
"pending" membership and mails a link; the link's POST proves the mailbox
and moves it to "requested", and the group's coordinators are told. They
approve or decline it (`membership.py`). An invitation is the other way in:
the coordinator's mail carries an "invite" link whose POST confirms.

The join link is a "confirm" token whose payload names the group as a
string under "l" and carries "j": 1. The subscription flow's /confirm/
reads "l" as a list of newsletters, so it finds nothing to confirm in such
a token: a join request can never skip the coordinator through it. An
"invite" token is not used because its POST would confirm at once.

Like the subscription actions, these record their consent step and leave
committing to the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from .. import consent, suppression, tokens
from ..addresses import Address
from ..clock import utcnow
from ..consent import RequestInfo
from ..extensions import db
from ..i18n import current_language, in_language
from ..institutions import institution_labels
from ..links import external_url
from ..mail import compose, queue_message, render_pair, send_to_subscriber
from ..models import (
    INSTITUTION_TYPES,
    ConsentText,
    GroupVisibility,
    ListKind,
    MailingList,
    OutgoingMail,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    User,
    is_valid_slug,
)
from ..subscriptions import actions
from ..subscriptions import emails as subscription_emails
from . import membership

JOIN_CONFIRMATION = "join_confirmation"
JOIN_REQUEST_NOTICE = "join_request_notice"
# Mails a stranger can make us send to an address by typing it into a form.
STRANGER_MAIL_KINDS = (*actions.SIGNUP_MAIL_KINDS, JOIN_CONFIRMATION)

ORGANIZATION_REQUIRED = _l("Uveďte prosím organizaci, kterou zastupujete.")
INSTITUTION_REQUIRED = _l("Vyberte prosím typ instituce.")

# Statuses from which a join request starts afresh (details and all).
RESTARTABLE = (SubscriptionStatus.UNSUBSCRIBED, SubscriptionStatus.DECLINED)


@dataclass(frozen=True)
class MemberDetails:
    """Who a member represents: organisation, institution type (INSTITUTION_TYPES key), function."""

    organization: str = ""
    institution: str = ""
    function: str = ""

    @classmethod
    def from_form(cls, form: Any, prefix: str = "") -> MemberDetails:
        """Read `organization`, `institution`, `function` (with `prefix`) from a form, stripped."""
        return cls(
            organization=form.get(prefix + "organization", "").strip(),
            institution=form.get(prefix + "institution", "").strip(),
            function=form.get(prefix + "function", "").strip(),
        )

    @property
    def institution_label(self) -> str:
        return INSTITUTION_TYPES.get(self.institution, "")


def details_problems(details: MemberDetails, *, required: bool) -> dict[str, str]:
    """What is wrong with member details, in Czech, by field.

    The rules are the coordinators' (`membership.clean_details`), checked one
    field at a time so each message stands next to its field. A join request
    must also say whom the person represents (the coordinator decides on
    it); on the preferences page a member may leave the details empty.
    """
    problems: dict[str, str] = {}
    for field_name, alone in (
        ("organization", (details.organization, "", "")),
        ("institution", ("", details.institution, "")),
        ("function", ("", "", details.function)),
    ):
        try:
            membership.clean_details(*alone)
        except membership.MembershipError as exc:
            problems[field_name] = str(exc)
    if required:
        if not details.organization:
            problems.setdefault("organization", str(ORGANIZATION_REQUIRED))
        if not details.institution:
            problems.setdefault("institution", str(INSTITUTION_REQUIRED))
    return problems


# --- finding groups ------------------------------------------------------------------


def group_by_slug(slug: Any) -> MailingList | None:
    """The working group named `slug`; None for newsletters and slugs no list may have."""
    if not isinstance(slug, str) or not is_valid_slug(slug):
        return None
    return db.session.scalar(select(MailingList).filter_by(slug=slug, kind=ListKind.GROUP))


def public_group(slug: Any) -> MailingList | None:
    """A group listed publicly (with a join form); invite-only groups are not shown."""
    group = group_by_slug(slug)
    return group if group is not None and group.visibility == "public" else None


def public_groups() -> list[MailingList]:
    return list(
        db.session.scalars(
            select(MailingList)
            .filter_by(kind=ListKind.GROUP, visibility=GroupVisibility.PUBLIC)
            .order_by(MailingList.municipality, MailingList.name)
        )
    )


def membership_of(subscriber: Subscriber, group: MailingList) -> Subscription | None:
    """The person's membership of `group` in any state (a subscription row), or None."""
    return actions.subscription_for(subscriber, group)


# --- asking to join ----------------------------------------------------------------


def request_to_join(
    address: Address,
    name: str,
    group: MailingList,
    details: MemberDetails,
    info: RequestInfo,
    consent_text: ConsentText,
) -> None:
    """A visitor asks to join `group`: record a pending request and mail a confirmation link.

    The answer to the visitor is the same whatever happens here (no
    enumeration): a member or a waiting request is left as it is, and only a
    new or ended membership takes the typed details, since whoever types the
    address is not necessarily its owner. The mail goes out in every case
    but a bounced address, within the per-hour cap of the sign-up form.
    """
    # A new person gets their mails in the language of the page they asked on.
    subscriber = actions.get_or_create_subscriber(address, name, current_language())
    # One request per address at a time keeps the per-hour cap exact (see actions.signup).
    db.session.refresh(subscriber, with_for_update=True)
    now = utcnow()
    subscription = membership_of(subscriber, group)
    if subscription is None:
        subscription = Subscription(
            mailing_list=group, subscribed_at=now, status=SubscriptionStatus.PENDING
        )
        subscriber.subscriptions.append(subscription)
        _set_details(subscription, details)
    elif subscription.status in RESTARTABLE:
        subscription.restart(now)
        _set_details(subscription, details)
    elif subscription.status == SubscriptionStatus.BOUNCED:
        return  # only an administrator reactivates a bounced address
    message_id = None
    if _stranger_mails_left(subscriber) > 0:
        message_id = send_join_confirmation(subscriber, group)
    consent.record(
        subscriber,
        "join_request",
        info,
        mailing_list=group,
        consent_text=consent_text,
        message_id=message_id,
    )


def _set_details(subscription: Subscription, details: MemberDetails) -> None:
    subscription.organization = details.organization
    subscription.institution = details.institution
    subscription.function = details.function


def _stranger_mails_left(subscriber: Subscriber) -> int:
    """Sign-up and join confirmations left this hour for the address (one cap for both forms)."""
    if subscriber.id is None:
        return current_app.config["CONFIRMATION_MAILS_PER_HOUR"]
    sent = db.session.scalar(
        select(func.count(OutgoingMail.id)).where(
            OutgoingMail.subscriber_id == subscriber.id,
            OutgoingMail.kind.in_(STRANGER_MAIL_KINDS),
            OutgoingMail.created_at >= utcnow() - timedelta(hours=1),
        )
    )
    return current_app.config["CONFIRMATION_MAILS_PER_HOUR"] - (sent or 0)


def join_token(subscriber: Subscriber, group: MailingList) -> str:
    """The signed link of a join confirmation (see the module docstring for its shape)."""
    return tokens.dump("confirm", {"s": subscriber.public_key, "l": group.slug, "j": 1})


def confirm_join(subscriber: Subscriber, group: MailingList, info: RequestInfo) -> bool:
    """The address is confirmed: the request now waits for a coordinator, who is told.

    Returns whether this call moved it (repeating the POST changes nothing).
    """
    subscription = membership_of(subscriber, group)
    # Of two POSTs of the link only one moves it: the coordinators are told once.
    if subscription is None or not subscription.await_approval():
        return False
    consent.record(subscriber, "join_confirm", info, mailing_list=group)
    # A confirmed mailbox is the one way back for an erased address (as in actions.confirm).
    suppression.lift_suppression(subscriber.email_key)
    notify_coordinators(subscription)
    return True


# --- invitations -----------------------------------------------------------------------


def accept_invitation(subscriber: Subscriber, group: MailingList, info: RequestInfo) -> bool:
    """Accept a coordinator's invitation: pending becomes confirmed; harmless to repeat.

    Only a pending membership is confirmed: one the person left, or the
    coordinator declined or removed, is not brought back by an old link.
    """
    subscription = membership_of(subscriber, group)
    if subscription is None:
        return False
    changed = subscription.confirm()
    if changed:
        consent.record(subscriber, "accept_invitation", info, mailing_list=group)
        suppression.lift_suppression(subscriber.email_key)
    return changed


# --- the members' page ---------------------------------------------------------------


def member_page_url(subscriber: Subscriber, group: MailingList) -> str:
    """The members' page of `group` for mails: signed with the subscriber's preferences token."""
    return external_url(
        "groups.member_page", slug=group.slug, token=tokens.preferences_token(subscriber)
    )


def calendar_feed_url(subscriber: Subscriber, group: MailingList) -> str:
    """The member's personal feed of the group's meetings (https; `webcal_url` for apps).

    Signed for this member and group; it stops working when they leave (the
    route checks the membership on every fetch), so a forwarded feed dies with it.
    """
    token = tokens.dump("calendar", {"s": subscriber.public_key, "l": group.slug})
    return external_url("groups.calendar_feed", slug=group.slug, token=token)


def webcal_url(url: str) -> str:
    """webcal://…: the scheme that makes a calendar app subscribe to a feed."""
    return "webcal://" + url.split("://", 1)[1]


# --- mails -----------------------------------------------------------------------------


def send_join_confirmation(subscriber: Subscriber, group: MailingList) -> str:
    """The mail that confirms the address of a join request; returns its Message-ID."""
    with in_language(subscriber.language):
        subject = _("Potvrďte prosím žádost o členství: %(name)s", name=group.name)
    return send_to_subscriber(
        subscriber,
        JOIN_CONFIRMATION,
        subject,
        group=group,
        confirm_url=external_url("groups.confirm_join", token=join_token(subscriber, group)),
        valid_days=current_app.config["CONFIRM_TOKEN_MAX_AGE_DAYS"],
        **subscription_emails.personal_links(subscriber),
    )


def coordinators_of(group: MailingList) -> list[User]:
    """Who is told of a join request: the group's active coordinators, else the admins."""
    coordinators = list(
        db.session.scalars(
            select(User)
            .where(User.role == "coordinator", User.active.is_(True))
            .where(User.lists.any(MailingList.id == group.id))
            .order_by(User.id)
        )
    )
    if coordinators:
        return coordinators
    return list(
        db.session.scalars(
            select(User).where(User.role == "admin", User.active.is_(True)).order_by(User.id)
        )
    )


def admin_group_url(group: MailingList) -> str:
    """The admin page where join requests are approved."""
    if "admin.group" in current_app.view_functions:
        return external_url("admin.group", slug=group.slug)
    return f"{current_app.config['BASE_URL'].rstrip('/')}/admin/groups/{group.slug}"


def notify_coordinators(subscription: Subscription) -> None:
    """Tell the group's coordinators that a confirmed address asks to join, in the
    group's language (like the other coordinators' notices)."""
    group = subscription.mailing_list
    with in_language(group.language):
        subject = _("Nová žádost o členství: %(group)s", group=group.name)
        text, html = render_pair(
            "join_request_notice",
            subject=subject,
            group=group,
            subscriber=subscription.subscriber,
            subscription=subscription,
            institution_label=institution_labels().get(subscription.institution or "", ""),
            admin_url=admin_group_url(group),
        )
    for user in coordinators_of(group):
        msg = compose(
            to_name="",
            to_address=user.email,
            smtputf8=not user.email.isascii(),
            subject=subject,
            text=text,
            html=html,
        )
        queue_message(msg, kind=JOIN_REQUEST_NOTICE, recipient=user.email, subscriber=None)
