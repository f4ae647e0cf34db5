"""Subscribers: search, filter, one person's consent history, CSV import and export.

Editors and administrators only: coordinators manage their groups' members
elsewhere and must not browse everyone's addresses. Import and export go
through `subscriptions.transfer`, the same code as the CLI, so the two never
disagree about what an import does or what an export contains.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flask import (
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_wtf.file import FileField
from sqlalchemy import Select, exists, func, or_, select
from sqlalchemy.orm import selectinload
from wtforms import (  # type: ignore[attr-defined]  # SelectChoice: new in 3.3, stubs at 3.2
    SelectChoice,
    SelectField,
    StringField,
)
from wtforms.validators import DataRequired, Length

from .. import suppression
from ..bounces import recording
from ..bounces.classify import REASON_LABELS
from ..extensions import db
from ..models import (
    SUBSCRIPTION_STATUSES,
    ConsentEvent,
    MailingList,
    Subscriber,
    SubscriberImport,
    Subscription,
)
from ..people_csv import ImportRefused, uploaded_bytes
from ..stored_messages import shown
from ..subscriptions import actions, import_jobs, transfer
from .auth import CzechForm, _l, account, require_role
from .blueprint import bp
from .dashboard import STATUS_LABELS

PER_PAGE = 50
PROBLEMS_PER_PAGE = 500  # skipped lines per page of an import's report
RECENT_IMPORTS = 10
MAX_QUERY_LENGTH = 200

ACTION_LABELS = {
    "signup": _l("přihlášení"),
    "confirm": _l("potvrzení"),
    "unsubscribe": _l("odhlášení"),
    "import": _l("import"),
    "preferences_add": _l("přidání v nastavení"),
    "preferences_remove": _l("odebrání v nastavení"),
    "bounce": _l("nedoručitelnost"),
    "complaint": _l("stížnost na spam"),
    "reactivate": _l("obnovení doručování"),
}

CHANNEL_LABELS = {
    "page": _l("formulář na stránce"),
    "embed": _l("vložený formulář"),
    "api": "API",
    "import": _l("import"),
    "link": _l("odkaz v e-mailu"),
    "one-click": _l("odhlášení jedním klikem"),
    "preferences": _l("stránka nastavení"),
    "admin": _l("administrace"),
    "bounce": _l("vrácený e-mail"),
    "complaint": _l("hlášení spamu u poskytovatele"),
}

editors_only = require_role("admin", "editor")


# --- the list of subscribers --------------------------------------------------


@dataclass
class Filters:
    """The list page's query, cleaned: whatever was typed into the URL, never a 500."""

    query: str = ""
    mailing_list: MailingList | None = None
    status: str | None = None
    page: int = 1

    def args(self, **changes: Any) -> dict[str, Any]:
        """Query-string arguments for a link to this view, with some changed."""
        values = {
            "q": self.query or None,
            "list": self.mailing_list.slug if self.mailing_list else None,
            "status": self.status,
            "page": self.page if self.page > 1 else None,
        }
        values.update(changes)
        return {key: value for key, value in values.items() if value not in (None, "", 1)}


def read_filters(lists: list[MailingList]) -> tuple[Filters, list[str]]:
    """Filters from the query string, and Czech notes about the parts ignored."""
    notes = []
    filters = Filters(query=request.args.get("q", "").strip()[:MAX_QUERY_LENGTH])
    slug = request.args.get("list", "").strip()
    if slug:
        filters.mailing_list = next((m for m in lists if m.slug == slug), None)
        if filters.mailing_list is None:
            notes.append(_("Seznam s tímto označením neexistuje; zobrazují se všechny seznamy."))
    status = request.args.get("status", "").strip()
    if status:
        if status in SUBSCRIPTION_STATUSES:
            filters.status = status
        else:
            notes.append(_("Neznámý stav odběru; zobrazují se všechny stavy."))
    page = request.args.get("page", "1").strip()
    if page.isascii() and page.isdigit() and 0 < len(page) < 7:
        filters.page = max(int(page), 1)
    else:
        notes.append(_("Neplatné číslo stránky; zobrazuje se první stránka."))
    return filters, notes


def search_statement(filters: Filters) -> Select[Subscriber]:
    """The subscribers matching the filters, newest first (not yet paginated)."""
    statement = select(Subscriber)
    if filters.query:
        # email_key is the case-folded address, so folding the query matches
        # any capitals; names compare lower-cased (Unicode on PostgreSQL).
        statement = statement.where(
            or_(
                Subscriber.email_key.contains(filters.query.casefold(), autoescape=True),
                func.lower(Subscriber.name).contains(filters.query.lower(), autoescape=True),
            )
        )
    if filters.mailing_list is not None or filters.status is not None:
        membership = Subscription.subscriber_id == Subscriber.id
        conditions = [membership]
        if filters.mailing_list is not None:
            conditions.append(Subscription.list_id == filters.mailing_list.id)
        if filters.status is not None:
            conditions.append(Subscription.status == filters.status)
        statement = statement.where(exists().where(*conditions))
    return statement


@bp.get("/subscribers")
@editors_only
def subscribers() -> ResponseReturnValue:
    lists = list(db.session.scalars(select(MailingList).order_by(MailingList.id)))
    filters, notes = read_filters(lists)
    statement = search_statement(filters)
    total = db.session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    pages = max((total + PER_PAGE - 1) // PER_PAGE, 1)
    if filters.page > pages:
        filters.page = pages
    people = list(
        db.session.scalars(
            statement.options(
                selectinload(Subscriber.subscriptions).selectinload(Subscription.mailing_list)
            )
            # Newest first by id: ids follow creation and the primary key is indexed.
            .order_by(Subscriber.id.desc())
            .offset((filters.page - 1) * PER_PAGE)
            .limit(PER_PAGE)
        )
    )
    return render_template(
        "admin/subscribers.html",
        people=people,
        total=total,
        pages=pages,
        page_links=page_numbers(filters.page, pages),
        filters=filters,
        notes=notes,
        lists=lists,
        statuses=SUBSCRIPTION_STATUSES,
        status_labels=STATUS_LABELS,
    )


def page_numbers(current: int, pages: int) -> list[int | None]:
    """Page links to show: the ends and the neighbourhood of the current page; None is a gap."""
    shown = sorted({1, pages, *range(max(current - 2, 1), min(current + 2, pages) + 1)})
    result: list[int | None] = []
    for number in shown:
        if result and result[-1] is not None and number - result[-1] > 1:
            result.append(None)
        result.append(number)
    return result


# --- one subscriber -----------------------------------------------------------


def subscriber_or_404(subscriber_id: int) -> Subscriber:
    subscriber = db.session.get(Subscriber, subscriber_id)
    if subscriber is None:
        abort(404)
    return subscriber


@bp.get("/subscribers/<int(max=2147483647):subscriber_id>")
@editors_only
def subscriber(subscriber_id: int) -> ResponseReturnValue:
    person = subscriber_or_404(subscriber_id)
    events = list(
        db.session.scalars(
            select(ConsentEvent)
            .filter_by(subscriber_id=person.id)
            .options(
                selectinload(ConsentEvent.mailing_list), selectinload(ConsentEvent.consent_text)
            )
            .order_by(ConsentEvent.occurred_at.desc(), ConsentEvent.id.desc())
        )
    )
    config = current_app.config
    return render_template(
        "admin/subscriber.html",
        person=person,
        subscriptions=sorted(person.subscriptions, key=lambda s: s.list_id),
        events=events,
        bounces=recording.bounces_of(person),
        score=recording.score_of(person),
        raw_days=config["BOUNCE_RAW_DAYS"],
        reason_labels=REASON_LABELS,
        suppressed=suppression.is_suppressed(person.email_key),
        status_labels=STATUS_LABELS,
        action_labels=ACTION_LABELS,
        channel_labels=CHANNEL_LABELS,
    )


@bp.get("/subscribers/<int(max=2147483647):subscriber_id>/export.json")
@editors_only
def subscriber_export(subscriber_id: int) -> ResponseReturnValue:
    """Everything held about the person, as they would get it themselves (GDPR art. 15)."""
    person = subscriber_or_404(subscriber_id)
    response = jsonify(actions.export(person))
    response.headers["Content-Disposition"] = f'attachment; filename="odberatel-{person.id}.json"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/subscribers/<int(max=2147483647):subscriber_id>/reactivate")
@editors_only
def subscriber_reactivate(subscriber_id: int) -> ResponseReturnValue:
    """Mail a bounced address again once its owner or its server fixed the cause."""
    person = subscriber_or_404(subscriber_id)
    changed = recording.reactivate(person, by=account().email)
    db.session.commit()
    if changed:
        flash(
            ngettext(
                "Doručování obnoveno (%(num)d odběr).",
                "Doručování obnoveno (%(num)d odběrů).",
                changed,
            ),
            "success",
        )
    else:
        flash(_("Adresa nemá žádný odběr vyřazený pro nedoručitelnost."), "error")
    return redirect(url_for("admin.subscriber", subscriber_id=person.id))


@bp.route("/subscribers/<int(max=2147483647):subscriber_id>/erase", methods=["GET", "POST"])
@require_role("admin")
def subscriber_erase(subscriber_id: int) -> ResponseReturnValue:
    """Erase a person on their request made by other means (letter, phone): GDPR art. 17.

    The same erasure as the person's own link: only the keyed hash stays, so
    an import cannot bring the address back. GET asks, POST erases.
    """
    person = subscriber_or_404(subscriber_id)
    if request.method == "GET":
        return render_template("admin/subscriber_erase.html", person=person)
    actions.erase(person)
    db.session.commit()
    # No address in the log: after erasure nothing may name the person.
    current_app.logger.info("subscriber %s erased by account %s", subscriber_id, account().id)
    flash(_("Všechny údaje o odběrateli byly vymazány."), "success")
    return redirect(url_for("admin.subscribers"))


# --- CSV import and export ----------------------------------------------------


class ImportForm(CzechForm):
    # Checked by hand in the view: the reasons a file is unusable need their own messages.
    file = FileField(_l("Soubor CSV"))
    mailing_list = SelectField(_l("Seznam"), validate_choice=False)
    consent_source = StringField(
        _l("Zdroj souhlasu"),
        validators=[
            DataRequired(_l("Uveďte, kde a kdy lidé se zasíláním souhlasili.")),
            Length(max=500, message=_l("Zdroj souhlasu je příliš dlouhý (nejvýše 500 znaků).")),
        ],
    )


@bp.route("/subscribers/import", methods=["GET", "POST"])
@editors_only
def subscribers_import() -> ResponseReturnValue:
    """The upload form; a good upload is stored and imported by a worker (import_jobs.py),
    and the editor goes to its page, which follows it to the end."""
    lists = list(db.session.scalars(select(MailingList).order_by(MailingList.id)))
    form = ImportForm()
    form.mailing_list.choices = [SelectChoice(m.slug, m.name) for m in lists]
    if request.method == "GET" and request.args.get("list"):
        form.mailing_list.data = request.args["list"]
    if request.method == "GET":
        return _import_form(form)

    errors = []
    mailing_list = next((m for m in lists if m.slug == form.mailing_list.data), None)
    if mailing_list is None:
        errors.append(_("Vyberte seznam, do kterého se má importovat."))
    if not form.validate():
        errors.extend(str(error) for error in form.consent_source.errors)
    upload = None
    try:
        upload = uploaded_bytes(form.file.data, _("Vyberte soubor CSV k importu."))
    except ImportRefused as problem:
        errors.append(shown(str(problem)))
    if errors or upload is None or mailing_list is None:
        return _import_form(form, errors), 422
    try:
        record = import_jobs.start(mailing_list, form.consent_source.data or "", *upload, account())
    except ImportRefused as problem:  # a line further down cannot be read
        db.session.rollback()
        return _import_form(form, [shown(str(problem))]), 422
    db.session.commit()
    return redirect(url_for("admin.subscribers_import_status", import_id=record.id), 303)


def _import_form(form: ImportForm, errors: list[str] | None = None) -> str:
    recent = db.session.scalars(
        select(SubscriberImport)
        .options(selectinload(SubscriberImport.mailing_list))
        .order_by(SubscriberImport.id.desc())
        .limit(RECENT_IMPORTS)
    ).all()
    return render_template(
        "admin/subscribers_import.html",
        form=form,
        errors=errors or [],
        recent=recent,
        status_labels=import_jobs.STATUS_LABELS,
    )


def import_or_404(import_id: int) -> SubscriberImport:
    record = db.session.get(SubscriberImport, import_id)
    if record is None:
        abort(404)
    return record


@bp.get("/subscribers/imports/<int(max=2147483647):import_id>")
@editors_only
def subscribers_import_status(import_id: int) -> ResponseReturnValue:
    """An import's page: a live progress bar while it runs, then its report."""
    record = import_or_404(import_id)
    state = import_jobs.progress(record)
    page = 1
    number = request.args.get("page", "1").strip()
    if number.isascii() and number.isdigit() and 0 < len(number) < 7:
        page = max(int(number), 1)
    pages = max((record.skipped + PROBLEMS_PER_PAGE - 1) // PROBLEMS_PER_PAGE, 1)
    page = min(page, pages)
    problems = import_jobs.problems(
        record.id, offset=(page - 1) * PROBLEMS_PER_PAGE, limit=PROBLEMS_PER_PAGE
    )
    return render_template(
        "admin/subscriber_import.html",
        record=record,
        error=shown(record.error) if record.error else None,
        state=state,
        problems=problems,
        page=page,
        pages=pages,
        page_links=page_numbers(page, pages),
    )


@bp.get("/subscribers/imports/<int(max=2147483647):import_id>/progress.json")
@editors_only
def subscribers_import_progress(import_id: int) -> ResponseReturnValue:
    """What admin-imports.js polls while the import runs."""
    response = jsonify(import_jobs.progress(import_or_404(import_id)))
    response.headers["Cache-Control"] = "no-store"
    return response


def safe_filename(name: str) -> str:
    """A download name that cannot break out of the Content-Disposition header."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "seznam"


@bp.get("/subscribers/export.csv")
@editors_only
def subscribers_export() -> ResponseReturnValue:
    """A list's subscribers as CSV: the columns and format of `zpravodaj subscribers export`.

    Streamed in pieces as the rows come from the database (`transfer.export_chunks`,
    also behind the command), so a list of any size never sits in memory whole.
    """
    slug = request.args.get("list", "").strip()
    if not slug:
        flash(_("Vyberte seznam, který chcete exportovat."), "error")
        return redirect(url_for("admin.subscribers"))
    mailing_list = db.session.scalar(select(MailingList).filter_by(slug=slug))
    if mailing_list is None:
        abort(404)

    return Response(
        stream_with_context(transfer.export_chunks(mailing_list)),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{safe_filename(mailing_list.slug)}.csv"',
            "Cache-Control": "no-store",
        },
    )
