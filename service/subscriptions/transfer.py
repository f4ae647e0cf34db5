"""CSV import and export of subscribers, shared by the CLI and the admin.

An import brings people who already consented elsewhere (a migration from
another service): they become confirmed, with the consent source recorded.
It runs in one transaction: either every valid row lands or none does.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, TextIO

from sqlalchemy import select

from .. import consent, suppression
from ..addresses import InvalidAddress, parse_address_for_app
from ..clock import utcnow
from ..consent import WITHDRAWING_ACTIONS, RequestInfo
from ..extensions import db
from ..groups.membership import MembershipError, clean_details, institution_key
from ..models import ConsentEvent, MailingList, Subscriber, Subscription
from . import actions
from .forms import name_problem

EXPORT_COLUMNS = ("email", "name", "status", "subscribed_at", "confirmed_at", "unsubscribed_at")
EXPORT_STATUS = {"requested": "pending", "declined": "unsubscribed"}
KNOWN_COLUMNS = {"email", "name", "organization", "institution", "function"}


class ImportError_(ValueError):
    """The file as a whole cannot be imported (no header, no `email` column)."""


@dataclass
class ImportReport:
    imported: int = 0
    unchanged: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)


def import_subscribers(
    stream: IO[str], mailing_list: MailingList, consent_source: str
) -> ImportReport:
    """Import a CSV; invalid rows are reported by line number and skipped."""
    consent_source = consent_source.strip()
    if not consent_source:
        raise ImportError_("the consent source must not be empty")
    reader = csv.DictReader(stream)
    try:
        fieldnames = reader.fieldnames
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ImportError_(_unreadable(exc, 1)) from None
    if fieldnames is None:
        raise ImportError_("the file is empty; it needs a header row with an `email` column")
    columns = {(name or "").strip().lower(): name for name in fieldnames}
    if "email" not in columns:
        raise ImportError_("the header row has no `email` column")

    report = ImportReport()
    info = RequestInfo(ip=None, user_agent=None, channel="import")
    seen: dict[str, int] = {}
    now = utcnow()
    try:
        for row in reader:
            line = reader.line_num
            email = row.get(columns["email"]) or ""
            name = (row.get(columns["name"]) or "").strip() if "name" in columns else ""
            try:
                address = parse_address_for_app(email)
            except InvalidAddress:
                report.problems.append((line, f"invalid address {email.strip()!r}"))
                continue
            if name_problem(name):
                report.problems.append((line, "the name is too long or has control characters"))
                continue
            if address.key in seen:
                report.problems.append((line, f"duplicate of line {seen[address.key]}"))
                continue
            seen[address.key] = line
            details = None
            if mailing_list.kind == "group":
                details, problem = _group_details(row, columns)
                if problem:
                    report.problems.append((line, problem))
                    continue
            if suppression.is_suppressed(address.key):
                report.problems.append((line, "address was erased or bounced; not imported"))
                continue
            outcome = _import_one(address, name, mailing_list, consent_source, info, now, details)
            if outcome == "imported":
                report.imported += 1
            elif outcome == "unchanged":
                report.unchanged += 1
            else:
                report.problems.append((line, outcome))
        db.session.commit()
    except (UnicodeDecodeError, csv.Error) as exc:
        db.session.rollback()
        raise ImportError_(_unreadable(exc, reader.line_num + 1)) from None
    except Exception:
        db.session.rollback()
        raise
    return report


def _unreadable(exc: Exception, line: int) -> str:
    """Why the file cannot be read at all (nothing of it is imported)."""
    if isinstance(exc, UnicodeDecodeError):
        return f"line {line}: the file is not UTF-8 (save it as 'CSV UTF-8'); nothing was imported"
    return f"line {line}: not valid CSV ({exc}); nothing was imported"


def _group_details(row: dict, columns: dict) -> tuple[tuple[str, str, str] | None, str | None]:
    """A group member's (organization, institution key, function) from the row, or a problem.

    The institution may be written as the key or the Czech label of INSTITUTION_TYPES.
    """

    def cell(column: str) -> str:
        value = row.get(columns[column]) if column in columns else None
        return value.strip() if isinstance(value, str) else ""

    institution = institution_key(cell("institution"))
    if institution is None:
        return None, f"unknown institution type {cell('institution')!r}"
    try:
        return clean_details(cell("organization"), institution, cell("function")), None
    except MembershipError:
        return None, "organization or function too long or with control characters"


def _import_one(address, name, mailing_list, consent_source, info, now, details=None) -> str:
    subscriber = actions.get_or_create_subscriber(address, name)
    subscription = actions.subscription_for(subscriber, mailing_list)
    if subscription is not None:
        if subscription.status == "confirmed":
            if details is not None and any(details):
                # The file knows more about a member than the group did: keep it.
                _set_details(subscription, details)
            return "unchanged"
        if subscription.status in ("unsubscribed", "bounced"):
            # A withdrawal here outranks consent given elsewhere earlier.
            return f"address is {subscription.status} on this list; not re-added"
    if withdrew_from(subscriber, mailing_list):
        # Also when a later sign-up (anyone can type an address) left it pending.
        return "address is unsubscribed on this list; not re-added"
    if subscription is None:
        subscription = Subscription(mailing_list=mailing_list, subscribed_at=now)
        subscriber.subscriptions.append(subscription)
    subscription.status = "confirmed"
    subscription.confirmed_at = now
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
            "subscribed_at": _iso(subscription.subscribed_at),
            "confirmed_at": _iso(subscription.confirmed_at),
            "unsubscribed_at": _iso(subscription.unsubscribed_at),
        }


def export_subscribers(mailing_list: MailingList, stream: TextIO) -> None:
    writer = csv.DictWriter(stream, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in export_rows(mailing_list):
        writer.writerow(row)


def _iso(value) -> str:
    return value.isoformat(timespec="seconds") + "Z" if value is not None else ""
