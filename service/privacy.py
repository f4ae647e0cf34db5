"""The privacy notice, public and versioned, and the stored texts for administrators.

The notice is a versioned text like the consent texts (service/consent.py):
every consent given on a form records the notice's version current at that
moment, so the exact notice a person was shown can be looked up years later
here (`/privacy/<version>`), and an administrator reading a consent history
can open any stored consent or notice text by its id.
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template
from flask.typing import ResponseReturnValue
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from . import consent
from .admin.auth import login_required
from .archive.dates import czech_date, local_date
from .extensions import db
from .issues.markdown import markdown_to_html
from .models import ConsentText

bp = Blueprint("privacy", __name__)

KIND = "privacy"
KIND_LABELS = {
    "consent": _l("Souhlas s odběrem zpravodaje"),
    "group_consent": _l("Souhlas se členstvím v pracovní skupině"),
    "privacy": _l("Zásady zpracování osobních údajů"),
}


def _date(text: ConsentText) -> str:
    return czech_date(local_date(text.created_at, current_app.config["TIMEZONE"]))


def _render(text: ConsentText, *, current: ConsentText) -> str:
    older = db.session.scalars(
        select(ConsentText)
        .where(ConsentText.kind == KIND, ConsentText.id != text.id)
        .order_by(ConsentText.version.desc())
    ).all()
    return render_template(
        "public/privacy.html",
        text=text,
        body_html=markdown_to_html(text.text),
        date=_date(text),
        current=current,
        is_current=text.id == current.id,
        others=[(t.version, _date(t)) for t in older],
    )


@bp.get("/privacy")
def notice() -> ResponseReturnValue:
    """The notice as it reads now (stored as a new version first if it changed)."""
    current = consent.current_text(KIND)
    return _render(current, current=current)


@bp.get("/privacy/<int(max=2147483647):version>")
def notice_version(version: int) -> ResponseReturnValue:
    """An earlier (or the current) version, as people were shown it then."""
    text = consent.text_version(KIND, version)
    if text is None:
        abort(404)
    return _render(text, current=consent.current_text(KIND))


@bp.get("/admin/texts/<int(max=2147483647):text_id>")
@login_required
def admin_text(text_id: int) -> ResponseReturnValue:
    """A stored consent or privacy text, exactly as stored, with its hash (evidence)."""
    text = db.session.get(ConsentText, text_id)
    if text is None:
        abort(404)
    return render_template(
        "admin/consent_text.html",
        text=text,
        label=KIND_LABELS.get(text.kind, text.kind),
    )
