"""Documents attached to an announcement (minutes, materials): PDF, DOCX, ODT, XLSX.

An attachment is stored once, on the issue, and base64-encoded once into the
issue's message skeleton; no recipient costs another copy. Only drafts take
attachments. A file is accepted by its extension *and* its content (PDF's
magic bytes; for the zip-based formats the ODF `mimetype` entry or the Office
`[Content_Types].xml`), so a renamed executable is refused.
"""

from __future__ import annotations

import hashlib
import io
import os
import unicodedata
import zipfile

from flask import Flask, current_app, request
from flask_babel import format_decimal
from flask_babel import gettext as _

from ..extensions import db
from ..meetings.calendar import documents
from ..models import Attachment, Issue
from ..request_values import bound

ODT_MIMETYPE = b"application/vnd.oasis.opendocument.text"
DOCX_MAIN = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
XLSX_MAIN = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"
CONTENT_TYPES = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "odt": "application/vnd.oasis.opendocument.text",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
FILENAME_MAX = 150
# Endpoints that receive an upload: their requests may be larger than MAX_CONTENT_LENGTH.
UPLOAD_ENDPOINTS = {"admin.issue_attachment_add", "api.add_attachment"}


class AttachmentError(Exception):
    """The file cannot be attached; the message is in the request's language (422, or 409
    for a sent issue)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def max_bytes() -> int:
    return current_app.config["ATTACHMENT_MAX_BYTES"]


def _megabytes(size: int) -> str:
    """ "10 MB", "1,5 MB" (Czech) or "1.5 MB" (English)."""
    return f"{format_decimal(round(size / (1024 * 1024), 3))} MB"


def safe_filename(filename: str) -> str:
    """The file's own name without any path, control characters or line breaks."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = unicodedata.normalize("NFC", name)
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C" and c not in '"<>|:*?')
    name = " ".join(name.split()).strip(" .")
    if len(name) > FILENAME_MAX:
        stem, dot, ext = name.rpartition(".")
        name = stem[: FILENAME_MAX - len(ext) - 1] + dot + ext
    return name


def detect_type(filename: str, data: bytes) -> str | None:
    """The content type when the extension and the content agree on an allowed format."""
    extension = os.path.splitext(filename)[1].lower().lstrip(".")
    if extension not in CONTENT_TYPES:
        return None
    if extension == "pdf":
        return CONTENT_TYPES["pdf"] if data.startswith(b"%PDF-") else None
    if not data.startswith(b"PK\x03\x04"):
        return None
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            if extension == "odt":
                if "mimetype" not in names:
                    return None
                ok = archive.read("mimetype").strip() == ODT_MIMETYPE
            else:
                if "[Content_Types].xml" not in names:
                    return None
                # Bounded read: the manifest is tiny; a zip bomb must not expand here.
                with archive.open("[Content_Types].xml") as manifest:
                    types = manifest.read(256 * 1024).decode("utf-8", "replace")
                ok = (DOCX_MAIN if extension == "docx" else XLSX_MAIN) in types
    except (zipfile.BadZipFile, KeyError, OSError, RuntimeError, ValueError):
        return None
    return CONTENT_TYPES[extension] if ok else None


def add_attachment(issue: Issue, filename: str, data: bytes) -> Attachment:
    """Attach a document to a draft, or raise AttachmentError with the reason."""
    if issue.status not in Issue.EDITABLE:
        raise AttachmentError(_("Přílohy lze přidávat jen ke konceptu."), 409)
    name = safe_filename(filename or "")
    if not name or not data:
        raise AttachmentError(_("Vyberte soubor, který chcete přiložit."))
    limit = max_bytes()
    if len(data) > limit:
        raise AttachmentError(
            _("Soubor je příliš velký; nejvýše %(size)s.", size=_megabytes(limit))
        )
    content_type = detect_type(name, data)
    if content_type is None:
        raise AttachmentError(_("Přiložit lze jen soubory PDF, DOCX, ODT a XLSX."))
    total = sum(a.size for a in documents(issue))
    if total + len(data) > 2 * limit:
        raise AttachmentError(
            _(
                "Přílohy vydání mohou mít dohromady nejvýše %(size)s.",
                size=_megabytes(2 * limit),
            )
        )
    attachment = Attachment(
        filename=name,
        content_type=content_type,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        data=data,
    )
    issue.attachments.append(attachment)
    db.session.flush()
    return attachment


def remove_attachment(issue: Issue, attachment_id: int) -> None:
    """Take a document off a draft."""
    if issue.status not in Issue.EDITABLE:
        raise AttachmentError(_("Přílohy lze odebírat jen z konceptu."), 409)
    for attachment in documents(issue):
        if attachment.id == attachment_id:
            issue.attachments.remove(attachment)
            db.session.flush()
            return
    raise AttachmentError(_("Příloha neexistuje."), 404)


def attachment_json(attachment: Attachment) -> dict:
    return {
        "id": attachment.id,
        "filename": attachment.filename,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "sha256": attachment.sha256,
    }


def init_app(app: Flask) -> None:
    """Let upload endpoints take ATTACHMENT_MAX_BYTES (+1 MB for the form around it).

    `create_app` registers this before the input guard, which reads every
    form and must read an upload with the upload's own limit. Every other
    request keeps MAX_CONTENT_LENGTH.
    """

    @app.before_request
    def _allow_uploads() -> None:
        current = bound(request)  # one look-up, not one per read through the proxy
        if current.endpoint in UPLOAD_ENDPOINTS:
            current.max_content_length = max_bytes() + 1024 * 1024
