"""Deleting a subscriber or a delivery batch deletes their deliveries.

`delivery` has no foreign keys (service/models.py says why: checking them row
by row was most of a large fan-out's time), so these triggers do what
ON DELETE CASCADE did: an erased or purged subscriber leaves no delivery
behind, and an issue's batches (deleted with the issue by their own foreign
key, or by retention) take their deliveries with them. Deleting the
deliveries moves the batch counters as any delete does (service/batch_counts.py).

Installed by the migration e5b8c2d4f1a7 and, for `db.create_all()` (tests,
`zpravodaj dev`), by DDL events on the parent tables.
"""

from __future__ import annotations

from sqlalchemy import DDL, Connection, event

from . import models  # noqa: F401  (defines the tables the DDL events below attach to)
from .extensions import db

# (trigger name, parent table, the delivery column that points at it)
CASCADES = (
    ("subscriber_deletes_deliveries", "subscriber", "subscriber_id"),
    ("delivery_batch_deletes_deliveries", "delivery_batch", "batch_id"),
)


def _postgresql(name: str, table: str, column: str) -> list[str]:
    return [
        f"CREATE OR REPLACE FUNCTION zpravodaj_{name}() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN "
        f"DELETE FROM delivery WHERE {column} = OLD.id; RETURN OLD; END $$",
        f"CREATE TRIGGER {name} AFTER DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION zpravodaj_{name}()",
    ]


def _sqlite(name: str, table: str, column: str) -> list[str]:
    return [
        f"CREATE TRIGGER {name} AFTER DELETE ON {table} "
        f"BEGIN DELETE FROM delivery WHERE {column} = OLD.id; END"
    ]


def statements(dialect: str, table: str | None = None) -> list[str]:
    """The DDL for `dialect`, for one parent table or all of them."""
    build = {"postgresql": _postgresql, "sqlite": _sqlite}.get(dialect)
    if build is None:
        return []
    return [
        statement
        for name, parent, column in CASCADES
        if table in (None, parent)
        for statement in build(name, parent, column)
    ]


def install(connection: Connection) -> None:
    """Create the triggers (the migration)."""
    for statement in statements(connection.dialect.name):
        connection.exec_driver_sql(statement)


def uninstall(connection: Connection) -> None:
    """Drop the triggers (the migration's downgrade)."""
    postgresql = connection.dialect.name == "postgresql"
    for name, parent, _ in CASCADES:
        on = f" ON {parent}" if postgresql else ""
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}{on}")
        if postgresql:
            connection.exec_driver_sql(f"DROP FUNCTION IF EXISTS zpravodaj_{name}()")


for _dialect in ("postgresql", "sqlite"):
    for _name, _parent, _column in CASCADES:
        for _statement in statements(_dialect, _parent):
            event.listen(
                db.metadata.tables[_parent],
                "after_create",
                DDL(_statement).execute_if(dialect=_dialect),
            )
