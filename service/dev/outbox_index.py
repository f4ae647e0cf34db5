"""The dev outbox's own small database: one row per caught mail, so the outbox page
reads a page of them with one indexed query instead of listing the directory.

The mail catcher of `zpravodaj dev` writes each mail as `<stem>.eml` (the stem is
the time it came, in nanoseconds) and a row here (`outbox.sqlite3` in the same
directory) with what the list shows: sender, recipients and the decoded
subject. An issue sent to a big list in development leaves tens of thousands
of mails; the page shows PER_PAGE of them, newest first, and a link to older
ones by the last stem shown (keyset pagination: as fast on the last page as
on the first). Mails caught before the index existed are added when the
catcher starts (`reindex`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from email import policy
from email.parser import BytesHeaderParser
from pathlib import Path

INDEX_NAME = "outbox.sqlite3"
PER_PAGE = 50
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS mail (stem INTEGER PRIMARY KEY, mail_from TEXT NOT NULL, "
    "recipients TEXT NOT NULL, subject TEXT NOT NULL)"
)


@dataclass(frozen=True)
class Listed:
    """A caught mail as the outbox list shows it."""

    stem: int
    mail_from: str
    recipients: list[str]
    subject: str


def connect(directory: Path) -> sqlite3.Connection:
    """The index of `directory`, created when missing (WAL: the catcher writes while
    the web process reads)."""
    directory.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(directory / INDEX_NAME, timeout=10, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(_SCHEMA)
    connection.commit()
    return connection


def subject_of(data: bytes) -> str:
    """The decoded Subject, reading the headers only."""
    headers = BytesHeaderParser(policy=policy.default).parsebytes(data)
    return str(headers["Subject"] or "")


def record(
    connection: sqlite3.Connection, stem: int, mail_from: str, recipients: list[str], data: bytes
) -> None:
    connection.execute(
        "INSERT OR REPLACE INTO mail (stem, mail_from, recipients, subject) VALUES (?, ?, ?, ?)",
        (stem, mail_from, json.dumps(recipients), subject_of(data)),
    )
    connection.commit()


def reindex(directory: Path, connection: sqlite3.Connection) -> int:
    """Add the .eml files the index does not know (caught before it existed); how many."""
    known = {stem for (stem,) in connection.execute("SELECT stem FROM mail")}
    added = 0
    for eml in directory.glob("*.eml"):
        if not eml.stem.isdigit() or int(eml.stem) in known:
            continue
        meta_file = eml.with_suffix(".json")
        meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
        record(
            connection,
            int(eml.stem),
            meta.get("mail_from", ""),
            meta.get("rcpt_tos", []),
            eml.read_bytes(),
        )
        added += 1
    return added


@contextmanager
def reading(directory: Path) -> Iterator[sqlite3.Connection | None]:
    """The index for reading, or None when the catcher has caught nothing yet."""
    if not (directory / INDEX_NAME).exists():
        yield None
        return
    with closing(sqlite3.connect(directory / INDEX_NAME, timeout=10)) as connection:
        yield connection


def page(directory: Path, before: int | None) -> tuple[list[Listed], int | None, int]:
    """The PER_PAGE newest mails older than `before` (all when None), the stem to ask
    for the next page with (None on the last page), and how many mails there are."""
    with reading(directory) as connection:
        if connection is None:
            return [], None, 0
        rows = connection.execute(
            "SELECT stem, mail_from, recipients, subject FROM mail WHERE stem < ? "
            "ORDER BY stem DESC LIMIT ?",
            (before if before is not None else 2**63 - 1, PER_PAGE + 1),
        ).fetchall()
        total = connection.execute("SELECT count(*) FROM mail").fetchone()[0]
    listed = [Listed(stem, sender, json.loads(to), subject) for stem, sender, to, subject in rows]
    older = listed[PER_PAGE - 1].stem if len(listed) > PER_PAGE else None
    return listed[:PER_PAGE], older, total
