"""The dev outbox (`zpravodaj dev`): caught mails listed a page at a time from its index.

A real catcher on loopback receives real SMTP; the page reads the index
(service/dev/outbox_index.py), never the directory listing.
"""

from __future__ import annotations

import json
import re
import smtplib
import sqlite3
from contextlib import closing
from email.message import EmailMessage
from pathlib import Path

import pytest

from service.dev import outbox_index
from service.dev.mail_catcher import MailCatcher, start_catcher


@pytest.fixture
def outbox_dir(app_config, tmp_path) -> Path:
    directory = tmp_path / "dev-outbox"
    app_config["DEV_OUTBOX_DIR"] = str(directory)
    return directory


def send(port: int, count: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        for n in range(count):
            message = EmailMessage()
            message["From"] = "zpravodaj@socialnibydleni.example"
            message["To"] = f"ctenar{n}@seznam.cz"
            message["Subject"] = f"Zpráva č. {n}: přihlášení potvrzeno"
            message.set_content(f"Dobrý den, zpráva {n}. https://zpravodaj.example/confirm/x{n}")
            smtp.send_message(message)


@pytest.fixture
def caught(outbox_dir) -> MailCatcher:
    catcher = MailCatcher(outbox_dir)
    controller = start_catcher(catcher)
    try:
        send(controller.port, 120)
    finally:
        controller.stop()
    return catcher


def subjects(page: str) -> list[str]:
    return re.findall(r'href="/dev/outbox/\d+">([^<]+)</a>', page)


def test_the_outbox_shows_fifty_mails_a_page_newest_first(caught, outbox_dir, client):
    assert caught.mails == []  # kept on disk and in the index, not in the process
    first = client.get("/dev/outbox/").get_data(as_text=True)
    assert "Zachycených e-mailů celkem: 120" in first
    assert subjects(first)[:2] == [
        "Zpráva č. 119: přihlášení potvrzeno",
        "Zpráva č. 118: přihlášení potvrzeno",
    ]
    assert len(subjects(first)) == 50
    pages = [first]
    while older := re.search(r'href="(/dev/outbox/\?before=\d+)" rel="next"', pages[-1]):
        pages.append(client.get(older.group(1)).get_data(as_text=True))
    assert [len(subjects(p)) for p in pages] == [50, 50, 20]
    shown = [s for p in pages for s in subjects(p)]
    assert shown == [f"Zpráva č. {n}: přihlášení potvrzeno" for n in range(119, -1, -1)]
    assert "Nejnovější" in pages[-1]

    mail_path = re.search(r'href="(/dev/outbox/\d+)"', first).group(1)
    mail = client.get(mail_path).get_data(as_text=True)
    assert "ctenar119@seznam.cz" in client.get("/dev/outbox/").get_data(as_text=True)
    assert "https://zpravodaj.example/confirm/x119" in mail


def test_the_list_reads_the_index_not_the_directory(caught, client, monkeypatch):
    def no_listing(*args, **kwargs):
        raise AssertionError("the outbox listed its directory")

    monkeypatch.setattr(Path, "glob", no_listing)
    monkeypatch.setattr(Path, "iterdir", no_listing)
    assert client.get("/dev/outbox/").status_code == 200
    assert client.get("/dev/outbox/?before=1").status_code == 200


@pytest.mark.parametrize("before", ["x", "-1", "9" * 40, "١٢", ""])
def test_odd_page_links_never_fail(caught, client, before):
    assert client.get(f"/dev/outbox/?before={before}").status_code == 200


def test_mails_caught_before_the_index_are_added_when_the_catcher_starts(outbox_dir, client):
    outbox_dir.mkdir(parents=True)
    (outbox_dir / "1700000000000000000.eml").write_bytes(
        b"From: a@b.cz\r\nTo: c@d.cz\r\nSubject: =?utf-8?q?Star=C3=BD?=\r\n\r\ntext\r\n"
    )
    (outbox_dir / "1700000000000000000.json").write_text(
        json.dumps({"mail_from": "a@b.cz", "rcpt_tos": ["c@d.cz"]})
    )
    assert client.get("/dev/outbox/").get_data(as_text=True).count("Starý") == 0
    MailCatcher(outbox_dir)
    page = client.get("/dev/outbox/").get_data(as_text=True)
    assert subjects(page) == ["Starý"]
    listed, older, total = outbox_index.page(outbox_dir, None)
    assert (total, older, listed[0].recipients) == (1, None, ["c@d.cz"])


def test_an_empty_outbox_says_so(outbox_dir, client):
    assert "Zatím žádná pošta." in client.get("/dev/outbox/").get_data(as_text=True)


# --- searching -----------------------------------------------------------------------


def pages_of(client, url: str) -> list[str]:
    """Every page from `url` on, following "Older" to the last."""
    pages = [client.get(url).get_data(as_text=True)]
    while older := re.search(r'href="(/dev/outbox/\?[^"]*before=\d+[^"]*)" rel="next"', pages[-1]):
        pages.append(client.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True))
    return pages


def test_search_finds_an_address_or_a_subject(caught, client):
    page = client.get("/dev/outbox/?q=ctenar7@seznam.cz").get_data(as_text=True)
    assert subjects(page) == ["Zpráva č. 7: přihlášení potvrzeno"]
    assert "Hledání „ctenar7@seznam.cz“ našlo 1 e-mail." in page
    page = client.get("/dev/outbox/?q=Zpráva+č.+11:").get_data(as_text=True)
    assert subjects(page) == ["Zpráva č. 11: přihlášení potvrzeno"]


def test_search_ignores_case_and_diacritics_and_pages_keep_it(caught, client):
    pages = pages_of(client, "/dev/outbox/?q=PRIHLASENI")
    assert [len(subjects(p)) for p in pages] == [50, 50, 20]
    assert "Hledání „PRIHLASENI“ našlo 120 e-mailů." in pages[0]
    assert 'name="q" value="PRIHLASENI"' in pages[1]  # the form keeps what was searched for
    assert "q=PRIHLASENI" in pages[-1]  # and the way back to the newest too
    few = client.get("/dev/outbox/?q=ctenar11").get_data(as_text=True)  # 11 and 110–119
    assert "Hledání „ctenar11“ našlo 11 e-mailů." in few


def test_a_search_that_finds_nothing_says_so(caught, client):
    page = client.get("/dev/outbox/?q=nikdo@nikde.cz").get_data(as_text=True)
    assert subjects(page) == []
    assert "Hledání „nikdo@nikde.cz“ nic nenašlo." in page
    english = client.get("/dev/outbox/?q=nikdo@nikde.cz&lang=en").get_data(as_text=True)
    assert "Nothing found for “nikdo@nikde.cz”." in english


@pytest.mark.parametrize("search", ["%", "_", "'", '"', "\\", "a" * 5000, "<b>", "١٢"])
def test_odd_searches_never_fail(caught, client, search):
    response = client.get("/dev/outbox/", query_string={"q": search})
    assert response.status_code == 200
    assert "<b>" not in response.get_data(as_text=True).split("</form>", 1)[0].split("<form", 1)[1]


def test_the_outbox_page_in_english(caught, client):
    page = client.get("/dev/outbox/?lang=en").get_data(as_text=True)
    assert "Mails caught: 120." in page
    assert "Search for an address or a subject" in page
    assert "Older ›" in page


def test_ten_thousand_mails_are_searched_and_paged(outbox_dir, client):
    """An issue to a big list in development: every page and every search still works."""
    first = 1_700_000_000_000_000_000
    mails = [
        outbox_index.Listed(
            first + n,
            "zpravodaj@socialnibydleni.example",
            [f"ctenar{n}@seznam.cz"],
            f"Vydání {n % 100}: Nové byty v Ostravě",
        )
        for n in range(10_000)
    ]
    with closing(outbox_index.connect(outbox_dir)) as connection:
        outbox_index.store(connection, mails)

    pages = pages_of(client, "/dev/outbox/")
    assert len(pages) == 200
    assert re.search(r"Zachycených e-mailů celkem: 10\W000\.", pages[0])
    shown = [int(stem) for p in pages for stem in re.findall(r'href="/dev/outbox/(\d+)"', p)]
    assert shown == [first + n for n in range(9_999, -1, -1)]  # each once, newest first

    found = pages_of(client, "/dev/outbox/?q=vydani+7:")
    assert [len(subjects(p)) for p in found] == [50, 50]
    assert set(s for p in found for s in subjects(p)) == {"Vydání 7: Nové byty v Ostravě"}
    one = client.get("/dev/outbox/?q=CTENAR9999@").get_data(as_text=True)
    assert re.findall(r'href="/dev/outbox/(\d+)"', one) == [str(first + 9_999)]


def test_an_index_from_before_searching_is_searched_after_all(outbox_dir, client):
    outbox_dir.mkdir(parents=True)
    with closing(sqlite3.connect(outbox_dir / outbox_index.INDEX_NAME)) as connection:
        connection.execute(
            "CREATE TABLE mail (stem INTEGER PRIMARY KEY, mail_from TEXT NOT NULL, "
            "recipients TEXT NOT NULL, subject TEXT NOT NULL)"
        )
        connection.execute(
            "INSERT INTO mail VALUES (1700000000000000000, 'a@b.cz', '[\"jana@seznam.cz\"]', "
            "'Starý e-mail')"
        )
        connection.commit()
    page = client.get("/dev/outbox/?q=stary").get_data(as_text=True)
    assert subjects(page) == ["Starý e-mail"]
    assert subjects(client.get("/dev/outbox/?q=jana@seznam").get_data(as_text=True)) == [
        "Starý e-mail"
    ]
