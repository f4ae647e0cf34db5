"""CSV import and export of subscribers, shared by the CLI and the admin.

An import brings people who already consented elsewhere (a migration from
another service): they become confirmed, with the consent source recorded.
It runs a chunk of rows per transaction (importing.py); the admin upload runs
it in a worker (workers/imports.py), the CLI in its own process.

An export streams: rows are read from the database a thousand at a time as
plain tuples (no ORM objects) and written as they come, so a list of any size
never sits in memory whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import IO, TextIO

from sqlalchemy import func, select

from .. import people_csv
from ..clock import iso_utc
from ..extensions import db
from ..models import MailingList, Subscriber, Subscription, SubscriptionStatus
from .importing import ImportReport, import_csv

EXPORT_COLUMNS = ("email", "name", "status", "subscribed_at", "confirmed_at", "unsubscribed_at")
EXPORT_STATUS: dict[str, str] = {
    SubscriptionStatus.REQUESTED: SubscriptionStatus.PENDING,
    SubscriptionStatus.DECLINED: SubscriptionStatus.UNSUBSCRIBED,
}
# Rows fetched per round trip (a server-side cursor on PostgreSQL).
EXPORT_FETCH = 1000


def import_subscribers(
    stream: IO[str],
    mailing_list: MailingList,
    consent_source: str,
    *,
    on_rows: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import a CSV; invalid rows are reported by line number (in Czech) and skipped.

    ImportRefused when the file cannot be read at all, or has no consent
    source. `on_rows(n)` is called as each chunk of n rows is written (the
    command line's progress bar).
    """
    return import_csv(
        stream,
        mailing_list,
        consent_source,
        on_chunk=None if on_rows is None else lambda chunk: on_rows(chunk.rows),
    )


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
