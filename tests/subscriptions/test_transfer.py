"""`zpravodaj subscribers import/export` and `zpravodaj lists create`."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import func, select

from service.extensions import db
from service.models import ConsentEvent, MailingList, OutgoingMail, Subscriber, Subscription
from tests.conftest import process_signups

CSV = """email,name,organization
jana.novakova@seznam.cz,Jana Nováková,Magistrát města Ostravy
  PETR@Centrum.cz ,Petr,
jana.novakova@seznam.cz,Duplicate,
not-an-address,Nikdo,
eva@příklad.cz,Eva,Charita
"""


def write(tmp_path, text: str, name="people.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def run_import(runner, path, list_slug="zpravodaj", source="Mailchimp, export 2026-11-01"):
    return runner.invoke(
        args=["subscribers", "import", path, "--list", list_slug, "--consent-source", source]
    )


def test_import_confirms_consented_people_and_reports_bad_rows(runner, app, tmp_path, outbox):
    result = run_import(runner, write(tmp_path, CSV))
    assert result.exit_code == 0, result.output
    assert "řádek 4: opakuje adresu z řádku 2" in result.output
    assert "řádek 5: neplatná adresa 'not-an-address'" in result.output
    assert "importováno 3, už přihlášeno 0, přeskočeno 2" in result.output
    rows = db.session.execute(
        select(Subscriber.email, Subscriber.name, Subscription.status).join(Subscription)
    ).all()
    assert sorted(rows) == [
        ("PETR@centrum.cz", "Petr", "confirmed"),
        ("eva@příklad.cz", "Eva", "confirmed"),
        ("jana.novakova@seznam.cz", "Jana Nováková", "confirmed"),
    ]
    event = db.session.scalar(select(ConsentEvent))
    assert event.action == "import"
    assert event.channel == "import"
    assert event.detail == "Mailchimp, export 2026-11-01"
    assert db.session.scalar(select(OutgoingMail)) is None  # no mail to imported people


def test_import_twice_is_harmless(runner, app, tmp_path):
    path = write(tmp_path, CSV)
    run_import(runner, path)
    again = run_import(runner, path)
    assert "importováno 0, už přihlášeno 3" in again.output
    assert db.session.query(Subscription).count() == 3
    assert db.session.query(ConsentEvent).count() == 3


def test_import_does_not_resubscribe_who_left(runner, app, tmp_path, client):
    run_import(runner, write(tmp_path, "email\njana@seznam.cz\n"))
    subscription = db.session.scalar(select(Subscription))
    subscription.status = "unsubscribed"
    db.session.commit()
    result = run_import(runner, write(tmp_path, "email\njana@seznam.cz\n"))
    assert "řádek 2: adresa se z tohoto seznamu odhlásila; znovu nepřidáno" in result.output
    assert db.session.scalar(select(Subscription.status)) == "unsubscribed"


def test_erased_address_cannot_come_back_through_an_import(runner, app, tmp_path):
    from service.subscriptions import actions

    run_import(runner, write(tmp_path, "email\njana@seznam.cz\n"))
    actions.erase(db.session.scalar(select(Subscriber)))
    db.session.commit()
    result = run_import(runner, write(tmp_path, "email\nJana@Seznam.cz\n"))
    assert "řádek 2: adresa byla vymazána nebo je nedoručitelná; neimportováno" in result.output
    assert db.session.query(Subscriber).count() == 0


def test_import_without_email_column_fails_cleanly(runner, app, tmp_path):
    result = run_import(runner, write(tmp_path, "mail,name\njana@seznam.cz,Jana\n"))
    assert result.exit_code == 1
    assert "chybí sloupec „email“" in result.output
    assert "Traceback" not in result.output
    empty = run_import(runner, write(tmp_path, ""))
    assert empty.exit_code == 1
    assert "Soubor je prázdný." in empty.output


@pytest.mark.parametrize(
    "content, message",
    [
        # Excel's plain "CSV" on a Czech Windows is CP1250, not UTF-8.
        ("email,name\njana@seznam.cz,Jana\npetr@seznam.cz,Petr Dvořák\n".encode("cp1250"),
         "není v kódování UTF-8"),
        ("email,name\nš@seznam.cz,Jana\n".encode("cp1250"), "není v kódování UTF-8"),
        (b"email,name\njana@seznam.cz," + b"x" * 200_000 + b"\n", "není platné CSV (řádek 2)"),
    ],
)  # fmt: skip
def test_import_of_an_unreadable_file_fails_cleanly_and_imports_nothing(
    runner, app, tmp_path, content, message
):
    path = tmp_path / "import.csv"
    path.write_bytes(content)
    result = run_import(runner, str(path))
    assert result.exit_code == 1
    assert message in result.output
    assert "Import se neprovedl" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert db.session.scalar(select(func.count(Subscriber.id))) == 0


def test_import_into_unknown_list_fails_cleanly(runner, app, tmp_path):
    result = run_import(runner, write(tmp_path, "email\njana@seznam.cz\n"), list_slug="nic")
    assert result.exit_code == 1
    assert "seznam 'nic' neexistuje" in result.output


def test_import_accepts_excel_bom_and_header_case(runner, app, tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffEmail,Name\r\njana@seznam.cz,Jana\r\n".encode())
    result = run_import(runner, str(path))
    assert "importováno 1" in result.output


def test_export_writes_csv_with_status_and_times(runner, app, tmp_path, client):
    run_import(runner, write(tmp_path, "email,name\njana@seznam.cz,Jana\n"))
    client.post("/subscribe", json={"email": "petr@seznam.cz"})
    process_signups()
    result = runner.invoke(args=["subscribers", "export", "--list", "zpravodaj"])
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert list(rows[0]) == [
        "email",
        "name",
        "status",
        "subscribed_at",
        "confirmed_at",
        "unsubscribed_at",
    ]
    by_email = {row["email"]: row for row in rows}
    assert by_email["jana@seznam.cz"]["status"] == "confirmed"
    assert by_email["jana@seznam.cz"]["confirmed_at"].endswith("Z")
    assert by_email["petr@seznam.cz"]["status"] == "pending"
    assert by_email["petr@seznam.cz"]["confirmed_at"] == ""


def test_lists_create(runner, app):
    result = runner.invoke(
        args=[
            "lists",
            "create",
            "chomutov-eps",
            "--name",
            "Expertní skupina Chomutov",
            "--kind",
            "group",
        ]
    )
    assert result.exit_code == 0, result.output
    created = db.session.scalar(select(MailingList).filter_by(slug="chomutov-eps"))
    assert (created.name, created.kind) == ("Expertní skupina Chomutov", "group")
    duplicate = runner.invoke(args=["lists", "create", "chomutov-eps", "--name", "X"])
    assert duplicate.exit_code == 1
    assert "Seznam 'chomutov-eps' už existuje." in duplicate.output
    bad = runner.invoke(args=["lists", "create", "Špatný Slug", "--name", "X"])
    assert bad.exit_code == 2
