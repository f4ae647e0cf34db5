"""Binding the database: Flask-SQLAlchemy plus SQLite settings for several processes."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import ConnectionPoolEntry

# The tables on db.metadata, and the consent ledger's triggers and hash chain.
# The delivery counters' triggers likewise (batch_counts.py), and the deletes that
# follow a deleted subscriber or batch to its deliveries (delivery_cascade.py).
from . import batch_counts, delivery_cascade, ledger, models  # noqa: F401
from .extensions import db


def init_app(app: Flask) -> None:
    db.init_app(app)


def commit_with_retry(work: Callable[[], object], attempts: int = 3) -> None:
    """Run `work` and commit; after an IntegrityError roll back and run it again.

    A concurrent request for the same address may insert the same row between
    our SELECT and INSERT; the next attempt finds that row. The last attempt's
    error is raised.
    """
    for attempt in range(attempts):
        try:
            work()
            db.session.commit()
            return
        except IntegrityError:
            db.session.rollback()
            if attempt == attempts - 1:
                raise


def sqlite_lock_path(url: URL, purpose: str) -> str | None:
    """A lock file beside an SQLite database's file, for the processes that share it to
    queue or wait on (`<database>-<purpose>.lock`); None for another database, an
    in-memory one or a `file:` URI."""
    database = url.database if url.get_backend_name() == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return f"{database}-{purpose}.lock"


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(
    dbapi_connection: DBAPIConnection, connection_record: ConnectionPoolEntry
) -> None:
    """The web and the worker share one SQLite file: WAL lets them read while one writes."""
    module = type(dbapi_connection).__module__
    if not module.startswith("sqlite3"):
        return
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # With WAL, NORMAL is safe against corruption and loses nothing when a
    # process dies (only on power loss): and it saves an fsync per commit,
    # which the delivery engine makes per message.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
