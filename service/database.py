"""Binding the database: Flask-SQLAlchemy plus SQLite settings for several processes."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from . import models  # noqa: F401  (registers the tables on db.metadata)
from .extensions import db


def init_app(app: Flask) -> None:
    db.init_app(app)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record) -> None:
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
