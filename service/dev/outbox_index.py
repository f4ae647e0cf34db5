"""The dev outbox's own small database: one row per caught mail, so the outbox page
reads a page of them with one indexed query instead of listing the directory.

The mail catcher of `zpravodaj dev` writes each mail as `<stem>.eml` (the stem is
the time it came, in nanoseconds) and a row here (`outbox.sqlite3` in the same
directory) with what the list shows: sender, recipients and the decoded
subject, and the same folded for searching (lower case, no diacritics, so
"prihlaseni" finds "Přihlášení"). An issue sent to a big list in development
leaves tens of thousands of mails; the page shows PER_PAGE of them, newest
first, and a link to older ones by the last stem shown (keyset pagination:
as fast on the last page as on the first), of all mails or of those a search
finds. Mails caught before the index existed are added when the catcher
starts (`reindex`), and an index made before searching existed gets its
search column then.
"""

from __future__ import annotations

import json
import sqlite3
import unicodedata
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from email import policy
from email.parser import BytesHeaderParser
from pathlib import Path

INDEX_NAME = "outbox.sqlite3"
PER_PAGE = 50
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS mail (stem INTEGER PRIMARY KEY, mail_from TEXT NOT NULL, "
    "recipients TEXT NOT NULL, subject TEXT NOT NULL, search TEXT NOT NULL DEFAULT '')"
)
_INSERT = (
    "INSERT OR REPLACE INTO mail (stem, mail_from, recipients, subject, search) "
    "VALUES (?, ?, ?, ?, ?)"
)
NEWEST = 2**63 - 1  # above every stem (SQLite's largest integer)


@dataclass(frozen=True)
class Listed:
    """A caught mail as the outbox list shows it."""

    stem: int
    mail_from: str
    recipients: list[str]
    subject: str


def folded(text: str) -> str:
    """`text` as a search compares it: case folded, without diacritics."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def _search_text(mail_from: str, recipients: list[str], subject: str) -> str:
    return folded("\n".join([mail_from, *recipients, subject]))


def connect(directory: Path) -> sqlite3.Connection:
    """The index of `directory`, created when missing (WAL: the catcher writes while
    the web process reads)."""
    directory.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(directory / INDEX_NAME, timeout=10, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(_SCHEMA)
    _add_search(connection)
    connection.commit()
    return connection


def _add_search(connection: sqlite3.Connection) -> None:
    """An index from before searching: its search column, filled from what it holds."""
    columns = {row[1] for row in connection.execute("PRAGMA table_info(mail)")}
    if "search" in columns:
        return
    connection.execute("ALTER TABLE mail ADD COLUMN search TEXT NOT NULL DEFAULT ''")
    rows = connection.execute("SELECT stem, mail_from, recipients, subject FROM mail").fetchall()
    connection.executemany(
        "UPDATE mail SET search = ? WHERE stem = ?",
        [
            (_search_text(sender, json.loads(to), subject), stem)
            for stem, sender, to, subject in rows
        ],
    )


def subject_of(data: bytes) -> str:
    """The decoded Subject, reading the headers only."""
    headers = BytesHeaderParser(policy=policy.default).parsebytes(data)
    return str(headers["Subject"] or "")


def store(connection: sqlite3.Connection, mails: Iterable[Listed]) -> None:
    """Add (or replace) these mails' rows in one transaction."""
    connection.executemany(
        _INSERT,
        (
            (
                mail.stem,
                mail.mail_from,
                json.dumps(mail.recipients),
                mail.subject,
                _search_text(mail.mail_from, mail.recipients, mail.subject),
            )
            for mail in mails
        ),
    )
    connection.commit()


def record(
    connection: sqlite3.Connection, stem: int, mail_from: str, recipients: list[str], data: bytes
) -> None:
    store(connection, [Listed(stem, mail_from, recipients, subject_of(data))])


def reindex(directory: Path, connection: sqlite3.Connection) -> int:
    """Add the .eml files the index does not know (caught before it existed); how many."""
    known = {stem for (stem,) in connection.execute("SELECT stem FROM mail")}
    found = []
    for eml in directory.glob("*.eml"):
        if not eml.stem.isdigit() or int(eml.stem) in known:
            continue
        meta_file = eml.with_suffix(".json")
        meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
        found.append(
            Listed(
                int(eml.stem),
                meta.get("mail_from", ""),
                meta.get("rcpt_tos", []),
                subject_of(eml.read_bytes()),
            )
        )
    store(connection, found)
    return len(found)


@contextmanager
def reading(directory: Path) -> Iterator[sqlite3.Connection | None]:
    """The index for reading, or None when the catcher has caught nothing yet."""
    if not (directory / INDEX_NAME).exists():
        yield None
        return
    with closing(sqlite3.connect(directory / INDEX_NAME, timeout=10)) as connection:
        _add_search(connection)  # an index from before searching, its catcher not restarted
        connection.commit()
        yield connection


def page(
    directory: Path, before: int | None, search: str = ""
) -> tuple[list[Listed], int | None, int]:
    """The PER_PAGE newest mails older than `before` (all when None) whose sender,
    recipients or subject contain `search` (every mail when empty), the stem to ask
    for the next page with (None on the last page), and how many mails match."""
    needle = folded(search.strip())
    matching, arguments = ("instr(search, ?) > 0", [needle]) if needle else ("1", [])
    with reading(directory) as connection:
        if connection is None:
            return [], None, 0
        rows = connection.execute(
            # `matching` is one of two fixed strings; what was searched for is a parameter.
            f"SELECT stem, mail_from, recipients, subject FROM mail "
            f"WHERE stem < ? AND {matching} ORDER BY stem DESC LIMIT ?",
            [before if before is not None else NEWEST, *arguments, PER_PAGE + 1],
        ).fetchall()
        total = connection.execute(
            f"SELECT count(*) FROM mail WHERE {matching}",
            arguments,
        ).fetchone()[0]
    listed = [Listed(stem, sender, json.loads(to), subject) for stem, sender, to, subject in rows]
    older = listed[PER_PAGE - 1].stem if len(listed) > PER_PAGE else None
    return listed[:PER_PAGE], older, total
