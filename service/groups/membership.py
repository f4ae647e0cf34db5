"""What coordinators and administrators do with a working group, independent of HTTP.

Invite people (one by one or from a CSV), approve or decline join requests,
remove members, edit a member's details and the group's own details. The
admin pages and the CLI call these; each records its consent step and leaves
committing to the caller. Every refusal is a `MembershipError` whose message
is in the request's language (Czech by default) and fit to show to the person
who asked.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import timedelta
from typing import IO

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from sqlalchemy import func, select

from .. import consent, suppression
from ..addresses import InvalidAddress, parse_address_for_app
from ..clock import utcnow
from ..consent import RequestInfo
from ..extensions import db
from ..i18n import valid_language
from ..models import (
    GROUP_VISIBILITIES,
    INSTITUTION_TYPES,
    ConsentEvent,
    GroupVisibility,
    ListKind,
    MailingList,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    User,
    is_valid_slug,
)
from ..people_csv import ImportRefused, PeopleCsv
from ..subscriptions import actions
from ..subscriptions.forms import name_problem
from . import emails

# A pending member may be invited again (a lost mail), but not without end:
# an invitation goes to an address nobody has confirmed yet.
INVITATIONS_PER_DAY = 3
# A CSV invitation mails every row: a bounded file keeps a mistake bounded.
CSV_MAX_ROWS = 500

# Member details: model column -> maximum length.
DETAIL_LIMITS = {"organization": 200, "function": 200}
DETAIL_LABELS = {"organization": _l("Organizace"), "function": _l("Funkce")}

# The group's own details: field -> (label, maximum length).
GROUP_FIELDS = {
    "name": (_l("Název"), 200),
    "description": (_l("Popis"), 5000),
    "municipality": (_l("Obec"), 120),
    "theme": (_l("Téma"), 200),
    "department": (_l("Organizující odbor"), 300),
    "meeting_place": (_l("Místo setkání"), 300),
    "meeting_rhythm": (_l("Obvyklý rytmus setkání"), 200),
}
# Free text that may span lines (the rest are one-line fields).
MULTILINE_FIELDS = frozenset({"description"})

VISIBILITY_LABELS = {
    GroupVisibility.PUBLIC: _l("veřejná (lze požádat o členství)"),
    GroupVisibility.INVITE: _l("jen na pozvání"),
}
MEMBER_STATUS_LABELS = {
    SubscriptionStatus.PENDING: _l("pozván(a), čeká na přijetí"),
    SubscriptionStatus.REQUESTED: _l("žádá o členství"),
    SubscriptionStatus.CONFIRMED: _l("člen(ka)"),
    SubscriptionStatus.DECLINED: _l("žádost zamítnuta"),
    SubscriptionStatus.UNSUBSCRIBED: _l("odešel/odešla"),
    SubscriptionStatus.BOUNCED: _l("nedoručitelná adresa"),
}


class MembershipError(ValueError):
    """A refused membership step; the message (in the request's language) is meant for the
    user, and `field` names the form field it is about, when it is about one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


ADMIN_CHANNEL = RequestInfo(ip=None, user_agent=None, channel="admin")


# --- validation -----------------------------------------------------------------


def _has_control_characters(text: str, *, multiline: bool = False) -> bool:
    allowed = {"\n", "\r", "\t"} if multiline else set()
    if not multiline and ("\u2028" in text or "\u2029" in text):
        return True  # Unicode line breaks: a group's name goes into mail subjects
    return any(unicodedata.category(ch).startswith("C") and ch not in allowed for ch in text)


def clean_details(organization: str, institution: str, function: str) -> tuple[str, str, str]:
    """Validated member details (organisation, institution key, function), or MembershipError."""
    organization = (organization or "").strip()
    function = (function or "").strip()
    institution = (institution or "").strip()
    for name, value in (("organization", organization), ("function", function)):
        label, limit = DETAIL_LABELS[name], DETAIL_LIMITS[name]
        if len(value) > limit:
            raise MembershipError(_too_long(str(label), limit), name)
        if _has_control_characters(value):
            raise MembershipError(_bad_characters(str(label)), name)
    if institution and institution not in INSTITUTION_TYPES:
        raise MembershipError(_("Neznámý typ instituce."), "institution")
    return organization, institution, function


def _too_long(label: str, limit: int) -> str:
    return _("%(label)s: příliš dlouhý text (nejvýše %(limit)d znaků).", label=label, limit=limit)


def _bad_characters(label: str) -> str:
    return _("%(label)s: text obsahuje nepovolené znaky.", label=label)


def clean_group_fields(values: dict[str, str | None]) -> dict[str, str]:
    """The given list or group details validated (lengths, characters, visibility, content
    language); None is skipped."""
    cleaned: dict[str, str] = {}
    for name, value in values.items():
        if value is None:
            continue
        if name == "visibility":
            if value not in GROUP_VISIBILITIES:
                raise MembershipError(
                    _("Viditelnost musí být „public“ (veřejná) nebo „invite“."), "visibility"
                )
            cleaned[name] = value
            continue
        if name == "language":
            cleaned[name] = _content_language(value)
            continue
        if name not in GROUP_FIELDS:
            raise ValueError(f"not a group field: {name}")
        label, limit = GROUP_FIELDS[name]
        text = value.strip()
        if name == "name" and not text:
            raise MembershipError(_("Název nesmí být prázdný."), name)
        if len(text) > limit:
            raise MembershipError(_too_long(str(label), limit), name)
        if _has_control_characters(text, multiline=name in MULTILINE_FIELDS):
            raise MembershipError(_bad_characters(str(label)), name)
        cleaned[name] = text.replace("\r\n", "\n")
    return cleaned


def _content_language(value: str) -> str:
    language = valid_language(value)
    if language is None:
        raise MembershipError(
            _("Jazyk obsahu musí být „cs“ (čeština) nebo „en“ (angličtina)."), "language"
        )
    return language


def create_group(
    slug: str, coordinators: list[User] | tuple[User, ...] = (), **values: str | None
) -> MailingList:
    """A new working group with its details and coordinators (the admin's "Nová skupina")."""
    if not is_valid_slug(slug):
        raise MembershipError(
            _("Zkratka v adrese smí obsahovat jen malá písmena bez diakritiky, číslice a pomlčky."),
            "slug",
        )
    if slug == "new":  # /admin/groups/new is the form itself
        raise MembershipError(_("Zkratka „new“ je vyhrazená; zvolte jinou."), "slug")
    if db.session.scalar(select(MailingList.id).filter_by(slug=slug)) is not None:
        raise MembershipError(
            _("Seznam nebo skupina se zkratkou „%(slug)s“ už existuje.", slug=slug), "slug"
        )
    group = MailingList(slug=slug, kind=ListKind.GROUP)
    for name, value in clean_group_fields(values).items():
        setattr(group, name, value)
    db.session.add(group)
    for user in coordinators:
        if user.role != "coordinator":
            raise MembershipError(
                _("Skupinu mohou koordinovat jen účty koordinátorů."), "coordinators"
            )
        user.lists.append(group)
    db.session.flush()
    return group


def update_group(group: MailingList, **values: str | None) -> None:
    """Set the group's details (only those given); all are validated before any is set."""
    _require_group(group)
    for name, value in clean_group_fields(values).items():
        setattr(group, name, value)


def _require_group(group: MailingList) -> None:
    if group.kind != ListKind.GROUP:
        raise MembershipError(_("Tento seznam není pracovní skupina."))


def _require_member_of(group: MailingList, subscription: Subscription) -> None:
    _require_group(group)
    if subscription.list_id != group.id:
        raise MembershipError(_("Tento člen do skupiny nepatří."))


def _by(user: User | None) -> str | None:
    return user.email if user is not None else None


# --- invitations ----------------------------------------------------------------


def invite(
    group: MailingList,
    email: str,
    name: str,
    organization: str,
    institution: str,
    function: str,
    invited_by: User | None,
    info: RequestInfo = ADMIN_CHANNEL,
) -> Subscription:
    """Invite a person: a pending membership with their details and a mail with a signed link.

    The person becomes a member only by accepting (groups.invitation). A
    confirmed member is not invited again; a pending one gets a fresh link,
    at most INVITATIONS_PER_DAY a day.
    """
    _require_group(group)
    try:
        address = parse_address_for_app(email)
    except InvalidAddress:
        raise MembershipError(_("Neplatný e-mail."), "email") from None
    name = (name or "").strip()
    problem = name_problem(name)
    if problem:
        raise MembershipError(str(problem), "name")
    organization, institution, function = clean_details(organization, institution, function)
    if suppression.is_suppressed(address.key):
        raise MembershipError(
            _(
                "Adresa %(email)s byla vymazána nebo je nedoručitelná; pozvánku nelze poslat.",
                email=address.email,
            ),
            "email",
        )
    subscriber = actions.get_or_create_subscriber(address, name)
    if name and not subscriber.name:
        subscriber.name = name
    subscription = actions.subscription_for(subscriber, group)
    if subscription is not None:
        _refuse_invitation_again(subscription, address.email)
    now = utcnow()
    if subscription is None:
        subscription = Subscription(mailing_list=group, subscribed_at=now)
        subscriber.subscriptions.append(subscription)
    subscription.restart(now)
    subscription.organization = organization
    subscription.institution = institution
    subscription.function = function
    message_id = emails.send_invitation(subscriber, group, invited_by)
    consent.record(
        subscriber,
        "invite",
        info,
        mailing_list=group,
        message_id=message_id,
        detail=_by(invited_by),
    )
    return subscription


def _refuse_invitation_again(subscription: Subscription, email: str) -> None:
    """A member, a bounced address or one invited too often today gets no new invitation."""
    if subscription.status == SubscriptionStatus.CONFIRMED:
        raise MembershipError(_("%(email)s už je členem skupiny.", email=email), "email")
    if subscription.status == SubscriptionStatus.BOUNCED:
        raise MembershipError(_("Adresa %(email)s je nedoručitelná.", email=email), "email")
    if _invitations_today(subscription) >= INVITATIONS_PER_DAY:
        raise MembershipError(
            ngettext(
                "Adrese %(email)s už dnes odešla %(num)d pozvánka do této skupiny; "
                "zkuste to zítra.",
                "Adrese %(email)s už dnes odešlo %(num)d pozvánek do této skupiny; "
                "zkuste to zítra.",
                INVITATIONS_PER_DAY,
                email=email,
            ),
            "email",
        )


def _invitations_today(subscription: Subscription) -> int:
    since = utcnow() - timedelta(days=1)
    return (
        db.session.scalar(
            select(func.count(ConsentEvent.id)).where(
                ConsentEvent.subscriber_id == subscription.subscriber_id,
                ConsentEvent.list_id == subscription.list_id,
                ConsentEvent.action == "invite",
                ConsentEvent.occurred_at >= since,
            )
        )
        or 0
    )


@dataclass
class InviteReport:
    """What a CSV invitation did: how many were invited and which lines were skipped why."""

    invited: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)


def invite_csv(
    group: MailingList,
    stream: IO[str],
    invited_by: User | None,
    info: RequestInfo = ADMIN_CHANNEL,
) -> InviteReport:
    """Invite everyone in a CSV (`email` required; `name`, `organization`, `institution`,
    `function` optional); bad rows are reported by line number and skipped.

    `institution` may be the key or the Czech label of INSTITUTION_TYPES.
    Each row is its own savepoint, so a refused row leaves nothing behind.
    """
    _require_group(group)
    try:
        people = PeopleCsv(stream)
        report = InviteReport(problems=people.problems)
        for count, (line, row) in enumerate(people.rows(), start=1):
            if count > CSV_MAX_ROWS:
                people.skip(
                    line,
                    _(
                        "soubor má víc než %(limit)d řádků; zbytek nezpracován",
                        limit=CSV_MAX_ROWS,
                    ),
                )
                break
            address = people.address(line, row)
            if address is None or not people.first_time(line, address):
                continue
            institution = people.institution(line, row)
            if institution is None:
                continue
            try:
                with db.session.begin_nested():
                    invite(
                        group,
                        people.cell(row, "email"),
                        people.cell(row, "name"),
                        people.cell(row, "organization"),
                        institution,
                        people.cell(row, "function"),
                        invited_by,
                        info,
                    )
            except MembershipError as exc:
                people.skip(line, str(exc))
                continue
            report.invited += 1
    except ImportRefused as exc:
        raise MembershipError(str(exc)) from None
    return report


# --- join requests, removal, details -----------------------------------------


def approve(
    group: MailingList,
    subscription: Subscription,
    by: User | None,
    info: RequestInfo = ADMIN_CHANNEL,
) -> bool:
    """Accept a join request: the person becomes a member and is told so by mail.

    Returns False when nothing changed (approved already); other states refuse.
    """
    _require_member_of(group, subscription)
    # Of two coordinators approving at once only one moves it: one mail, one history entry.
    if subscription.approve():
        consent.record(subscription.subscriber, "approve", info, mailing_list=group, detail=_by(by))
        emails.send_join_approved(subscription.subscriber, group)
        return True
    if subscription.status == SubscriptionStatus.CONFIRMED:
        return False
    raise MembershipError(_("Tuto žádost o členství už nelze schválit."))


def decline(
    group: MailingList,
    subscription: Subscription,
    by: User | None,
    info: RequestInfo = ADMIN_CHANNEL,
) -> bool:
    """Turn a join request down; the person is told by mail. False when declined already."""
    _require_member_of(group, subscription)
    if subscription.decline():
        consent.record(subscription.subscriber, "decline", info, mailing_list=group, detail=_by(by))
        emails.send_join_declined(subscription.subscriber, group)
        return True
    if subscription.status == SubscriptionStatus.DECLINED:
        return False
    raise MembershipError(_("Tuto žádost o členství už nelze zamítnout."))


def remove(
    group: MailingList,
    subscription: Subscription,
    by: User | None,
    info: RequestInfo = ADMIN_CHANNEL,
) -> bool:
    """Take a member (or an open invitation or request) out of the group; False if already out."""
    _require_member_of(group, subscription)
    if subscription.remove():
        consent.record(subscription.subscriber, "remove", info, mailing_list=group, detail=_by(by))
        return True
    return False


def update_details(
    subscription: Subscription, organization: str, institution: str, function: str
) -> None:
    """Set a member's organisation, institution type (a key, or empty) and function."""
    _require_group(subscription.mailing_list)
    (
        subscription.organization,
        subscription.institution,
        subscription.function,
    ) = clean_details(organization, institution, function)


def members(group: MailingList) -> list[Subscription]:
    """Everyone with a membership row in the group, requests first, then by name and address."""
    order: dict[str, int] = {
        SubscriptionStatus.REQUESTED: 0,
        SubscriptionStatus.PENDING: 1,
        SubscriptionStatus.CONFIRMED: 2,
    }
    rows = db.session.scalars(
        select(Subscription)
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(Subscription.list_id == group.id)
        .order_by(Subscriber.name, Subscriber.email_key)
    ).all()
    return sorted(rows, key=lambda s: order.get(s.status, 3))
