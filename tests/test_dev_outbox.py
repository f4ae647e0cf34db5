"""The dev outbox (`zpravodaj dev`): caught mails listed a page at a time from its index.

A real catcher on loopback receives real SMTP; the page reads the index
(service/dev/outbox_index.py), never the directory listing.
"""

from __future__ import annotations

import json
import re
import smtplib
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
