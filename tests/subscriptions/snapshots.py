"""Whole-database snapshots, to prove that a request changed nothing."""

from __future__ import annotations

from service.extensions import db


def database_snapshot() -> dict[str, list[tuple]]:
    db.session.expire_all()
    snapshot = {}
    for table in db.metadata.sorted_tables:
        rows = db.session.execute(table.select().order_by(*table.primary_key.columns)).all()
        snapshot[table.name] = [tuple(row) for row in rows]
    db.session.commit()
    return snapshot
