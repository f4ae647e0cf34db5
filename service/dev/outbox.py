"""`/dev/outbox`: the mails the dev command's catcher caught, readable and clickable.

Registered only when the dev command runs (DEV_OUTBOX_DIR is set). The list
comes a page at a time from the outbox's index (outbox_index.py), newest
first; a mail's page reads its .eml file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from flask import Blueprint, abort, current_app, render_template, request
from flask.typing import ResponseReturnValue
from markupsafe import Markup, escape

from . import outbox_index

bp = Blueprint("dev_outbox", __name__, url_prefix="/dev/outbox")

_URL = re.compile(r"https?://[^\s<>\"]+")


@dataclass
class OutboxEntry:
    stem: str
    received: datetime
    recipients: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    @property
    def text(self) -> str:
        part = self.message.get_body(("plain",))
        return part.get_content() if part else ""

    @property
    def html(self) -> str:
        part = self.message.get_body(("html",))
        return part.get_content() if part else ""

    @property
    def linked_text(self) -> Markup:
        """The text part with its URLs made clickable."""
        pieces, last = [], 0
        for match in _URL.finditer(self.text):
            pieces.append(escape(self.text[last : match.start()]))
            url = match.group(0)
            pieces.append(Markup('<a href="{0}">{0}</a>').format(url))
            last = match.end()
        pieces.append(escape(self.text[last:]))
        return Markup("").join(pieces)


def _directory() -> Path:
    return Path(current_app.config["DEV_OUTBOX_DIR"])


def _load(stem: str) -> OutboxEntry:
    if not re.fullmatch(r"\d+", stem):
        abort(404)
    eml = _directory() / f"{stem}.eml"
    if not eml.exists():
        abort(404)
    meta_file = _directory() / f"{stem}.json"
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    return OutboxEntry(
        stem=stem,
        received=datetime.fromtimestamp(int(stem) / 1e9, UTC),
        recipients=meta.get("rcpt_tos", []),
        message=message_from_bytes(eml.read_bytes(), policy=policy.default),
    )


@bp.after_request
def _outbox_policy(response):
    # Caught HTML mail carries inline styles and a <base target="_top"> so its
    # links open in the window; the rest of the service keeps the strict policy.
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "object-src 'none'; frame-ancestors 'self'"
    )
    return response


# A search longer than any address or subject finds nothing anyway.
MAX_SEARCH = 200


@bp.get("/")
def index() -> ResponseReturnValue:
    """A page of caught mails, newest first; `?q=` searches sender, recipients and
    subject; `?before=STEM` for older ones."""
    before_arg = request.args.get("before", "").strip()
    before = int(before_arg) if before_arg.isascii() and before_arg.isdigit() else None
    if before is not None and before > outbox_index.NEWEST:
        before = None
    search = " ".join(request.args.get("q", "").split())[:MAX_SEARCH]
    entries, older, total = outbox_index.page(_directory(), before, search)
    return render_template(
        "dev/outbox.html",
        entries=entries,
        older=older,
        total=total,
        search=search,
        paged=before is not None,
        per_page=outbox_index.PER_PAGE,
        received=lambda stem: datetime.fromtimestamp(stem / 1e9, UTC),
    )


@bp.get("/<stem>")
def show(stem: str) -> ResponseReturnValue:
    entry = _load(stem)
    headers = [(k, str(v)) for k, v in entry.message.items()]
    return render_template("dev/outbox_mail.html", entry=entry, headers=headers)
