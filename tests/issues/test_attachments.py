"""Attachments of announcements: checked by extension and content, stored once, in every mail."""

from __future__ import annotations

import hashlib
import io
import time
import zipfile

import pytest
from sqlalchemy import func, select

from service.extensions import db
from service.issues import attachments, sending
from service.issues.attachments import AttachmentError, add_attachment, remove_attachment
from service.models import Attachment, Issue, MailingList
from tests.conftest import BASE_URL, add_confirmed_subscribers, run_jobs

PDF = b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"


def zip_file(entries: dict[str, str | bytes]) -> bytes:
    """A ZIP archive whose bytes do not depend on the clock.

    These archives are test parameters, so their bytes are part of the test ids, which
    every pytest-xdist process computes on its own: with the current time in each entry
    (zipfile's default), two processes collecting a second apart had different tests,
    and the whole run stopped ("Different tests were collected between gw0 and gw1").
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2026, 12, 1, 0, 0, 0)), data)
    return buffer.getvalue()


def office_file(main_type: str) -> bytes:
    return zip_file({
        "[Content_Types].xml": (
            f'<?xml version="1.0"?><Types><Override PartName="/x" ContentType="{main_type}"/>'
            "</Types>"
        ),
        "word/document.xml": "<w:document/>",
    })  # fmt: skip


def odt_file(mimetype: bytes = attachments.ODT_MIMETYPE) -> bytes:
    return zip_file({"mimetype": mimetype, "content.xml": "<office:document-content/>"})


def test_the_test_archives_do_not_depend_on_the_clock(monkeypatch):
    made = office_file(attachments.DOCX_MAIN), odt_file()
    later = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: later)
    assert (office_file(attachments.DOCX_MAIN), odt_file()) == made


def draft(slug: str = "ostrava-psb") -> Issue:
    mailing_list = db.session.scalar(select(MailingList).filter_by(slug=slug))
    issue = sending.create_issue(
        mailing_list,
        sending.IssueInput("Zápis ze setkání", "Dobrý den,\n\nv příloze zápis.\n"),
        None,
    )
    db.session.commit()
    return issue


def test_attachments_are_stored_once_and_reach_every_member_intact(app, outbox):
    add_confirmed_subscribers("ostrava-psb", 4)
    issue = draft()
    docx = office_file(attachments.DOCX_MAIN)
    add_attachment(issue, "Zápis 12-2026.pdf", PDF)
    add_attachment(issue, "C:\\Dokumenty\\program.docx", docx)
    db.session.commit()
    sending.send_now(issue)
    db.session.commit()
    run_jobs(app)

    assert db.session.scalar(select(func.count()).select_from(Attachment)) == 2
    assert len(outbox.mails) == 4
    for mail in outbox.mails:
        message = mail.message
        assert message.get_content_type() == "multipart/mixed"
        found = {part.get_filename(): part.get_content() for part in message.iter_attachments()}
        assert found == {"Zápis 12-2026.pdf": PDF, "program.docx": docx}
        assert message.get_body(("plain",)) is not None
        assert message.get_body(("html",)) is not None
        header_lines = mail.data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        assert any(h.startswith(b"List-Unsubscribe: <" + BASE_URL.encode()) for h in header_lines)
        assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in header_lines
    stored = db.session.scalar(select(Attachment).filter_by(filename="Zápis 12-2026.pdf"))
    assert stored.sha256 == hashlib.sha256(PDF).hexdigest() and stored.size == len(PDF)


@pytest.mark.parametrize(
    ("filename", "data"),
    [
        ("zapis.docx", office_file(attachments.DOCX_MAIN)),
        ("tabulka.xlsx", office_file(attachments.XLSX_MAIN)),
        ("zapis.odt", odt_file()),
        ("ZAPIS.PDF", PDF),
    ],
)
def test_allowed_formats_are_accepted(app, filename, data):
    added = add_attachment(draft(), filename, data)
    assert added.content_type == attachments.CONTENT_TYPES[filename.rsplit(".", 1)[1].lower()]


@pytest.mark.parametrize(
    ("filename", "data"),
    [
        ("program.exe", b"MZ\x90\x00"),
        ("zapis.pdf", b"MZ\x90\x00 not a pdf"),
        ("zapis.docx", PDF),
        ("zapis.docx", office_file(attachments.XLSX_MAIN)),
        ("zapis.odt", odt_file(b"application/vnd.oasis.opendocument.spreadsheet")),
        ("zapis.xlsx", b"PK\x03\x04 broken zip"),
        ("zapis", PDF),
    ],
)
def test_wrong_types_are_refused_in_czech(app, filename, data):
    with pytest.raises(AttachmentError, match="Přiložit lze jen soubory PDF, DOCX, ODT a XLSX"):
        add_attachment(draft(), filename, data)


def test_size_limits_per_file_and_per_issue(app):
    app.config["ATTACHMENT_MAX_BYTES"] = 1000
    issue = draft()
    with pytest.raises(AttachmentError, match="Soubor je příliš velký"):
        add_attachment(issue, "velky.pdf", b"%PDF-" + b"x" * 1000)
    add_attachment(issue, "a.pdf", b"%PDF-" + b"x" * 900)
    add_attachment(issue, "b.pdf", b"%PDF-" + b"x" * 900)
    with pytest.raises(AttachmentError, match="dohromady nejvýše"):
        add_attachment(issue, "c.pdf", b"%PDF-" + b"x" * 300)


def test_filenames_lose_paths_and_line_breaks(app):
    added = add_attachment(draft(), "../../etc/zá\r\npis.pdf", PDF)
    assert added.filename == "zápis.pdf"
    assert attachments.safe_filename('C:\\x\\a"b<c>.pdf') == "abc.pdf"


def test_only_drafts_take_attachments(app, outbox):
    issue = draft()
    sending.send_now(issue)
    db.session.commit()
    with pytest.raises(AttachmentError, match="jen ke konceptu") as caught:
        add_attachment(issue, "a.pdf", PDF)
    assert caught.value.status == 409


def test_remove_an_attachment_from_a_draft(app):
    issue = draft()
    added = add_attachment(issue, "a.pdf", PDF)
    db.session.commit()
    remove_attachment(issue, added.id)
    db.session.commit()
    assert db.session.scalar(select(func.count()).select_from(Attachment)) == 0
    with pytest.raises(AttachmentError):
        remove_attachment(issue, added.id)


def test_uploads_may_exceed_the_general_body_limit_but_nothing_else_may(app, client, accounts):
    from tests.conftest import csrf_token_of, log_in

    issue = draft()
    log_in(client, "koordinator@ostrava.example")
    token = csrf_token_of(client, f"/admin/issues/{issue.id}")
    big = b"%PDF-1.7\n" + b"x" * (3 * 1024 * 1024)
    upload = client.post(
        f"/admin/issues/{issue.id}/attachments",
        data={"csrf_token": token, "file": (io.BytesIO(big), "velky.pdf")},
        content_type="multipart/form-data",
    )
    assert upload.status_code == 302
    assert db.session.scalar(select(Attachment.size)) == len(big)

    too_big = b"%PDF-1.7\n" + b"x" * (12 * 1024 * 1024)
    refused = client.post(
        f"/admin/issues/{issue.id}/attachments",
        data={"csrf_token": token, "file": (io.BytesIO(too_big), "obri.pdf")},
        content_type="multipart/form-data",
    )
    assert refused.status_code == 413
    # Every other form keeps the 1 MB limit.
    edit = client.post(
        f"/admin/issues/{issue.id}/edit",
        data={"csrf_token": token, "subject": "A", "body": "x" * (2 * 1024 * 1024)},
        content_type="multipart/form-data",
    )
    assert edit.status_code == 413
