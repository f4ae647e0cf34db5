"""The service's notion of now, in one place so tests can move time."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Naive UTC: how every timestamp is stored (SQLite keeps no time zone)."""
    return datetime.now(UTC).replace(tzinfo=None)
