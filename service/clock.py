"""The service's notion of time, in one place: now, the local zone, and stored times as text.

Every timestamp is stored as naive UTC; people read and type times in the
configured zone (TIMEZONE, Europe/Prague).
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from flask import current_app
from flask_babel import lazy_gettext as _l

SKIPPED_BY_CLOCK_CHANGE = _l("Tento čas kvůli změně na letní čas neexistuje; zvolte jiný.")


class SkippedLocalTime(ValueError):
    """A wall-clock time the spring clock change skips (02:30 on that Sunday in Prague)."""


def utcnow() -> datetime:
    """Naive UTC: how every timestamp is stored (SQLite keeps no time zone)."""
    return datetime.now(UTC).replace(tzinfo=None)


def local_zone() -> ZoneInfo:
    """The zone people here read and type times in: the TIMEZONE setting (Europe/Prague)."""
    return ZoneInfo(current_app.config["TIMEZONE"])


def from_local(naive: datetime) -> datetime:
    """A wall-clock time typed in the local zone, as an aware datetime.

    A time skipped by the spring clock change does not exist there: it raises
    `SkippedLocalTime` (its message is the one to show, in the request's language) rather than being
    moved silently by an hour. A time at the very edge of what `datetime`
    holds raises OverflowError.
    """
    zone = local_zone()
    aware = naive.replace(tzinfo=zone)
    if aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != naive:
        raise SkippedLocalTime(str(SKIPPED_BY_CLOCK_CHANGE))
    return aware


def iso_utc(moment: datetime | None, *, zulu: bool = False, timespec: str = "auto") -> str | None:
    """A stored (naive UTC) time in ISO 8601 with its offset; None stays None.

    "2026-12-10T08:00:00+00:00" (the API's form), or with `zulu`
    "2026-12-10T08:00:00Z" (the exports' form).
    """
    if moment is None:
        return None
    return moment.replace(tzinfo=None).isoformat(timespec=timespec) + ("Z" if zulu else "+00:00")
