"""The consent ledger: append-only in the database itself, and chained by hashes.

`consent_event` (and the `consent_text` rows its events point to) is evidence;
the ORM refusing edits (models.AppendOnlyViolation) stops only mistakes made
through the ORM. Here the database refuses them too:

- **Triggers** on PostgreSQL and SQLite refuse every UPDATE of either table,
  and every DELETE (and, on PostgreSQL, TRUNCATE) unless the connection's
  current transaction opened the one sanctioned path, `purging()`. Retention
  (workers/retention.py) and erasure (subscriptions.actions.erase) use it to
  delete people whole; nothing else should.
  On PostgreSQL `purging()` is `SET LOCAL zpravodaj.ledger_purge = 'on'`: a
  setting of the transaction, so it ends with its commit or rollback, and the
  trigger reads it with `current_setting(..., true)`. On SQLite, which has no
  such settings, the trigger calls `zpravodaj_ledger_purge()`, a function
  registered on every connection the service opens; it answers from a flag
  kept with that connection (in its pool record), which `purging()` raises and
  always lowers again. Another program (the `sqlite3` shell) has no such
  function, so its DELETE fails: the guard fails closed.
  The triggers are installed by the migration 5c1f0e7a2b9d and, for
  `db.create_all()` (tests, `zpravodaj dev`), by DDL events on the tables;
  both use the statements below. An Alembic batch migration that rebuilds one
  of the tables on SQLite drops its triggers: such a migration must call
  `install` again.
- **A hash chain**: each event stores `previous_hash`, the `event_hash` of the
  subscriber's event before it (none for the first), and its own `event_hash`,
  a SHA-256 over `previous_hash` and every field, the consent texts by their
  SHA-256. It is computed in one place, `_chain` (on insert, holding the
  subscriber's row lock so two transactions never chain to the same event).
  `verify()` (`zpravodaj consent verify`) recomputes every link: an edited,
  inserted or deleted event breaks the chain at the next event of that person.
  Deleting a person's whole history, or only their newest events, leaves no
  broken link; the triggers are what stands against that.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import click
from sqlalchemy import DDL, Connection, event, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.orm import Mapper, Session, UOWTransaction, object_session, scoped_session
from sqlalchemy.pool import ConnectionPoolEntry

from .cli_language import gettext as _
from .cli_language import lazy_gettext as _l
from .cli_language import ngettext
from .clock import utcnow
from .extensions import db
from .models import ConsentEvent, ConsentText

PURGE_SETTING = "zpravodaj.ledger_purge"
SQLITE_PURGE_FUNCTION = "zpravodaj_ledger_purge"
_PURGE_FLAG = "zpravodaj_ledger_purge"  # key in a pooled connection's info
REFUSED = "zpravodaj: the consent ledger is append-only"
GUARDED_TABLES = ("consent_text", "consent_event")

POSTGRESQL_FUNCTION = f"""
CREATE OR REPLACE FUNCTION zpravodaj_ledger_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'TRUNCATE')
       AND coalesce(current_setting('{PURGE_SETTING}', true), '') = 'on' THEN
        IF TG_LEVEL = 'ROW' THEN
            RETURN OLD;
        END IF;
        RETURN NULL;
    END IF;
    RAISE EXCEPTION USING
        MESSAGE = '{REFUSED}: ' || TG_OP || ' on ' || TG_TABLE_NAME || ' refused',
        ERRCODE = 'restrict_violation';
END
$$
"""


def _postgresql_triggers(table: str) -> list[str]:
    return [
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION zpravodaj_ledger_guard()",
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION zpravodaj_ledger_guard()",
    ]


def _sqlite_triggers(table: str) -> list[str]:
    return [
        f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
        f"BEGIN SELECT RAISE(ABORT, '{REFUSED}: UPDATE on {table} refused'); END",
        f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
        f"WHEN NOT {SQLITE_PURGE_FUNCTION}() "
        f"BEGIN SELECT RAISE(ABORT, '{REFUSED}: DELETE on {table} refused'); END",
    ]


def trigger_statements(dialect: str, table: str) -> list[str]:
    """The DDL that guards `table` on `dialect` (postgresql or sqlite)."""
    if dialect == "postgresql":
        return [POSTGRESQL_FUNCTION, *_postgresql_triggers(table)]
    if dialect == "sqlite":
        return _sqlite_triggers(table)
    return []


def trigger_names(dialect: str, table: str) -> list[str]:
    suffixes = (
        ("append_only", "no_truncate") if dialect == "postgresql" else ("no_update", "no_delete")
    )
    return [f"{table}_{suffix}" for suffix in suffixes]


def install(connection: Connection) -> None:
    """Create the triggers on both tables (the migration; tests that dropped them)."""
    dialect = connection.dialect.name
    for table in GUARDED_TABLES:
        for statement in trigger_statements(dialect, table):
            connection.exec_driver_sql(statement)


def uninstall(connection: Connection) -> None:
    """Drop the triggers (the migration's downgrade; tests that play the attacker)."""
    dialect = connection.dialect.name
    for table in GUARDED_TABLES:
        for name in trigger_names(dialect, table):
            on = f" ON {table}" if dialect == "postgresql" else ""
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}{on}")


def _install_on_create(table_name: str) -> None:
    table = db.metadata.tables[table_name]
    for dialect in ("postgresql", "sqlite"):
        for statement in trigger_statements(dialect, table_name):
            event.listen(table, "after_create", DDL(statement).execute_if(dialect=dialect))


for _name in GUARDED_TABLES:
    _install_on_create(_name)


@event.listens_for(Engine, "connect")
def _register_sqlite_function(
    dbapi_connection: DBAPIConnection, connection_record: ConnectionPoolEntry
) -> None:
    """Give every SQLite connection the function the delete trigger asks."""
    if not type(dbapi_connection).__module__.startswith("sqlite3"):
        return
    info = connection_record.info
    info[_PURGE_FLAG] = False
    dbapi_connection.create_function(
        SQLITE_PURGE_FUNCTION, 0, lambda: 1 if info.get(_PURGE_FLAG) else 0
    )


@contextmanager
def purging(session_or_connection: Session | scoped_session | Connection) -> Iterator[None]:
    """Within: this transaction may delete consent events and texts (never update them).

    The one path for retention and erasure, which delete people whole. On
    PostgreSQL the setting also ends with the transaction; if the block fails,
    the rollback that follows ends it.
    """
    connection = (
        session_or_connection
        if isinstance(session_or_connection, Connection)
        else session_or_connection.connection()
    )
    if connection.dialect.name == "postgresql":
        connection.execute(text(f"SET LOCAL {PURGE_SETTING} = 'on'"))
        yield
        connection.execute(text(f"SET LOCAL {PURGE_SETTING} = 'off'"))
        return
    info = connection.connection.info
    info[_PURGE_FLAG] = True
    try:
        yield
    finally:
        info[_PURGE_FLAG] = False


# --- the hash chain ------------------------------------------------------------------------

CHAIN_VERSION = 1
_HEADS = "zpravodaj_ledger_heads"  # Session.info: each subscriber's newest hash in this flush


def _moment(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds")


def event_hash(previous: str | None, fields: Mapping[str, Any]) -> str:
    """The SHA-256 that seals one event to the one before it (format version 1).

    `fields` are the event's columns, with `occurred_at` a datetime and the two
    texts given as their SHA-256 (`consent_text`, `privacy_text`). The format
    is the evidence's: changing it means a new CHAIN_VERSION, never an edit.
    """
    payload = {
        "v": CHAIN_VERSION,
        "previous": previous,
        "subscriber_id": fields["subscriber_id"],
        "list_id": fields["list_id"],
        "action": _str(fields["action"]),
        "channel": _str(fields["channel"]),
        "occurred_at": _moment(fields["occurred_at"]),
        "ip": fields["ip"],
        "user_agent": fields["user_agent"],
        "origin": fields["origin"],
        "consent_text": fields["consent_text"],
        "privacy_text": fields["privacy_text"],
        "message_id": fields["message_id"],
        "detail": fields["detail"],
    }
    encoded = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode()).hexdigest()


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


HASHED_COLUMNS = (
    "subscriber_id",
    "list_id",
    "action",
    "channel",
    "occurred_at",
    "ip",
    "user_agent",
    "origin",
    "message_id",
    "detail",
)


@event.listens_for(Session, "before_flush")
def _new_flush(session: Session, flush_context: UOWTransaction, instances: object) -> None:
    session.info[_HEADS] = {}


@event.listens_for(ConsentEvent, "before_insert")
def _chain(mapper: Mapper[ConsentEvent], connection: Connection, target: ConsentEvent) -> None:
    """Seal a new event to the subscriber's previous one (the one place hashes are made)."""
    if target.occurred_at is None:
        target.occurred_at = utcnow()
    session = object_session(target)
    heads: dict[int, str] = session.info.setdefault(_HEADS, {}) if session else {}
    subscriber_id = target.subscriber_id
    previous: str | None  # None: the subscriber's first event
    if subscriber_id in heads:
        previous = heads[subscriber_id]
    else:
        if connection.dialect.name == "postgresql":
            # The subscriber's row lock (a sign-up takes the same) queues a second
            # transaction adding to this person's chain until this one commits.
            # SQLite has one writer at a time: the second fails and retries.
            connection.execute(
                text("SELECT id FROM subscriber WHERE id = :id FOR UPDATE"), {"id": subscriber_id}
            )
        previous = connection.execute(
            select(ConsentEvent.event_hash)
            .where(ConsentEvent.subscriber_id == subscriber_id)
            .order_by(ConsentEvent.id.desc())
            .limit(1)
        ).scalar()
    fields = {column: getattr(target, column) for column in HASHED_COLUMNS}
    fields["consent_text"] = _text_hash(connection, target.consent_text_id)
    fields["privacy_text"] = _text_hash(connection, target.privacy_text_id)
    target.previous_hash = previous
    target.event_hash = event_hash(previous, fields)
    heads[subscriber_id] = target.event_hash


def _text_hash(connection: Connection, text_id: int | None) -> str | None:
    if text_id is None:
        return None
    return connection.execute(select(ConsentText.sha256).where(ConsentText.id == text_id)).scalar()


# --- verification --------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What `verify` found: how many events it checked, and the first broken link if any."""

    events: int
    broken_event_id: int | None = None
    broken_text_id: int | None = None
    reason: str = ""

    @property
    def intact(self) -> bool:
        return self.broken_event_id is None and self.broken_text_id is None


def verify(connection: Connection) -> Verdict:
    """Recompute every text's hash and every event's link, in id order; stop at the first break."""
    texts: dict[int, str] = {}
    for text_id, stored, body in connection.execute(
        select(ConsentText.id, ConsentText.sha256, ConsentText.text).order_by(ConsentText.id)
    ):
        if hashlib.sha256(body.encode()).hexdigest() != stored:
            return Verdict(0, broken_text_id=text_id, reason=_("text se neshoduje se svým otiskem"))
        texts[text_id] = stored
    heads: dict[int, str] = {}
    count = 0
    columns = [getattr(ConsentEvent, name) for name in HASHED_COLUMNS]
    rows = connection.execute(
        select(
            ConsentEvent.id,
            ConsentEvent.previous_hash,
            ConsentEvent.event_hash,
            ConsentEvent.consent_text_id,
            ConsentEvent.privacy_text_id,
            *columns,
        )
        .order_by(ConsentEvent.id)
        .execution_options(yield_per=1000)
    )
    for row in rows:
        fields = {name: getattr(row, name) for name in HASHED_COLUMNS}
        fields["consent_text"] = texts.get(row.consent_text_id)
        fields["privacy_text"] = texts.get(row.privacy_text_id)
        expected_previous = heads.get(row.subscriber_id)
        if row.previous_hash != expected_previous:
            return Verdict(
                count,
                row.id,
                reason=_("nenavazuje na předchozí událost téže osoby (chybí nebo přebývá)"),
            )
        if row.event_hash != event_hash(row.previous_hash, fields):
            return Verdict(count, row.id, reason=_("obsah události byl změněn"))
        heads[row.subscriber_id] = row.event_hash
        count += 1
    return Verdict(count)


@click.group("consent", help=_l("Záznamy o souhlasu."))
def consent_group() -> None:
    pass


@consent_group.command(
    "verify",
    help=_l(
        "Zkontroluje řetězec otisků událostí souhlasu a uložené texty; u prvního porušeného "
        "místa skončí kódem 1."
    ),
)
def consent_verify() -> None:
    """Verify the ledger; the first broken link is named on stderr."""
    with db.engine.connect() as connection:
        verdict = verify(connection)
    if verdict.intact:
        intact = ngettext(
            "Záznamy o souhlasu jsou neporušené: zkontrolována %(num)d událost.",
            "Záznamy o souhlasu jsou neporušené: zkontrolováno %(num)d událostí.",
            verdict.events,
        )
        click.echo(intact)
        return
    if verdict.broken_text_id is not None:
        broken = _(
            "Porušeno: uložený text č. %(id)s: %(reason)s.",
            id=verdict.broken_text_id,
            reason=verdict.reason,
        )
    else:
        broken = ngettext(
            "Porušeno u události č. %(id)s: %(reason)s (předtím v pořádku %(num)d událost).",
            "Porušeno u události č. %(id)s: %(reason)s (předtím v pořádku %(num)d událostí).",
            verdict.events,
            id=verdict.broken_event_id,
            reason=verdict.reason,
        )
    click.echo(broken, err=True)
    sys.exit(1)
