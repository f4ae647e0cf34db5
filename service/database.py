"""Binding the database: Flask-SQLAlchemy plus SQLite settings for several processes."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from functools import lru_cache
from typing import Any, cast

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import URL, Dialect, Engine
from sqlalchemy.engine.interfaces import DBAPIConnection, DBAPICursor
from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

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


class DriverStatement:
    """A Core statement compiled once for a dialect and run on a DBAPI cursor.

    For the one statement of a request where SQLAlchemy's execution costs more than
    the database (the sign-up's INSERT, issue 14): each `Connection.execute` looks the
    statement up in the compiled cache, builds an execution context and wraps the
    result, and the ORM session around it begins and commits its own transaction
    object; together five times what SQLite spends on the row. Here the SQL text, the
    order of its parameters and the types' conversions (JSON, dates on SQLite) are
    SQLAlchemy's own, worked out once; each run converts the values and calls the
    driver. The caller owns the DBAPI connection and its transaction.
    """

    def __init__(
        self, statement: ClauseElement, dialect: Dialect, cached: Collection[str] = ()
    ) -> None:
        """`cached`: parameters whose conversions are remembered by value (a few distinct,
        hashable values: the sign-up's tuple of list ids, whose JSON is written once)."""
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        if compiled.post_compile_params or compiled.literal_execute_params:
            # An expanding IN or a literal rendered per run: its SQL differs run by run.
            raise ValueError("a statement whose SQL is finished at each run cannot be reused")
        self.sql = str(compiled)
        # A positional driver (SQLite's `?`) takes a sequence in this order; a named one
        # (psycopg's `%(name)s`) the dictionary.
        self._positions: Sequence[str] | None = compiled.positiontup
        binds = compiled.bind_names  # each parameter and its name in the SQL
        # Literal values of the statement (`kind = 'newsletter'`) are parameters too.
        self._fixed = {name: bind.value for bind, name in binds.items() if not bind.required}
        self._conversions = [
            (name, lru_cache(maxsize=64)(convert) if name in cached else convert)
            for bind, name in binds.items()
            if (convert := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        ]

    def parameters(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        """The driver's parameters for `values` (every required parameter, by name)."""
        merged = {**self._fixed, **values}
        for name, convert in self._conversions:
            merged[name] = convert(merged[name])
        if self._positions is None:
            return merged
        return [merged[name] for name in self._positions]

    def execute(self, cursor: DBAPICursor, values: Mapping[str, Any]) -> Any:
        """Run the statement; the first row of its result (RETURNING), None when none.
        The driver's errors are raised as they come (`driver_error` wraps them)."""
        cursor.execute(self.sql, self.parameters(values))
        return cursor.fetchone() if cursor.description else None


def driver_error(
    error: Any, statement: str, dialect: Dialect, connection: PoolProxiedConnection
) -> StatementError:
    """A driver's error as SQLAlchemy raises it (`sqlalchemy.exc.OperationalError`, …), for
    work done on a pool connection through the driver (DriverStatement). A connection the
    database dropped is invalidated, so the pool does not hand it out again."""
    disconnected = dialect.is_disconnect(error, connection, None)
    if disconnected:
        connection.invalidate(error)
    return DBAPIError.instance(
        statement,
        None,
        error,
        dialect.loaded_dbapi.Error,
        connection_invalidated=disconnected,
        dialect=dialect,
    )


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
