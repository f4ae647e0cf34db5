"""The sign-up flow, in two halves: the web request records, a job acts.

`POST /subscribe` (routes.py) validates the form and then does the same
constant work for every address: one INSERT of a `SignupRequest` row, one
Redis round trip (rate_limits.py) that checks its rate limits and makes sure a
job is queued to process the stored rows (`workers.signup.process_signups`;
service/jobs.py, SIGNUP_DRAIN_QUEUED, says how no row is left without one),
and one commit (on SQLite the round trip comes before the INSERT, routes.py `_store`
says why). Everything that would
differ between a new, a pending, a confirmed or a suppressed address (the
subscriber and subscription rows, the consent event with its hash chain, the
confirmation or "already subscribed" mail, the hourly mail cap) runs in that
job, so neither the answer nor its timing tells whether an address is known
(issue 11, finding 8). It is also what makes a sign-up cheap: the web request
costs about one INSERT and one Redis round trip (issue 14).

Nothing is lost: a row whose hand-off failed (Redis down) or whose job died or
failed is stored all the same, and the reconciler queues a drain job for it
(workers/reconcile.py). Each row is claimed by locking and deleting it, in the
transaction that does its work: two runs cannot both act on it, two drain jobs
split the rows, and a run killed before its commit leaves the row for the next.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, delete, exists, select, text
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import PoolProxiedConnection

from ..addresses import Address
from ..clock import utcnow
from ..consent import RequestInfo
from ..database import DriverStatement, driver_error, sqlite_lock_path
from ..extensions import db
from ..models import ConsentText, ListKind, MailingList, SignupRequest, rows_matched
from ..request_values import bound
from . import actions

log = logging.getLogger(__name__)

# The request's statements, built once (and its INSERTs compiled once per app: `recording`).
_requests = SignupRequest.__table__
_lists = MailingList.__table__
_NEWSLETTERS_BY_SLUG = select(_lists.c.slug, _lists.c.id).where(
    _lists.c.slug.in_(bindparam("slugs", expanding=True)),
    _lists.c.kind == ListKind.NEWSLETTER.value,
)
# The common case, one list: an expanding IN renders its SQL anew on every run.
_NEWSLETTER_BY_SLUG = select(_lists.c.slug, _lists.c.id).where(
    _lists.c.slug == bindparam("slug"), _lists.c.kind == ListKind.NEWSLETTER.value
)
# The common case once the list's id is known to this process: the INSERT checks, in the
# same statement, that the id still is the newsletter of that slug, and writes nothing
# otherwise (the caller then looks the slug up as above). One statement, one round trip.
_FIELDS = (
    "email", "email_key", "ascii_email", "name", "list_ids", "consent_text_id",
    "channel", "ip", "user_agent", "origin", "language", "requested_at",
)  # fmt: skip
_FIELD_VALUES = [bindparam(f, type_=_requests.c[f].type) for f in _FIELDS]
_INSERT_REQUEST = (
    _requests.insert()
    .values(dict(zip(_FIELDS, _FIELD_VALUES, strict=True)))
    .returning(_requests.c.id)
)
_INSERT_IF_NEWSLETTER = (
    _requests.insert()
    .from_select(
        _FIELDS,
        select(*_FIELD_VALUES).where(
            exists().where(
                _lists.c.id == bindparam("list_id"),
                _lists.c.slug == bindparam("slug"),
                _lists.c.kind == ListKind.NEWSLETTER.value,
            )
        ),
        include_defaults=False,
    )
    .returning(_requests.c.id)
)
# Per app, slug -> id of the newsletters seen: a hint the INSERT above checks, never trusted.
_KNOWN_IDS = "zpravodaj_newsletter_ids"
_KNOWN_IDS_MAX = 1000


class Recording:
    """A sign-up's own transaction: its INSERT and its commit, on a connection of the
    engine's pool (`recording`), without SQLAlchemy's execution or the ORM session
    (database.DriverStatement says why; issue 14, twelfth round). What it does not
    commit is rolled back when the connection goes back to the pool."""

    def __init__(
        self,
        connection: PoolProxiedConnection,
        cursor: Any,
        dialect: Dialect,
        statements: _Statements,
    ) -> None:
        self._connection = connection
        self._cursor = cursor
        self._dialect = dialect
        self._statements = statements

    def insert(
        self,
        address: Address,
        name: str,
        list_ids: list[int],
        consent_text_id: int,
        info: RequestInfo,
        language: str,
    ) -> int:
        """Store the sign-up: the same for every address. The caller hands it over
        (rate_limits.check) and commits. Returns the request's id. `language` is the
        page's (service.i18n), which a new subscriber's mails will be written in."""
        values = _values(address, name, list_ids, consent_text_id, info, language)
        return self._execute(self._statements.insert, values)[0]

    def insert_for_known_list(
        self,
        slug: str,
        list_id: int,
        address: Address,
        name: str,
        consent_text_id: int,
        info: RequestInfo,
        language: str,
    ) -> int | None:
        """`insert` for one newsletter whose id this process has seen (`known_newsletter_id`),
        checked by the INSERT itself; None (nothing written) when the id is no longer that
        newsletter's: then the caller looks the slug up (`newsletter_ids`) as for any."""
        values = _values(address, name, [list_id], consent_text_id, info, language)
        values.update(list_id=list_id, slug=slug)
        row = self._execute(self._statements.insert_if_newsletter, values)
        return None if row is None else row[0]

    def commit(self) -> None:
        try:
            self._connection.commit()
        except self._dialect.loaded_dbapi.Error as error:
            raise driver_error(error, "COMMIT", self._dialect, self._connection) from error

    def _execute(self, statement: DriverStatement, values: dict[str, object]) -> Any:
        try:
            return statement.execute(self._cursor, values)
        except self._dialect.loaded_dbapi.Error as error:
            raise driver_error(error, statement.sql, self._dialect, self._connection) from error


@dataclass(frozen=True)
class _Statements:
    insert: DriverStatement
    insert_if_newsletter: DriverStatement


@contextmanager
def recording() -> Iterator[Recording]:
    """A `Recording` on a connection of the pool, given back (rolled back) at the end.

    A transaction the request's ORM session has open is committed first: what it wrote
    (a consent text stored on its first use) is what the row refers to, and on SQLite
    its write lock would hold this INSERT, on another connection, until SQLite's busy
    timeout ran out.
    """
    if db.session.registry.has() and db.session().in_transaction():
        db.session.commit()
    extensions = bound(current_app).extensions
    engine, statements = extensions.get(_STATEMENTS) or _compile_statements(extensions)
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        try:
            yield Recording(connection, cursor, engine.dialect, statements)
        finally:
            cursor.close()
    finally:
        connection.close()


_STATEMENTS = "zpravodaj_signup_statements"


def _compile_statements(extensions: dict[str, Any]) -> tuple[Engine, _Statements]:
    engine = db.engine
    dialect = engine.dialect
    found = extensions[_STATEMENTS] = (
        engine,
        _Statements(
            insert=DriverStatement(_INSERT_REQUEST, dialect, cached=("list_ids",)),
            insert_if_newsletter=DriverStatement(
                _INSERT_IF_NEWSLETTER, dialect, cached=("list_ids",)
            ),
        ),
    )
    return found


def known_newsletter_id(slug: str) -> int | None:
    """The id this process saw for the newsletter `slug` (a hint, never trusted: the INSERT
    of `Recording.insert_for_known_list` checks it); None when not known."""
    return bound(current_app).extensions.get(_KNOWN_IDS, {}).get(slug)


def limits_before_storing() -> bool:
    """Whether a sign-up checks its rate limits and hands its row over before it stores the
    row (SQLite: a write holds the database's one write lock, which must not wait on
    Redis), rather than in one Redis round trip after the INSERT, inside its transaction
    (PostgreSQL). routes.py `_store` says why."""
    extensions = bound(current_app).extensions
    found = extensions.get(_LIMITS_FIRST)
    if found is None:
        found = extensions[_LIMITS_FIRST] = db.engine.dialect.name == "sqlite"
    return found


_LIMITS_FIRST = "zpravodaj_signup_limits_first"

# How long a drain job waits for the sign-ups in flight before it reads anyway (those it
# then misses wait for the next job, which the next sign-up queues, or the reconciler).
IN_FLIGHT_WAIT_SECONDS = 0.2


@contextmanager
def in_flight() -> Iterator[bool]:
    """SQLite: while a sign-up is handed over but not yet committed, hold the sign-ups'
    lock file (beside the database) shared; yields whether it is held (not for a database
    without a file: the caller then hands over after its commit).

    The drain job takes the file exclusively once, after it cleared the hand-off mark and
    before it reads (`wait_for_sign_ups_in_flight`): a row handed over before that is
    committed (or rolled back) by then. Shared, so sign-ups never wait for each other on
    it, and two system calls where a hand-off after the commit cost a second Redis round
    trip (bench/README.md, eleventh round). A flock belongs to the open file, not to the
    thread: each thread opens its own (`WEB_THREADS`).
    """
    try:
        lock = _own_lock_file()
    except OSError as error:  # a missing directory, or no right to make the file
        log.warning("cannot open the sign-ups' lock file (%s); handing over after commits", error)
        lock = None
    if lock is None:
        yield False
        return
    fcntl.flock(lock, fcntl.LOCK_SH)
    try:
        yield True
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)


_lock_files = threading.local()  # this thread's (process id, path, open descriptor)


def _own_lock_file() -> int | None:
    path = _lock_path()
    if path is None:
        return None
    own = getattr(_lock_files, "held", None)
    if own is not None and own[0] == os.getpid() and own[1] == path:
        try:
            if os.stat(path).st_ino == os.fstat(own[2]).st_ino:
                return own[2]
        except FileNotFoundError:  # removed (a restore, a clean-up): the drain job makes anew
            pass
    if own is not None:
        _lock_files.held = None  # never closed twice: the number may be another file's then
        if own[0] == os.getpid():
            os.close(own[2])  # replaced, or another database's (an app of the test suite's)
    # A descriptor opened before a fork would share its lock with the parent's other
    # children: each process opens its own.
    _lock_files.held = (os.getpid(), path, _open_lock_file(path))
    return _lock_files.held[2]


def _lock_path() -> str | None:
    """The sign-ups' lock file of an SQLite database with a file; None otherwise."""
    extensions = bound(current_app).extensions
    path = extensions.get(_LOCK_PATH)
    if path is None:
        path = extensions[_LOCK_PATH] = sqlite_lock_path(db.engine.url, "signups") or ""
    return path or None


_LOCK_PATH = "zpravodaj_signup_lock_path"


def _values(
    address: Address,
    name: str,
    list_ids: list[int],
    consent_text_id: int,
    info: RequestInfo,
    language: str,
) -> dict[str, object]:
    return {
        "email": address.email,
        "email_key": address.key,
        "ascii_email": address.ascii_email,
        "name": name,
        "list_ids": tuple(list_ids),  # hashable: its JSON is remembered (_compile_statements)
        "consent_text_id": consent_text_id,
        "channel": info.channel,
        "ip": info.ip,
        "user_agent": info.user_agent,
        "origin": info.origin,
        "language": language,
        "requested_at": utcnow(),
    }


def newsletter_ids(slugs: list[str]) -> tuple[list[int], list[str]]:
    """(ids of the newsletters named, in the order given; the slugs that name none).

    The sign-up's own light version of actions.newsletters_by_slug: ids only,
    one Core query, no ORM objects.
    """
    wanted = list(dict.fromkeys(slugs))
    if len(wanted) == 1:
        rows = db.session.connection().execute(_NEWSLETTER_BY_SLUG, {"slug": wanted[0]})
    else:
        rows = db.session.connection().execute(_NEWSLETTERS_BY_SLUG, {"slugs": wanted})
    by_slug = {slug: list_id for slug, list_id in rows}
    known = current_app.extensions.setdefault(_KNOWN_IDS, {})
    if len(known) > _KNOWN_IDS_MAX:
        known.clear()
    for slug in wanted:  # what a later sign-up may try first (record_request_for_known_list)
        if slug in by_slug:
            known[slug] = by_slug[slug]
        else:
            known.pop(slug, None)
    return [by_slug[s] for s in wanted if s in by_slug], [s for s in wanted if s not in by_slug]


def process_request(request_id: int) -> actions.SignupResult | None:
    """Act on one stored sign-up (the job's work); None when another run did or is doing it.

    The row is claimed by locking it (`FOR UPDATE SKIP LOCKED`: a row another run
    holds is skipped, not waited for) and deleting it; the caller commits the
    deletion with the work, so the sign-up is done exactly once, however often
    the job runs.
    """
    row = db.session.scalar(
        select(SignupRequest)
        .where(SignupRequest.id == request_id)
        .with_for_update(skip_locked=True)
    )
    return None if row is None else act_on_request(row)


def claim_next_request(after: int) -> SignupRequest | None:
    """The oldest stored sign-up after id `after` that no other run holds, locked for
    this transaction (the drain job's next row; None when there is none).

    PostgreSQL: `FOR UPDATE SKIP LOCKED`, so two drain jobs take different rows and
    neither waits for the other; a run that dies or fails releases its row with its
    transaction, and a later run takes it. SQLite has one writer at a time and no row
    locks (the clause is left out): a row a concurrent run deleted first is skipped
    by `act_on_request`.
    """
    return db.session.scalar(
        select(SignupRequest)
        .where(SignupRequest.id > after)
        .order_by(SignupRequest.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )


def act_on_request(row: SignupRequest) -> actions.SignupResult | None:
    """Delete the claimed row and do its sign-up, in the caller's transaction; None when
    a concurrent run deleted it first (SQLite, where rows are not locked)."""
    claimed = rows_matched(
        delete(SignupRequest)
        .where(SignupRequest.id == row.id)
        .execution_options(synchronize_session=False)
    )
    if not claimed:
        db.session.expunge(row)
        return None
    db.session.expunge(row)
    lists = _newsletters(row.list_ids)
    consent_text = db.session.get(ConsentText, row.consent_text_id)
    if not lists or consent_text is None:
        return actions.SignupResult()  # the lists were deleted meanwhile: nothing to join
    info = RequestInfo(ip=row.ip, user_agent=row.user_agent, channel=row.channel, origin=row.origin)
    address = Address(email=row.email, ascii_email=row.ascii_email)
    return actions.signup(
        address, row.name, lists, info, consent_text, at=row.requested_at, language=row.language
    )


def _newsletters(list_ids: list[int]) -> list[MailingList]:
    """The newsletters among `list_ids`, in that order (a list may be gone since the request)."""
    ids = [i for i in list_ids if isinstance(i, int)]
    rows = db.session.scalars(
        select(MailingList).where(MailingList.id.in_(ids), MailingList.kind == ListKind.NEWSLETTER)
    )
    by_id = {m.id: m for m in rows}
    return [by_id[i] for i in dict.fromkeys(ids) if i in by_id]


def wait_for_sign_ups_in_flight() -> bool:
    """Wait until every sign-up transaction that has handed its row over has ended.

    A sign-up hands its row over before its commit: on PostgreSQL in one Redis round trip
    with its rate limits after its INSERT, on SQLite in that round trip before its INSERT
    (rate_limits.py, routes.py `_store`). The drain job clears the hand-off mark first and
    then calls this, so a row handed over before the mark was cleared is committed (or
    rolled back) when the job reads, and a row handed over after it finds the mark gone
    and queues the next job.

    PostgreSQL: a SHARE lock on the table waits for the transactions holding its ROW
    EXCLUSIVE lock (those that inserted) and is released at once. SQLite: the sign-ups'
    lock file, taken exclusively (`in_flight`), then an empty write, which waits for the
    one writer there can be (a web process of a release that wrote before its round trip).
    Either waits at most IN_FLIGHT_WAIT_SECONDS: new sign-ups queue behind PostgreSQL's
    waiting lock, and a steady stream of them can keep the file shared; a sign-up stuck
    longer is the next job's (the caller queues one). Whether it waited for them all.
    """
    connection = db.session.connection()
    waited = True
    if connection.dialect.name == "postgresql":
        milliseconds = max(1, int(IN_FLIGHT_WAIT_SECONDS * 1000))  # 0 would wait for ever
        connection.execute(text(f"SET LOCAL lock_timeout = '{milliseconds}ms'"))
        try:
            connection.execute(text("LOCK TABLE signup_request IN SHARE MODE"))
        except OperationalError:
            log.warning("sign-ups in flight held the table too long; not waiting for them")
            waited = False
    else:
        waited = _wait_for_the_lock_file()
        connection.execute(text("DELETE FROM signup_request WHERE 0 = 1"))
    db.session.rollback()
    return waited


def _wait_for_the_lock_file() -> bool:
    path = _lock_path()
    if path is None:
        return True
    deadline = time.monotonic() + IN_FLIGHT_WAIT_SECONDS
    try:
        lock = _open_lock_file(path)
    except OSError as error:
        log.warning("cannot open the sign-ups' lock file (%s); not waiting for them", error)
        return False
    try:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                # Polled: Linux grants new shared locks while an exclusive one waits.
                if time.monotonic() > deadline:
                    log.warning("sign-ups in flight held their lock file too long; not waiting")
                    return False
                lock_file_busy()
            else:
                fcntl.flock(lock, fcntl.LOCK_UN)
                return True
    finally:
        os.close(lock)


def _open_lock_file(path: str) -> int:
    """The lock file, opened for reading (a flock needs no more), made if missing: the web
    and the workers may run as users that cannot write each other's files."""
    return os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)


def lock_file_busy() -> None:
    """The drain job found a sign-up in flight: try again in a moment."""
    time.sleep(0.0005)
