"""Importing already-consented subscribers from a CSV, a chunk of rows per transaction.

The CLI (`zpravodaj subscribers import`) and the admin upload's background
job (workers/imports.py) both run `import_csv`. A line is judged as it always
was, in the same order and Czech words (translated where shown): an invalid address, a name with
control characters, an address an earlier line had, a working-group member's
unknown institution (the file's own problems, `Importer.check`); then an
erased, bounced or withdrawn address (the suppression list), someone who left
the list or withdrew from it, someone already subscribed (the database's,
`Importer.write`).

Speed (issue 14): where the import used to ask the database four or five
questions per line and flush ORM objects one by one, a chunk of CHUNK_ROWS
lines now costs a fixed handful of statements: one read each for the
suppressions, the people and their subscriptions to this list, the
withdrawals and the heads of their consent chains, then one multi-row INSERT
each (SQLAlchemy's "insertmanyvalues" batches; `RETURNING` for the new
people's ids) for people, subscriptions and consent events. The consent
events are chained by hash exactly as `ledger._chain` would (the same
`ledger.event_hash`), with the people's rows locked first on PostgreSQL.
The file is read and checked a chunk ahead in a thread of its own, so the
next chunk's addresses are validated while the database writes this one.

Each chunk commits on its own (`commit_with_retry`: a concurrent sign-up of
the same new address makes the chunk run again and find that person), so a
large import never holds the database's write lock (SQLite) or thousands of
row locks (PostgreSQL) for long, and the progress a job reports is the work
that landed. A file that cannot be read is refused before any row is written
(`count_rows` reads it once first); an import interrupted after some chunks
keeps them, and running it again reports those people as already subscribed.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, TypeVar

from flask import current_app
from sqlalchemy import ARRAY, ColumnElement, DateTime, and_, any_, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute

from .. import ledger
from ..addresses import Address, address_hashes
from ..clock import utcnow
from ..consent import WITHDRAWING_ACTIONS
from ..database import commit_with_retry
from ..extensions import db
from ..groups.membership import MembershipError, clean_details
from ..models import (
    ConsentEvent,
    MailingList,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    Suppression,
    new_public_key,
)
from ..people_csv import ImportRefused, PeopleCsv
from ..stored_messages import N_
from .forms import name_problem

# Lines per transaction: big enough that the per-statement and per-commit costs
# are paid rarely, small enough that no transaction holds locks for long.
CHUNK_ROWS = 1000

# Czech, as an import's report stores them; `stored_messages.shown` translates them when shown.
CONSENT_SOURCE_REQUIRED = N_("Uveďte, kde a kdy lidé se zasíláním souhlasili.")
NAME_REFUSED = N_("jméno je příliš dlouhé nebo obsahuje řídicí znaky")
DETAILS_REFUSED = N_("organizace nebo funkce je příliš dlouhá nebo obsahuje řídicí znaky")
SUPPRESSED = N_("adresa byla vymazána nebo je nedoručitelná; neimportováno")
# Why a line is skipped when the list already knows the address, by its status there.
NOT_READDED: dict[str, str] = {
    SubscriptionStatus.UNSUBSCRIBED: N_("adresa se z tohoto seznamu odhlásila; znovu nepřidáno"),
    SubscriptionStatus.BOUNCED: N_("adresa je na tomto seznamu nedoručitelná; znovu nepřidáno"),
}

Details = tuple[str, str, str]  # a group member's organization, institution key, function
Problem = tuple[int, str]  # (line number, why it was skipped)


@dataclass
class ImportReport:
    """What an import (or one chunk of it) did; `problems` by line number."""

    rows: int = 0
    imported: int = 0
    unchanged: int = 0
    problems: list[Problem] = field(default_factory=list)

    def add(self, other: ImportReport) -> None:
        self.rows += other.rows
        self.imported += other.imported
        self.unchanged += other.unchanged
        self.problems.extend(other.problems)


@dataclass(frozen=True)
class Line:
    """A line that passed the checks the file alone allows."""

    number: int
    address: Address
    name: str
    details: Details | None
    hashes: list[str]  # the address's keyed hashes, as the suppression list has them


@dataclass
class Known:
    """A person the database already has, and their subscription to the list (if any)."""

    subscriber_id: int
    subscription_id: int | None
    status: str | None
    details: Details


class Importer:
    """Judges and writes the lines of one import into one list."""

    def __init__(self, mailing_list: MailingList, consent_source: str) -> None:
        consent_source = consent_source.strip()
        if not consent_source:
            raise ImportRefused(CONSENT_SOURCE_REQUIRED)
        # Plain values: a rolled-back chunk expires the ORM objects.
        self.list_id = mailing_list.id
        self.group = mailing_list.kind == "group"
        self.consent_source = consent_source

    def check(self, people: PeopleCsv, number: int, row: dict[str, Any]) -> Line | None:
        """The line, or None with its problem noted in `people` (the file's own checks)."""
        address = people.address(number, row)
        if address is None:
            return None
        name = people.cell(row, "name")
        if name_problem(name):
            people.skip(number, NAME_REFUSED)
            return None
        if not people.first_time(number, address):
            return None
        details = None
        if self.group:
            details = _group_details(people, number, row)
            if details is None:
                return None
        return Line(number, address, name, details, address_hashes(address.key))

    def write(self, lines: list[Line]) -> ImportReport:
        """Import the lines (the caller commits); the database's verdicts in the report."""
        report = ImportReport()
        now = utcnow()
        lines = self._unsuppressed(lines, report)
        known = self._known(lines)
        withdrawn = self._withdrawn(
            [k.subscriber_id for k in known.values() if k.status not in _SETTLED]
        )
        new_people: list[Line] = []
        new_subscriptions: list[tuple[int, Line]] = []
        confirmations: list[tuple[Known, Line]] = []
        detail_updates: list[tuple[Known, Line]] = []
        for line in lines:
            person = known.get(line.address.key)
            if person is None:
                new_people.append(line)
                continue
            if person.status == SubscriptionStatus.CONFIRMED:
                report.unchanged += 1
                if line.details is not None and any(line.details):
                    # The file knows more about a member than the group did: keep it.
                    detail_updates.append((person, line))
            elif person.status in NOT_READDED:
                # A withdrawal here outranks consent given elsewhere earlier.
                report.problems.append((line.number, NOT_READDED[person.status]))
            elif person.subscriber_id in withdrawn:
                # Also when a later sign-up (anyone can type an address) left it pending.
                report.problems.append((line.number, NOT_READDED[SubscriptionStatus.UNSUBSCRIBED]))
            elif person.subscription_id is None:
                new_subscriptions.append((person.subscriber_id, line))
            else:
                confirmations.append((person, line))
        new_subscriptions += self._insert_people(new_people, now)
        self._insert_subscriptions(new_subscriptions, now)
        self._update_subscriptions(confirmations, detail_updates, now)
        self._record_consent(
            [sid for sid, _ in new_subscriptions] + [k.subscriber_id for k, _ in confirmations],
            {k.subscriber_id for k in known.values()},
            now,
        )
        report.imported = len(new_subscriptions) + len(confirmations)
        return report

    # --- the reads: a handful of statements per chunk ----------------------------------

    def _unsuppressed(self, lines: list[Line], report: ImportReport) -> list[Line]:
        """The lines whose address is on no suppression list (under any key)."""
        wanted = [digest for line in lines for digest in line.hashes]
        suppressed: set[str] = set()
        for part in _parts(wanted):
            suppressed.update(
                db.session.scalars(
                    select(Suppression.address_hash).where(_among(Suppression.address_hash, part))
                )
            )
        kept = []
        for line in lines:
            if suppressed.intersection(line.hashes):
                report.problems.append((line.number, SUPPRESSED))
            else:
                kept.append(line)
        return kept

    def _known(self, lines: list[Line]) -> dict[str, Known]:
        """The people already here, by address key, with their subscription to this list.

        On PostgreSQL their rows are locked, as a sign-up locks a subscriber:
        no other transaction adds to their consent chains until this commits.
        """
        found: dict[str, Known] = {}
        keys = [line.address.key for line in lines]
        for part in _parts(keys):
            query = (
                select(
                    Subscriber.email_key, Subscriber.id, Subscription.id, Subscription.status,
                    Subscription.organization, Subscription.institution, Subscription.function,
                )
                .outerjoin(
                    Subscription,
                    and_(
                        Subscription.subscriber_id == Subscriber.id,
                        Subscription.list_id == self.list_id,
                    ),
                )
                .where(_among(Subscriber.email_key, part))
                .order_by(Subscriber.id)
                .with_for_update(of=Subscriber)
            )  # fmt: skip
            for (
                key,
                subscriber_id,
                sub_id,
                status,
                org,
                institution,
                function,
            ) in db.session.execute(query):
                found[key] = Known(
                    subscriber_id, sub_id, status, (org or "", institution or "", function or "")
                )
        return found

    def _withdrawn(self, subscriber_ids: list[int]) -> set[int]:
        """Those whose history holds a withdrawal from this list."""
        withdrawn: set[int] = set()
        for part in _parts(subscriber_ids):
            withdrawn.update(
                db.session.scalars(
                    select(ConsentEvent.subscriber_id)
                    .where(
                        _among(ConsentEvent.subscriber_id, part),
                        ConsentEvent.list_id == self.list_id,
                        ConsentEvent.action.in_(WITHDRAWING_ACTIONS),
                    )
                    .distinct()
                )
            )
        return withdrawn

    # --- the writes: one multi-row statement each ---------------------------------------

    def _insert_people(self, lines: list[Line], now: datetime) -> list[tuple[int, Line]]:
        """New subscribers; returns their ids with their lines (read back by address key:
        one SELECT where RETURNING would make SQLite insert row by row)."""
        if not lines:
            return []
        write_rows(
            "subscriber",
            ("public_key", "email", "email_key", "ascii_email", "name", "created_at"),
            [
                (
                    new_public_key(), line.address.email, line.address.key,
                    line.address.ascii_email, line.name, now,
                )
                for line in lines
            ],
        )  # fmt: skip
        ids: dict[str, int] = {}
        for part in _parts([line.address.key for line in lines]):
            for key, subscriber_id in db.session.execute(
                select(Subscriber.email_key, Subscriber.id).where(
                    _among(Subscriber.email_key, part)
                )
            ):
                ids[key] = subscriber_id
        return [(ids[line.address.key], line) for line in lines]

    def _insert_subscriptions(self, rows: list[tuple[int, Line]], now: datetime) -> None:
        if not rows:
            return
        confirmed = SubscriptionStatus.CONFIRMED.value
        write_rows(
            "subscription",
            ("subscriber_id", "list_id", "status", "subscribed_at", "confirmed_at",
             "organization", "institution", "function"),
            [
                (subscriber_id, self.list_id, confirmed, now, now, *(line.details or ("", "", "")))
                for subscriber_id, line in rows
            ],
        )  # fmt: skip

    def _update_subscriptions(
        self,
        confirmations: list[tuple[Known, Line]],
        detail_updates: list[tuple[Known, Line]],
        now: datetime,
    ) -> None:
        """Confirm pending (or requested, declined) subscriptions directly
        (`Subscription.confirm_directly`); fill in members' details the file knows.

        ORM bulk UPDATEs by primary key: one executemany each."""
        if confirmations:
            db.session.execute(
                update(Subscription),
                [
                    {
                        **_merged(known, line),
                        "status": SubscriptionStatus.CONFIRMED.value,
                        "confirmed_at": now,
                        "unsubscribed_at": None,
                    }
                    for known, line in confirmations
                ],
            )
        if detail_updates:
            db.session.execute(
                update(Subscription), [_merged(known, line) for known, line in detail_updates]
            )

    def _record_consent(self, subscriber_ids: list[int], known: set[int], now: datetime) -> None:
        """One "import" step per person, each sealed to the person's previous one
        with `ledger.event_hash`, as `ledger._chain` seals an event the ORM inserts.
        Only people the database had before this chunk (`known`) can have one."""
        if not subscriber_ids:
            return
        heads = _chain_heads([i for i in subscriber_ids if i in known])
        rows = []
        for subscriber_id in subscriber_ids:
            previous = heads.get(subscriber_id)
            fields = {
                "subscriber_id": subscriber_id, "list_id": self.list_id, "action": "import",
                "channel": "import", "occurred_at": now, "ip": None, "user_agent": None,
                "origin": None, "consent_text": None, "privacy_text": None,
                "message_id": None, "detail": self.consent_source,
            }  # fmt: skip
            rows.append(
                (subscriber_id, self.list_id, "import", "import", now, self.consent_source,
                 previous, ledger.event_hash(previous, fields))
            )  # fmt: skip
        write_rows(
            "consent_event",
            ("subscriber_id", "list_id", "action", "channel", "occurred_at", "detail",
             "previous_hash", "event_hash"),
            rows,
        )  # fmt: skip


def write_rows(table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    """Rows straight to the driver, in the session's transaction: COPY on PostgreSQL,
    one `executemany` elsewhere. Every NOT NULL column must be given (no ORM defaults).

    SQLAlchemy's own executemany spends more per row on parameters than the
    database spends writing it; a datetime is converted once per chunk here.
    """
    connection = db.session.connection()
    dialect = connection.dialect
    listed = ", ".join(columns)
    if dialect.name == "postgresql":
        driver = connection.connection.driver_connection
        assert driver is not None  # an open session connection
        try:
            with (
                driver.cursor() as cursor,
                cursor.copy(f"COPY {table} ({listed}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row)
        except driver.IntegrityError as exc:  # a concurrent twin: commit_with_retry runs again
            raise IntegrityError(f"COPY {table}", None, exc) from exc
        return
    stamp = DateTime().dialect_impl(dialect).bind_processor(dialect)
    if stamp is not None:
        rows = [tuple(stamp(v) if isinstance(v, datetime) else v for v in row) for row in rows]
    marks = ", ".join(["?" if dialect.paramstyle == "qmark" else "%s"] * len(columns))
    connection.exec_driver_sql(f"INSERT INTO {table} ({listed}) VALUES ({marks})", rows)


# Statuses decided without reading the history: confirmed stays, a withdrawal here stays.
_SETTLED = (SubscriptionStatus.CONFIRMED, *NOT_READDED)
# Values per IN (...): a chunk's worth in one statement, well under SQLite's
# (32,766) and PostgreSQL's (65,535) limits on parameters.
_IN_LIMIT = 4 * CHUNK_ROWS

T = TypeVar("T")


def _parts(values: list[T]) -> Iterator[list[T]]:
    size = _IN_LIMIT
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _among(column: InstrumentedAttribute[T], values: list[T]) -> ColumnElement[bool]:
    """`column IN (values)`; on PostgreSQL `column = ANY(:array)`, one parameter: psycopg
    parses a query text with a thousand parameters anew each time (~10 ms)."""
    if db.session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(values)


def _chain_heads(subscriber_ids: list[int]) -> dict[int, str]:
    """Each person's newest consent event hash (as `ledger._chain` reads it)."""
    heads: dict[int, str] = {}
    for part in _parts(subscriber_ids):
        newest = (
            select(func.max(ConsentEvent.id))
            .where(_among(ConsentEvent.subscriber_id, part))
            .group_by(ConsentEvent.subscriber_id)
        )
        for subscriber_id, event_hash in db.session.execute(
            select(ConsentEvent.subscriber_id, ConsentEvent.event_hash).where(
                ConsentEvent.id.in_(newest)
            )
        ):
            heads[subscriber_id] = event_hash
    return heads


def _detail_columns(details: Details) -> dict[str, str]:
    organization, institution, function = details
    return {"organization": organization, "institution": institution, "function": function}


def _merged(known: Known, line: Line) -> dict[str, Any]:
    """A subscription's details with what the line adds (`x or existing`, as before)."""
    new = line.details or ("", "", "")
    merged = tuple(mine or theirs for mine, theirs in zip(new, known.details, strict=True))
    return {"id": known.subscription_id, **_detail_columns(merged)}  # type: ignore[arg-type]


def _group_details(people: PeopleCsv, number: int, row: dict[str, Any]) -> Details | None:
    """A group member's (organization, institution key, function); None when refused."""
    institution = people.institution(number, row)
    if institution is None:
        return None
    try:
        return clean_details(
            people.cell(row, "organization"), institution, people.cell(row, "function")
        )
    except MembershipError:
        people.skip(number, DETAILS_REFUSED)
        return None


# --- running an import --------------------------------------------------------------


def chunks(rows: Iterable[T], size: int | None = None) -> Iterator[list[T]]:
    """`rows` in lists of `size` (default CHUNK_ROWS; the last one shorter)."""
    size = size or CHUNK_ROWS
    chunk: list[T] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def import_csv(
    stream: IO[str],
    mailing_list: MailingList,
    consent_source: str,
    *,
    skip: int = 0,
    on_chunk: Callable[[ImportReport], None] | None = None,
) -> ImportReport:
    """Import a CSV, a chunk per transaction; returns what it did (from line `skip` on).

    `skip` data rows are passed over (an interrupted import resuming), though
    read, so that a later line repeating one of their addresses is still
    reported as a repetition. `on_chunk` runs inside each chunk's transaction
    with that chunk's report (the admin job keeps its progress row there).
    ImportRefused when the file cannot be read (`count_rows` catches that first).
    """
    importer = Importer(mailing_list, consent_source)
    people = PeopleCsv(stream)
    rows = people.rows()
    for number, row in _first(rows, skip):
        importer.check(people, number, row)
    people.problems.clear()  # reported when those rows were imported
    report = ImportReport()
    for lines, count, file_problems in _checked_chunks(importer, people, rows):
        report.add(_write_chunk(importer, lines, count, file_problems, on_chunk))
    return report


CheckedChunk = tuple[list[Line], int, list[Problem]]  # lines, rows read, the file's problems


def _checked_chunks(
    importer: Importer, people: PeopleCsv, rows: Iterator[tuple[int, dict]]
) -> Iterator[CheckedChunk]:
    """The file's chunks, read and checked one ahead in a thread of their own: the next
    chunk's addresses are validated while the database writes this one (psycopg and
    sqlite3 let go of the GIL while they wait). One task at a time, so the reader and
    `people` are only ever used by one thread at a time."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    pieces = chunks(rows)

    def read_and_check() -> CheckedChunk | None:
        chunk = next(pieces, None)
        if chunk is None:
            return None
        with app.app_context():  # the address checks read the app's settings
            lines = [line for number, row in chunk if (line := importer.check(people, number, row))]
        problems = list(people.problems)
        people.problems.clear()
        return lines, len(chunk), problems

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-check") as pool:
        ahead = pool.submit(read_and_check)
        while (checked := ahead.result()) is not None:  # the file's ImportRefused comes here
            ahead = pool.submit(read_and_check)
            yield checked


def _write_chunk(
    importer: Importer,
    lines: list[Line],
    rows: int,
    file_problems: list[Problem],
    on_chunk: Callable[[ImportReport], None] | None,
) -> ImportReport:
    """Write one chunk and commit; again from the start after an IntegrityError."""
    done: list[ImportReport] = []

    def work() -> None:
        done.clear()
        written = importer.write(lines)
        written.rows = rows
        written.problems = sorted(file_problems + written.problems)
        if on_chunk is not None:
            on_chunk(written)
        done.append(written)

    commit_with_retry(work)
    return done[0]


def _first(rows: Iterator[T], count: int) -> Iterator[T]:
    for _ in range(count):
        try:
            yield next(rows)
        except StopIteration:
            return


def count_rows(stream: IO[bytes]) -> int:
    """Read a CSV file through once: its data rows; ImportRefused when it cannot be imported.

    So that an unreadable file (not UTF-8, broken quoting, no `email` column)
    is refused before any row lands, as when an import was one transaction.
    """
    text = text_of(stream)
    try:
        return sum(1 for _ in PeopleCsv(text).rows())
    finally:
        text.detach()  # the caller's stream stays open, to be read again


def text_of(stream: IO[bytes]) -> io.TextIOWrapper:
    """A binary CSV as text the importer reads (UTF-8, with or without Excel's BOM)."""
    return io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
