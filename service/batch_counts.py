"""Per-batch delivery counts, kept in step with the deliveries by the database.

An issue's progress (sent, failed, pending…) is the sum of its batches'
counters: a few thousand rows for a million recipients, where a GROUP BY over
the deliveries read them all on every poll of the progress bar.

The fan-out writes a batch's `total_count` with its deliveries. Every later
change of a delivery's status (a worker's claim and send, a cancel, "send
again", retention or erasure deleting rows) moves the counters through the
triggers below, in the same transaction as the change, whichever code made
it. A claim (pending -> sending) changes no counter, and the trigger's WHEN
clause skips it, so the per-message path pays nothing for it.

Installed by the migration 7d2e4b1c9a60 and, for `db.create_all()` (tests,
`zpravodaj dev`), by a DDL event on the delivery table.
"""

from __future__ import annotations

from sqlalchemy import DDL, Connection, event

from .extensions import db
from .models import DeliveryStatus

# Statuses with a counter of their own; pending and sending are the rest of total_count.
COUNTED = (
    DeliveryStatus.SENT,
    DeliveryStatus.FAILED,
    DeliveryStatus.SKIPPED,
    DeliveryStatus.CANCELLED,
)
UNFINISHED = ("pending", "sending")
TRIGGER_NAMES = ("delivery_batch_counts_update", "delivery_batch_counts_delete")


def _moves(new: str | None, old: str) -> str:
    """SET clauses moving each counter by the row's old and new status."""

    def flag(row: str, status: str) -> str:
        return f"CASE WHEN {row}.status = '{status}' THEN 1 ELSE 0 END"

    clauses = [
        f"{status}_count = {status}_count"
        + (f" + {flag(new, status)}" if new else "")
        + f" - {flag(old, status)}"
        for status in COUNTED
    ]
    if new is None:
        clauses.append("total_count = total_count - 1")
    return ", ".join(clauses)


# Only a change that moves a counter: not pending <-> sending, not a status rewritten as is.
_MOVES_A_COUNTER = (
    f"OLD.status <> NEW.status AND NOT (OLD.status IN {UNFINISHED} AND NEW.status IN {UNFINISHED})"
)

POSTGRESQL = [
    f"""
CREATE OR REPLACE FUNCTION zpravodaj_batch_counts() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE delivery_batch SET {_moves(None, "OLD")} WHERE id = OLD.batch_id;
        RETURN OLD;
    END IF;
    UPDATE delivery_batch SET {_moves("NEW", "OLD")} WHERE id = NEW.batch_id;
    RETURN NEW;
END
$$
""",
    "CREATE TRIGGER delivery_batch_counts_update AFTER UPDATE OF status ON delivery "
    f"FOR EACH ROW WHEN ({_MOVES_A_COUNTER}) EXECUTE FUNCTION zpravodaj_batch_counts()",
    "CREATE TRIGGER delivery_batch_counts_delete AFTER DELETE ON delivery "
    "FOR EACH ROW EXECUTE FUNCTION zpravodaj_batch_counts()",
]

SQLITE = [
    "CREATE TRIGGER delivery_batch_counts_update AFTER UPDATE OF status ON delivery "
    f"WHEN {_MOVES_A_COUNTER} BEGIN "
    f"UPDATE delivery_batch SET {_moves('NEW', 'OLD')} WHERE id = NEW.batch_id; END",
    "CREATE TRIGGER delivery_batch_counts_delete AFTER DELETE ON delivery BEGIN "
    f"UPDATE delivery_batch SET {_moves(None, 'OLD')} WHERE id = OLD.batch_id; END",
]


def statements(dialect: str) -> list[str]:
    return {"postgresql": POSTGRESQL, "sqlite": SQLITE}.get(dialect, [])


def install(connection: Connection) -> None:
    """Create the triggers (the migration)."""
    for statement in statements(connection.dialect.name):
        connection.exec_driver_sql(statement)


def uninstall(connection: Connection) -> None:
    """Drop the triggers (the migration's downgrade)."""
    dialect = connection.dialect.name
    on = " ON delivery" if dialect == "postgresql" else ""
    for name in TRIGGER_NAMES:
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}{on}")
    if dialect == "postgresql":
        connection.exec_driver_sql("DROP FUNCTION IF EXISTS zpravodaj_batch_counts()")


def recount(connection: Connection) -> None:
    """Set every batch's counters from its deliveries (the migration, for existing rows)."""
    counts = ", ".join(
        f"{status}_count = (SELECT count(*) FROM delivery "
        f"WHERE delivery.batch_id = delivery_batch.id AND delivery.status = '{status}')"
        for status in COUNTED
    )
    connection.exec_driver_sql(
        "UPDATE delivery_batch SET total_count = (SELECT count(*) FROM delivery "
        f"WHERE delivery.batch_id = delivery_batch.id), {counts}"
    )


for _dialect in ("postgresql", "sqlite"):
    for _statement in statements(_dialect):
        event.listen(
            db.metadata.tables["delivery"],
            "after_create",
            DDL(_statement).execute_if(dialect=_dialect),
        )
