"""CSV import and export of subscribers, shared by the CLI and the admin.

An import brings people who already consented elsewhere (a migration from
another service): they become confirmed, with the consent source recorded.
It runs in one transaction: either every valid row lands or none does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, TextIO

from sqlalchemy import func, select

from .. import consent, people_csv, suppression
from ..addresses import Address
from ..clock import iso_utc, utcnow
from ..consent import WITHDRAWING_ACTIONS, RequestInfo
from ..extensions import db
from ..groups.membership import MembershipError, clean_details
from ..models import ConsentEvent, MailingList, Subscriber, Subscription, SubscriptionStatus
from ..people_csv import ImportRefused, PeopleCsv
from . import actions
from .forms import name_problem

EXPORT_COLUMNS = ("email", "name", "status", "subscribed_at", "confirmed_at", "unsubscribed_at")
EXPORT_STATUS: dict[str, str] = {
    SubscriptionStatus.REQUESTED: SubscriptionStatus.PENDING,
    SubscriptionStatus.DECLINED: SubscriptionStatus.UNSUBSCRIBED,
}
KNOWN_COLUMNS = {"email", "name", "organization", "institution", "function"}
CONSENT_SOURCE_REQUIRED = "Uveďte, kde a kdy lidé se zasíláním souhlasili."
# Why a line is skipped when the list already knows the address, by its status there.
NOT_READDED: dict[str, str] = {
    SubscriptionStatus.UNSUBSCRIBED: "adresa se z tohoto seznamu odhlásila; znovu nepřidáno",
    SubscriptionStatus.BOUNCED: "adresa je na tomto seznamu nedoručitelná; znovu nepřidáno",
}


@dataclass
class ImportReport:
    imported: int = 0
    unchanged: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)


def import_subscribers(
    stream: IO[str],
    mailing_list: MailingList,
    consent_source: str,
    *,
    on_row: Callable[[], None] | None = None,
) -> ImportReport:
    """Import a CSV; invalid rows are reported by line number (in Czech) and skipped.

    ImportRefused when the file cannot be read at all; then nothing is imported.
    `on_row` is called for each row read (the command line's progress bar).
    """
    consent_source = consent_source.strip()
    if not consent_source:
        raise ImportRefused(CONSENT_SOURCE_REQUIRED)
    people = PeopleCsv(stream)
    report = ImportReport(problems=people.problems)
    info = RequestInfo(ip=None, user_agent=None, channel="import")
    now = utcnow()
    try:
        for line, row in people.rows():
            if on_row is not None:
                on_row()
            address = people.address(line, row)
            if address is None:
                continue
            name = people.cell(row, "name")
            if name_problem(name):
                people.skip(line, "jméno je příliš dlouhé nebo obsahuje řídicí znaky")
                continue
            if not people.first_time(line, address):
                continue
            details = None
            if mailing_list.kind == "group":
                details = _group_details(people, line, row)
                if details is None:
                    continue
            if suppression.is_suppressed(address.key):
                people.skip(line, "adresa byla vymazána nebo je nedoručitelná; neimportováno")
                continue
            outcome = _import_one(address, name, mailing_list, consent_source, info, now, details)
            if outcome == "imported":
                report.imported += 1
            elif outcome == "unchanged":
                report.unchanged += 1
            else:
                people.skip(line, outcome)
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return report


def _group_details(people: PeopleCsv, line: int, row: dict) -> tuple[str, str, str] | None:
    """A group member's (organization, institution key, function) from the row.

    None when the row's details are refused; the line's problem is noted then.
    """
    institution = people.institution(line, row)
    if institution is None:
        return None
    try:
        return clean_details(
            people.cell(row, "organization"), institution, people.cell(row, "function")
        )
    except MembershipError:
        people.skip(line, "organizace nebo funkce je příliš dlouhá nebo obsahuje řídicí znaky")
        return None


def _import_one(
    address: Address,
    name: str,
    mailing_list: MailingList,
    consent_source: str,
    info: RequestInfo,
    now: datetime,
    details: tuple[str, str, str] | None = None,
) -> str:
    subscriber = actions.get_or_create_subscriber(address, name)
    subscription = actions.subscription_for(subscriber, mailing_list)
    if subscription is not None:
        if subscription.status == SubscriptionStatus.CONFIRMED:
            if details is not None and any(details):
                # The file knows more about a member than the group did: keep it.
                _set_details(subscription, details)
            return "unchanged"
        if subscription.status in (SubscriptionStatus.UNSUBSCRIBED, SubscriptionStatus.BOUNCED):
            # A withdrawal here outranks consent given elsewhere earlier.
            return NOT_READDED[subscription.status]
    if withdrew_from(subscriber, mailing_list):
        # Also when a later sign-up (anyone can type an address) left it pending.
        return NOT_READDED[SubscriptionStatus.UNSUBSCRIBED]
    if subscription is None:
        subscription = Subscription(mailing_list=mailing_list, subscribed_at=now)
        subscriber.subscriptions.append(subscription)
    subscription.confirm_directly(now)
    if details is not None:
        _set_details(subscription, details)
    consent.record(subscriber, "import", info, mailing_list=mailing_list, detail=consent_source)
    return "imported"


def withdrew_from(subscriber: Subscriber, mailing_list: MailingList) -> bool:
    """Whether the person's history holds a withdrawal from this list."""
    if subscriber.id is None:
        return False
    return (
        db.session.scalar(
            select(ConsentEvent.id)
            .where(
                ConsentEvent.subscriber_id == subscriber.id,
                ConsentEvent.list_id == mailing_list.id,
                ConsentEvent.action.in_(WITHDRAWING_ACTIONS),
            )
            .limit(1)
        )
        is not None
    )


def _set_details(subscription: Subscription, details: tuple[str, str, str]) -> None:
    organization, institution, function = details
    subscription.organization = organization or subscription.organization
    subscription.institution = institution or subscription.institution
    subscription.function = function or subscription.function


def export_rows(mailing_list: MailingList) -> Iterable[dict[str, str]]:
    """The list's subscribers, streamed from the database in id order."""
    query = (
        select(Subscriber.email, Subscriber.name, Subscription)
        .join(Subscription, Subscription.subscriber_id == Subscriber.id)
        .where(Subscription.list_id == mailing_list.id)
        .order_by(Subscriber.id)
        .execution_options(yield_per=1000)
    )
    for email, name, subscription in db.session.execute(query):
        yield {
            "email": email,
            "name": name,
            # The export's contract knows four states: a join request still
            # waiting is "pending", a declined one "unsubscribed".
            "status": EXPORT_STATUS.get(subscription.status, subscription.status),
            **{
                column: iso_utc(getattr(subscription, column), zulu=True, timespec="seconds") or ""
                for column in ("subscribed_at", "confirmed_at", "unsubscribed_at")
            },
        }


def export_subscribers(
    mailing_list: MailingList, stream: TextIO, *, on_row: Callable[[], None] | None = None
) -> None:
    """Write the list's subscribers as CSV; `on_row` is called after each row."""
    writer = people_csv.writer(stream, EXPORT_COLUMNS)
    writer.writeheader()
    for row in export_rows(mailing_list):
        writer.writerow(row)
        if on_row is not None:
            on_row()


def subscription_count(mailing_list: MailingList) -> int:
    """How many rows the export of the list will have."""
    query = select(func.count()).where(Subscription.list_id == mailing_list.id)
    return db.session.scalar(query) or 0
