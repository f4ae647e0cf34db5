"""`/dev/outbox`: the mails the dev command's catcher caught, readable and clickable.

Registered only when the dev command runs (DEV_OUTBOX_DIR is set).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from flask import Blueprint, abort, current_app, render_template
from flask.typing import ResponseReturnValue
from markupsafe import Markup, escape

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
        received=datetime.fromtimestamp(int(stem) / 1e9),
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


@bp.get("/")
def index() -> ResponseReturnValue:
    stems = sorted((p.stem for p in _directory().glob("*.eml")), reverse=True)
    return render_template("dev/outbox.html", entries=[_load(s) for s in stems[:200]])


@bp.get("/<stem>")
def show(stem: str) -> ResponseReturnValue:
    entry = _load(stem)
    headers = [(k, str(v)) for k, v in entry.message.items()]
    return render_template("dev/outbox_mail.html", entry=entry, headers=headers)
