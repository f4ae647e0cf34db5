"""Issues: compose, preview, test-send, send or schedule, follow progress.

Every state change goes through `service.issues.sending`, the one place that
knows which transitions are allowed; these views only translate between
forms and those functions, commit, and show the outcome in Czech. Times are
stored as naive UTC and shown and entered in the configured zone
(Europe/Prague).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from babel.numbers import format_decimal
from babel.units import format_unit
from flask import (
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import ngettext
from sqlalchemy import func, select
from wtforms import (  # type: ignore[attr-defined]  # SelectChoice: new in 3.3, stubs at 3.2
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
    URLField,
)
from wtforms.widgets import DateTimeLocalInput

from ..bounces import complaints, recording
from ..clock import SkippedLocalTime, from_local, local_zone, utcnow
from ..extensions import db
from ..i18n import current_language
from ..issues import attachments, sending
from ..issues.sending import STATUS_LABELS, IssueStateError
from ..mail import sender_domain
from ..meetings import occurrences, series
from ..meetings import rules as meetings
from ..meetings.calendar import documents, mail_context, title_from_subject
from ..meetings.recurrence import REPEAT_CHOICES, choice_for_rule
from ..models import (
    Bounce,
    Delivery,
    DeliveryStatus,
    Issue,
    IssueStatus,
    MailingList,
    Meeting,
    MeetingMethod,
    Subscription,
    SubscriptionStatus,
)
from .auth import CzechForm, _l, account, require_list_access, visible_lists
from .blueprint import bp
from .dashboard import prague

PER_PAGE = 50
# The final report lists this many failed deliveries; the rest are only counted.
REPORT_FAILURES = 100
FINAL_STATUSES = Issue.FINISHED
# The iframe of the preview page loads the mail with nothing but its own
# inline styles and remote images: no scripts, no forms, framed only by us.
PREVIEW_CSP = "default-src 'none'; img-src https: data:; style-src 'unsafe-inline'; " + (
    "frame-ancestors 'self'"
)
DATETIME_LOCAL_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%d. %m. %Y %H:%M")
# Further ahead is a typo, not a plan (the API has the same horizon).
SCHEDULE_HORIZON = timedelta(days=366)


# --- progress phrases, shared with admin-issues.js through progress.json ------------


def format_percent(value: float) -> str:
    """37.5 → "37,5 %" in Czech, "37.5%" in English (CLDR's numbers)."""
    figure = decimal_figure(value)
    return f"{figure} %" if current_language() == "cs" else f"{figure}%"


@bp.app_template_filter("decimal_figure")
def decimal_figure(value: float) -> str:
    """12.5 → "12,5" in Czech, "12.5" in English: a size or count with at most one decimal."""
    return format_decimal(value, "#,##0.#", locale=current_language())


def format_rate(per_minute: int) -> str:
    """ "26 zpráv za minutu" / "26 messages a minute", Czech's three plural forms."""
    figure = format_decimal(per_minute, locale=current_language())
    return ngettext(
        "%(count)s zpráva za minutu", "%(count)s zpráv za minutu", per_minute, count=figure
    )


def format_duration(seconds: int) -> str:
    """A time left as the short units people glance at: "43 s", "3 min", "2 h 5 min",
    "1 den 4 h" (the two largest units, each in its own CLDR unit and plural form)."""

    def unit(amount: int, name: str) -> str:
        return format_unit(amount, f"duration-{name}", length="short", locale=current_language())

    if seconds < 60:
        return unit(max(seconds, 1), "second")
    minutes = round(seconds / 60)
    if minutes < 60:
        return unit(minutes, "minute")
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return " ".join([unit(hours, "hour")] + ([unit(minutes, "minute")] if minutes else []))
    days, hours = divmod(hours + (minutes >= 30), 24)
    return " ".join([unit(days, "day")] + ([unit(hours, "hour")] if hours else []))


def format_eta(seconds: int | None) -> str:
    """An estimate of the time left: "≈ 43 s zbývá", "≈ 3 min zbývá"; "" when unknown."""
    if seconds is None:
        return ""
    return _("≈ %(time)s zbývá", time=format_duration(seconds))


def progress_texts(state: dict[str, Any]) -> dict[str, str]:
    """The phrases of a `sending.progress` state in the request's language, for the page
    and for progress.json (the page shows "rate · time left")."""
    eta = format_eta(state["eta_seconds"])
    if not eta and state["status"] == IssueStatus.SENDING and state["counts"]["pending"]:
        eta = _("zbývající čas zatím nelze odhadnout")
    return {
        "percent": format_percent(state["percent"]),
        "rate": format_rate(state["rate_per_minute"]),
        "eta": eta,
    }


def _local_input_value(moment: datetime | None) -> str:
    """A stored UTC time as the value of an <input type="datetime-local">."""
    if moment is None:
        return ""
    return moment.replace(tzinfo=UTC).astimezone(local_zone()).strftime("%Y-%m-%dT%H:%M")


def parse_local_datetime(value: Any) -> tuple[datetime | None, str | None]:
    """The wall-clock time typed in the configured zone, as an aware datetime, or an error.

    A time skipped by the spring clock change does not exist there; it is
    refused rather than silently moved by an hour.
    """
    if not isinstance(value, str) or not value.strip():
        return None, _("Zadejte datum a čas odeslání.")
    naive = None
    for pattern in DATETIME_LOCAL_FORMATS:
        try:
            naive = datetime.strptime(value.strip(), pattern)
            break
        except ValueError:
            continue
    if naive is None:
        return None, _("Zadejte datum a čas ve tvaru 10. 12. 2026 9:30.")
    try:
        aware = from_local(naive)
    except SkippedLocalTime as skipped:
        return None, str(skipped)
    except OverflowError:
        return None, _("Zadejte datum a čas ve tvaru 10. 12. 2026 9:30.")
    if aware - datetime.now(UTC) > SCHEDULE_HORIZON:
        return None, _("Vydání lze naplánovat nejvýše rok dopředu.")
    return aware, None


# --- loading and access -------------------------------------------------------


def _issue_or_404(issue_id: int) -> Issue:
    issue = db.session.get(Issue, issue_id)
    if issue is None:
        abort(404)
    require_list_access(issue.mailing_list)
    return issue


def _wants_json() -> bool:
    """A script or API-like client (not a browser form): answer JSON instead of redirecting."""
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return request.is_json or best == "application/json"


def _confirmed_count(mailing_list: MailingList) -> int:
    """How many would get the issue if it were sent now (shown next to "Odeslat hned")."""
    return (
        db.session.scalar(
            select(func.count())
            .select_from(Subscription)
            .where(
                Subscription.list_id == mailing_list.id,
                Subscription.status == SubscriptionStatus.CONFIRMED,
            )
        )
        or 0
    )


# --- list ----------------------------------------------------------------------


@bp.get("/issues")
def issues() -> ResponseReturnValue:
    """The issues of every list this account may see, newest first."""
    lists = visible_lists()
    page = request.args.get("page", 1, type=int) or 1
    list_ids = [m.id for m in lists]
    condition = Issue.list_id.in_(list_ids)
    total = db.session.scalar(select(func.count()).select_from(Issue).where(condition)) or 0
    page = min(max(page, 1), max((total + PER_PAGE - 1) // PER_PAGE, 1))
    rows = db.session.scalars(
        select(Issue)
        .where(condition)
        .order_by(Issue.created_at.desc(), Issue.id.desc())
        .limit(PER_PAGE)
        .offset((page - 1) * PER_PAGE)
    ).all()
    counts = {
        issue.id: sending.delivery_counts(issue)
        for issue in rows
        if issue.status not in Issue.EDITABLE
    }
    pages = max((total + PER_PAGE - 1) // PER_PAGE, 1)
    return render_template(
        "admin/issues.html",
        issues=rows,
        counts=counts,
        lists=lists,
        labels=STATUS_LABELS,
        page=page,
        pages=pages,
        total=total,
    )


# --- compose -------------------------------------------------------------------


def _meeting_editable(issue: Issue | None) -> bool:
    """A draft's own meeting fields: not for updates, reminders or cancellations of a
    meeting already announced (those change through the meeting's own buttons)."""
    if issue is None or issue.meeting is None:
        return True
    return issue.meeting_method == MeetingMethod.REQUEST and not meetings.ever_sent(issue.meeting)


class IssueForm(CzechForm):
    """The issue editor: the mail's fields and, on a group's list, its meeting.

    The checks are the domain's (`sending.validate_fields`,
    `meetings.validate_meeting`), so the editor and the API refuse the same
    input in the same Czech words; `validate` files their messages under the
    fields. The meeting fields count only when `with_meeting` is set.
    """

    # What `validate` made of the fields (only read once it has passed).
    issue_input: sending.IssueInput
    # Every field is a string, "" when left out (as the domain's checks expect).
    subject = StringField(_l("Předmět"), default="")
    preheader = StringField(_l("Perex"), default="")
    body = TextAreaField(_l("Text vydání"), default="")
    meeting_start = StringField(_l("Začátek"), default="", widget=DateTimeLocalInput())
    meeting_end = StringField(_l("Konec"), default="", widget=DateTimeLocalInput())
    meeting_location = StringField(_l("Místo"), default="")
    meeting_online_url = URLField(_l("Odkaz na online připojení (nepovinný)"), default="")
    # A series (recurrence.py); an unknown key is refused by the domain's check, in Czech.
    meeting_repeat = SelectField(
        _l("Opakování"),
        choices=[SelectChoice(key, label) for key, label in REPEAT_CHOICES.items()],
        default="",
        validate_choice=False,
    )
    meeting_agenda = TextAreaField(_l("Program"), default="")

    def __init__(
        self, *args: Any, mailing_list: MailingList, with_meeting: bool, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.mailing_list = mailing_list
        self.with_meeting = with_meeting
        self.meeting: meetings.MeetingInput | None = None

    def validate(self, extra_validators: Any = None) -> bool:
        """The form's own checks (the CSRF token), then the domain's, filed under the fields."""
        super().validate(extra_validators)
        fields, errors = sending.validate_fields(
            self.subject.data, self.body.data, self.preheader.data
        )
        if self.with_meeting:
            self.meeting, meeting_errors = meeting_from_form(self.data, self.mailing_list)
            errors.update(meeting_errors)
        for name, message in errors.items():
            self[name].errors = [*self[name].errors, message]
        self.issue_input = fields
        return not self.errors


def _render_form(issue: Issue | None, form: IssueForm) -> tuple[str, int]:
    preview_url = (
        url_for("admin.issue_edit_preview", issue_id=issue.id)
        if issue is not None
        else url_for("admin.issue_new_preview", list=form.mailing_list.slug)
    )
    return render_template(
        "admin/issue_edit.html",
        issue=issue,
        mailing_list=form.mailing_list,
        form=form,
        meeting_editable=form.with_meeting,
        preview_url=preview_url,
        zone=current_app.config["TIMEZONE"],
    ), (422 if form.errors else 200)


@bp.route("/issues/new", methods=["GET", "POST"])
def issue_new() -> ResponseReturnValue:
    """A new draft on the list chosen on the issues page."""
    slug = request.values.get("list", "")
    mailing_list = db.session.scalar(select(MailingList).filter_by(slug=slug)) if slug else None
    if mailing_list is None:
        if not slug:
            flash(_("Vyberte seznam, pro který vydání připravujete."), "warning")
            return redirect(url_for("admin.issues"))
        abort(404)
    require_list_access(mailing_list)
    form = IssueForm(mailing_list=mailing_list, with_meeting=mailing_list.kind == "group")
    if not form.validate_on_submit():
        return _render_form(None, form)
    issue = sending.create_issue(mailing_list, form.issue_input, account())
    if form.meeting is not None:
        meetings.attach_meeting(issue, form.meeting)
    db.session.commit()
    flash(_("Koncept vydání je uložen."), "success")
    return redirect(url_for("admin.issue", issue_id=issue.id))


@bp.route("/issues/<int(max=2147483647):issue_id>/edit", methods=["GET", "POST"])
def issue_edit(issue_id: int) -> ResponseReturnValue:
    """Edit a draft; a scheduled issue goes back to draft (its time is dropped)."""
    issue = _issue_or_404(issue_id)
    if issue.status not in Issue.EDITABLE:
        flash(_("Upravit lze jen koncept; odeslané vydání můžete duplikovat."), "warning")
        return redirect(url_for("admin.issue", issue_id=issue.id))
    # What is stored fills the form only on GET: a field left out of a POST is empty.
    stored = None
    if request.method == "GET":
        stored = {"subject": issue.subject, "preheader": issue.preheader, "body": issue.body}
        stored.update(meeting_input_values(issue.meeting))
    meeting_editable = _meeting_editable(issue)
    form = IssueForm(
        data=stored,
        mailing_list=issue.mailing_list,
        with_meeting=issue.mailing_list.kind == "group" and meeting_editable,
    )
    if not form.validate_on_submit():
        return _render_form(issue, form)
    was_scheduled = issue.status == IssueStatus.SCHEDULED
    try:
        sending.update_issue(issue, form.issue_input)
        if meeting_editable:
            meetings.edit_draft_meeting(issue, form.meeting)
    except (IssueStateError, meetings.MeetingError) as error:  # sent meanwhile by someone else
        db.session.rollback()
        flash(str(error), "error")
        return redirect(url_for("admin.issue", issue_id=issue.id))
    db.session.commit()
    if was_scheduled:
        flash(_("Změny jsou uloženy. Naplánované odeslání bylo zrušeno, vydání je opět koncept."))
    else:
        flash(_("Změny jsou uloženy."), "success")
    return redirect(url_for("admin.issue", issue_id=issue.id))


# --- the issue's page ------------------------------------------------------------


def _failed_deliveries(issue: Issue) -> list[Delivery]:
    return list(
        db.session.scalars(
            select(Delivery)
            .where(Delivery.issue_id == issue.id, Delivery.status == DeliveryStatus.FAILED)
            .order_by(Delivery.id)
            .limit(REPORT_FAILURES)
        )
    )


def _bounces(issue: Issue) -> tuple[int, list[Bounce]]:
    """Bounces that came back after the server had accepted the message (via VERP)."""
    of_issue = (Bounce.delivery_id == Delivery.id, Delivery.issue_id == issue.id)
    total = db.session.scalar(select(func.count(Bounce.id)).where(*of_issue)) or 0
    shown = db.session.scalars(
        select(Bounce).where(*of_issue).order_by(Bounce.id).limit(REPORT_FAILURES)
    )
    return total, list(shown)


def _render_issue(
    issue: Issue, *, errors: dict | None = None, values: dict | None = None
) -> tuple[str, int]:
    errors = errors or {}
    state = sending.progress(issue)
    counts = state["counts"]
    unreached = counts["failed"] + counts["pending"] + counts["cancelled"]
    return render_template(
        "admin/issue.html",
        issue=issue,
        repeat_choices=REPEAT_CHOICES,
        state=state,
        counts=counts,
        label=STATUS_LABELS[issue.status],
        texts=progress_texts(state),
        final=issue.status in FINAL_STATUSES,
        failures=_failed_deliveries(issue) if counts["failed"] else [],
        bounces=_bounces(issue) if issue.status in FINAL_STATUSES else (0, []),
        complaint_rate=complaints.issue_rate(issue, counts["sent"])
        if issue.status in FINAL_STATUSES
        else None,
        blocked_domains=recording.blocked_domains(issue.id)
        if issue.status in FINAL_STATUSES
        else [],
        may_resend=issue.status in FINAL_STATUSES and unreached > 0 and issue.started_at,
        recipients_now=_confirmed_count(issue.mailing_list)
        if issue.status in Issue.EDITABLE
        else None,
        schedule_value=(values or {}).get("at") or _local_input_value(issue.scheduled_at),
        schedule_min=datetime.now(local_zone()).strftime("%Y-%m-%dT%H:%M"),
        addresses=(values or {}).get("addresses", ""),
        errors=errors,
        zone=current_app.config["TIMEZONE"],
        meeting=mail_context(issue),
        meeting_values={**meeting_input_values(issue.meeting), **(values or {})},
        may_change_meeting=_may_change_meeting(issue),
        meeting_dates=_upcoming_dates(issue) if _may_change_meeting(issue) else [],
        series_neighbours=series.neighbours(issue.meeting) if issue.meeting else {},
        documents=documents(issue),
        attachment_limit=attachments.max_bytes(),
    ), (422 if errors else 200)


def _may_change_meeting(issue: Issue) -> bool:
    """A sent (or sending) invitation of a meeting still ahead (a series: with a date
    ahead) and not cancelled."""
    meeting = issue.meeting
    return (
        meeting is not None
        and issue.meeting_method == MeetingMethod.REQUEST
        and issue.status in Issue.PUBLISHED
        and meeting.cancelled_at is None
        and (
            meeting.end > utcnow()
            or bool(meeting.rrule and occurrences.upcoming(meeting, after=utcnow(), count=1))
        )
    )


def _upcoming_dates(issue: Issue) -> list[occurrences.Occurrence]:
    """A series' next dates, each to move or cancel alone on the invitation's page."""
    meeting = issue.meeting
    if meeting is None or not meeting.rrule:
        return []
    return occurrences.upcoming(meeting, after=utcnow(), count=occurrences.LISTED_AFTER)


@bp.get("/issues/<int(max=2147483647):issue_id>")
def issue(issue_id: int) -> ResponseReturnValue:
    """Actions for a draft; live progress while sending; the final report when done."""
    return _render_issue(_issue_or_404(issue_id))


@bp.get("/issues/<int(max=2147483647):issue_id>/progress.json")
def issue_progress(issue_id: int) -> ResponseReturnValue:
    """What admin-issues.js polls: `sending.progress` plus the texts to show."""
    issue = _issue_or_404(issue_id)
    state = sending.progress(issue)
    state["texts"] = progress_texts(state)
    response = jsonify(state)
    response.headers["Cache-Control"] = "no-store"
    return response


# --- preview -----------------------------------------------------------------------


@bp.get("/issues/<int(max=2147483647):issue_id>/preview")
def issue_preview(issue_id: int) -> ResponseReturnValue:
    """Subject, the HTML part (framed, sandboxed) and the text part, exactly as sent."""
    issue = _issue_or_404(issue_id)
    shown = sending.preview(issue)
    return render_template("admin/issue_preview.html", issue=issue, preview=shown)


@bp.get("/issues/<int(max=2147483647):issue_id>/preview.html")
def issue_preview_html(issue_id: int) -> ResponseReturnValue:
    """The HTML part alone, for the preview's iframe, under a CSP of its own.

    The app's after_request only sets CSP and X-Frame-Options when a view has
    not, so these stricter values stand: the mail may not run anything, and
    only our own pages may frame it.
    """
    return _framed(sending.preview(_issue_or_404(issue_id)).html)


def _framed(html: str) -> Response:
    """A mail's HTML part for the preview frame: nothing runs, only our pages frame it."""
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = PREVIEW_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Cache-Control"] = "no-store"
    return response


# The editor's live preview: the form as typed, posted into the preview frame (by the
# "Náhled" button's formaction/formtarget, and by admin-issues.js while the editor types).


@bp.post("/issues/new/preview")
def issue_new_preview() -> ResponseReturnValue:
    """The mail a new draft on the list `?list=` would make, as typed so far."""
    slug = request.args.get("list", "")
    mailing_list = db.session.scalar(select(MailingList).filter_by(slug=slug)) if slug else None
    if mailing_list is None:
        abort(404)
    require_list_access(mailing_list)
    form = IssueForm(mailing_list=mailing_list, with_meeting=mailing_list.kind == "group")
    return _framed(_unsaved_preview(form, None))


@bp.post("/issues/<int(max=2147483647):issue_id>/edit/preview")
def issue_edit_preview(issue_id: int) -> ResponseReturnValue:
    """The mail a draft would make with the edits typed so far (nothing is saved)."""
    issue = _issue_or_404(issue_id)
    form = IssueForm(
        mailing_list=issue.mailing_list,
        with_meeting=issue.mailing_list.kind == "group" and _meeting_editable(issue),
    )
    return _framed(_unsaved_preview(form, issue))


def _unsaved_preview(form: IssueForm, issue: Issue | None) -> str:
    """The HTML part of the mail the form's fields would make, footer included.

    Built through the same skeleton as a send, on an Issue that is never added
    to the session (its relationships have no backrefs, so nothing cascades it
    in). Fields the editor has not finished are shown as far as they go: an
    error under a field does not stop the preview, but what could not be in a
    mail header (line breaks, control characters) is made one line.
    """
    form.validate()
    fields = form.issue_input
    unsaved = Issue(
        mailing_list=form.mailing_list,
        subject=sending.one_line(fields.subject)[: sending.SUBJECT_MAX],
        preheader=sending.one_line(fields.preheader)[: sending.PREHEADER_MAX],
        body=fields.body[: sending.BODY_MAX],
        status=IssueStatus.DRAFT,
        number=issue.number if issue is not None else None,
    )
    stored = issue.meeting if issue is not None else None
    if form.meeting is not None:
        unsaved.meeting = _unsaved_meeting(form.meeting, form.mailing_list, stored, unsaved.subject)
        unsaved.meeting_method = "REQUEST"
    elif issue is not None and stored is not None and not form.with_meeting:
        # An announcement about a meeting already sent: its meeting as stored.
        unsaved.meeting, unsaved.meeting_method = stored, issue.meeting_method
        unsaved.meeting_sequence = issue.meeting_sequence
        unsaved.meeting_occurrence = issue.meeting_occurrence
    return sending.preview(unsaved).html


def _unsaved_meeting(
    fields: meetings.MeetingInput, mailing_list: MailingList, stored: Meeting | None, subject: str
) -> Meeting:
    """The meeting as typed into a draft invitation, for its preview only (never added).

    Untitled, it is named by the typed subject as the send will name it: an empty
    title would make `meeting_title` look for the invitation of a meeting without id.
    """
    title = stored.title if stored is not None else ""
    return Meeting(
        mailing_list=mailing_list,
        uid=stored.uid if stored is not None else f"ukazka@{sender_domain()}",
        sequence=stored.sequence if stored is not None else 0,
        title=title or title_from_subject(subject)[:200] or mailing_list.name,
        start=fields.start,
        end=fields.end,
        rrule=fields.rrule,
        location=fields.location,
        online_url=fields.online_url,
        agenda=fields.agenda,
    )


# --- actions -----------------------------------------------------------------------


def _done(
    issue: Issue, message: str, category: str = "success", *, status: int = 200
) -> ResponseReturnValue:
    """After a successful action: JSON for scripts, a flash and a redirect for browsers."""
    message = str(message)  # a lazy message of ACTIONS, in this request's language
    if _wants_json():
        return jsonify({"message": message, **sending.progress(issue)}), status
    flash(message, category)
    return redirect(url_for("admin.issue", issue_id=issue.id))


def _refused(issue: Issue, message: str) -> ResponseReturnValue:
    """A transition the issue's state does not allow (409), e.g. pausing a sent issue."""
    db.session.rollback()
    if _wants_json():
        return jsonify({"error": message, "status": issue.status}), 409
    flash(message, "error")
    return redirect(url_for("admin.issue", issue_id=issue.id))


def _invalid(issue: Issue, field: str, message: str, values: dict) -> ResponseReturnValue:
    """A field error on the issue's page (422), with what was typed kept."""
    db.session.rollback()
    if _wants_json():
        return jsonify({"errors": {field: message}}), 422
    return _render_issue(issue, errors={field: message}, values=values)


def _test_send(issue: Issue, form: Any) -> ResponseReturnValue:
    addresses, error = sending.parse_test_addresses(form.get("addresses", ""))
    if error:
        return _invalid(issue, "addresses", error, {"addresses": form.get("addresses")})
    sending.send_test(issue, addresses)
    db.session.commit()
    sent_to = ngettext(
        "Zkušební e-mail odchází na %(num)d adresu.",
        "Zkušební e-mail odchází na %(num)d adres.",
        len(addresses),
    )
    return _done(issue, sent_to + " " + ", ".join(addresses))


def _send(issue: Issue, form: Any) -> ResponseReturnValue:
    if not form.get("confirm") and issue.status in Issue.EDITABLE:
        return _invalid(issue, "send", _("Potvrďte odeslání zaškrtnutím políčka."), {})
    sending.send_now(issue)
    db.session.commit()
    return _done(issue, _("Vydání se odesílá."), status=202)


def _schedule(issue: Issue, form: Any) -> ResponseReturnValue:
    at, error = parse_local_datetime(form.get("at"))
    if at is None:  # then `error` says why
        return _invalid(issue, "at", error or "", {"at": form.get("at")})
    if issue.status in Issue.EDITABLE:
        try:
            sending.schedule(issue, at)
        except IssueStateError as refused:  # the only reason left: a past time
            return _invalid(issue, "at", str(refused), {"at": form.get("at")})
    else:
        sending.schedule(issue, at)  # raises the state error
    db.session.commit()
    when = prague(at.astimezone(UTC).replace(tzinfo=None), "%-d. %-m. %Y v %H:%M")
    message = _("Vydání je naplánováno na %(when)s (pražského času).", when=when)
    return _done(issue, message, status=202)


def _cancel(issue: Issue, form: Any) -> ResponseReturnValue:
    if not form.get("confirm") and issue.status not in FINAL_STATUSES:
        return _invalid(issue, "cancel", _("Potvrďte zrušení zaškrtnutím políčka."), {})
    sending.cancel(issue)
    db.session.commit()
    return _done(issue, _("Vydání je zrušeno; kdo ho už dostal, tomu zůstává."))


def _duplicate(issue: Issue, form: Any) -> ResponseReturnValue:
    copy = sending.duplicate(issue, account())
    db.session.commit()
    if _wants_json():
        return jsonify({"id": copy.id}), 201
    flash(_("Vznikl nový koncept se stejným obsahem."), "success")
    return redirect(url_for("admin.issue_edit", issue_id=copy.id))


def _resend(issue: Issue, form: Any) -> ResponseReturnValue:
    count = sending.resend_unreached(issue)
    db.session.commit()
    message = ngettext(
        "Vydání znovu odchází %(num)d adresátovi, kterému se nedoručilo.",
        "Vydání znovu odchází %(num)d adresátům, kterým se nedoručilo.",
        count,
    )
    return _done(issue, message, status=202)


def _plain(change: Callable[[Issue], Any], message: str) -> Callable[[Issue, Any], Any]:
    """An action with nothing to read from the form: change, commit, say `message`."""

    def act(issue: Issue, form: Any) -> ResponseReturnValue:
        change(issue)
        db.session.commit()
        return _done(issue, message)

    return act


# The buttons of the issue's page, by the last part of their URL.
ACTIONS: dict[str, Callable[[Issue, Any], Any]] = {
    "test": _test_send,
    "send": _send,
    "schedule": _schedule,
    "unschedule": _plain(
        sending.unschedule, _l("Naplánované odeslání je zrušeno, vydání je opět koncept.")
    ),
    "pause": _plain(sending.pause, _l("Odesílání je pozastaveno.")),
    "resume": _plain(sending.resume, _l("Odesílání pokračuje.")),
    "cancel": _cancel,
    "duplicate": _duplicate,
    "resend": _resend,
}


@bp.post("/issues/<int(max=2147483647):issue_id>/<action>")
def issue_action(issue_id: int, action: str) -> ResponseReturnValue:
    """Every button of the issue's page; the domain function decides what is allowed."""
    act = ACTIONS.get(action)
    if act is None:
        abort(404)
    issue = _issue_or_404(issue_id)
    try:
        return act(issue, request.form)
    except IssueStateError as refused:
        return _refused(issue, str(refused))


# --- meetings and attachments (working groups) -------------------------------------

MEETING_FORM_FIELDS = ("start", "end", "location", "online_url", "agenda", "repeat")


def meeting_form_values(form: Any) -> dict[str, str]:
    """The meeting fields of a form (`meeting_start`, …) by their meeting names."""
    return {name: form.get(f"meeting_{name}", "") for name in MEETING_FORM_FIELDS}


def meeting_from_form(
    form: Any, mailing_list: MailingList
) -> tuple[meetings.MeetingInput | None, dict[str, str]]:
    """(meeting or None when every field is empty, errors keyed `meeting_<field>`)."""
    if mailing_list.kind != "group":
        return None, {}
    values = meeting_form_values(form)
    if not any(value.strip() for value in values.values()):
        return None, {}
    fields, errors = meetings.validate_meeting(values)
    return fields, {f"meeting_{name}": message for name, message in errors.items()}


def meeting_input_values(meeting: Any) -> dict[str, str]:
    """A stored meeting as the values of the form's meeting fields."""
    if meeting is None:
        return {}
    return {
        "meeting_start": _local_input_value(meeting.start),
        "meeting_end": _local_input_value(meeting.end),
        "meeting_location": meeting.location,
        "meeting_online_url": meeting.online_url,
        "meeting_agenda": meeting.agenda,
        "meeting_repeat": choice_for_rule(meeting.rrule),
    }


def _meeting_or_404(meeting_id: int) -> Meeting:
    meeting = db.session.get(Meeting, meeting_id)
    if meeting is None:
        abort(404)
    require_list_access(meeting.mailing_list)
    return meeting


def _posted_from() -> Issue | None:
    """The issue whose page a meeting's form was posted from (its field `issue`)."""
    return db.session.get(Issue, request.form.get("issue", 0, type=int) or 0)


def _meeting_refused(issue: Issue | None, error: meetings.MeetingError) -> ResponseReturnValue:
    """The meeting cannot change this way now: say why on the page it came from."""
    db.session.rollback()
    flash(str(error), "error")
    return redirect(url_for("admin.issue", issue_id=issue.id) if issue else url_for("admin.issues"))


@bp.post("/meetings/<int(max=2147483647):meeting_id>/update")
def meeting_update(meeting_id: int) -> ResponseReturnValue:
    """ "Změnit termín nebo místo": the meeting changes and a draft update is made to send."""
    meeting = _meeting_or_404(meeting_id)
    issue = _posted_from()
    fields, errors = meeting_from_form(request.form, meeting.mailing_list)
    if fields is None and not errors:
        errors = {"meeting_start": _("Vyplňte nový termín a místo setkání.")}
    if errors or fields is None:
        if issue is not None and issue.meeting_id == meeting.id:
            return _render_issue(issue, errors=errors, values=dict(request.form))
        abort(422)
    try:
        update = meetings.update_meeting(meeting, fields, account())
    except meetings.MeetingError as error:
        return _meeting_refused(issue, error)
    db.session.commit()
    flash(_("Setkání je změněno. Zkontrolujte oznámení o změně a odešlete ho členům."), "success")
    return redirect(url_for("admin.issue", issue_id=update.id))


@bp.post("/meetings/<int(max=2147483647):meeting_id>/cancel")
def meeting_cancel(meeting_id: int) -> ResponseReturnValue:
    """ "Zrušit setkání": the cancellation (METHOD:CANCEL) goes to the group at once."""
    meeting = _meeting_or_404(meeting_id)
    issue = _posted_from()
    if not request.form.get("confirm"):
        if issue is not None and issue.meeting_id == meeting.id:
            message = _("Potvrďte zrušení zaškrtnutím políčka.")
            return _invalid(issue, "meeting_cancel", message, {})
        abort(422)
    try:
        cancellation = meetings.cancel_meeting(meeting, account())
    except meetings.MeetingError as error:
        return _meeting_refused(issue, error)
    db.session.commit()
    flash(_("Setkání je zrušeno; členové dostávají zrušení pozvánky."), "success")
    return redirect(url_for("admin.issue", issue_id=cancellation.id))


@bp.post("/meetings/<int(max=2147483647):meeting_id>/dates/<int(max=99999999999):key>")
def meeting_date(meeting_id: int, key: int) -> ResponseReturnValue:
    """One date of a series: move it (`akce=presunout`, a draft update to send), move it
    and all after it (`presunout-dalsi`: the series splits), cancel it (`zrusit`) or it
    and all after it (`zrusit-dalsi`); all but the first are sent at once."""
    meeting = _meeting_or_404(meeting_id)
    issue = _posted_from()
    moment = occurrences.from_timestamp(key)
    action = request.form.get("akce", "")
    if action not in ("presunout", "presunout-dalsi", "zrusit", "zrusit-dalsi"):
        abort(400)
    try:
        if action.startswith("presunout"):
            return _move_date(meeting, moment, following=action == "presunout-dalsi")
        if not request.form.get("confirm"):
            raise meetings.MeetingError(_("Potvrďte zrušení zaškrtnutím políčka."))
        change = series.cancel_occurrence if action == "zrusit" else series.cancel_rest
        sent = change(meeting, moment, account())
    except meetings.MeetingError as error:
        return _meeting_refused(issue, error)
    db.session.commit()
    flash(_("Termín je zrušen; členové dostávají oznámení."), "success")
    return redirect(url_for("admin.issue", issue_id=sent.id))


def _move_date(
    meeting: Meeting, moment: datetime | None, *, following: bool
) -> ResponseReturnValue:
    """Move one date (a draft update), or it and all after it (both mails sent at once)."""
    fields, errors = meeting_from_form(request.form, meeting.mailing_list)
    if errors or fields is None:
        message = next(iter(errors.values()), _("Vyplňte nový termín a místo setkání."))
        raise meetings.MeetingError(message)
    if not following:
        update = series.update_occurrence(meeting, moment, fields, account())
        db.session.commit()
        flash(_("Termín je změněn. Zkontrolujte oznámení o změně a odešlete ho členům."), "success")
        return redirect(url_for("admin.issue", issue_id=update.id))
    if not request.form.get("confirm"):
        raise meetings.MeetingError(_("Potvrďte přesun všech dalších termínů zaškrtnutím políčka."))
    split = series.move_following(meeting, moment, fields, account())
    db.session.commit()
    flash(
        _(
            "Termíny jsou přesunuty. Členové dostávají oznámení, že dosavadní řada končí, "
            "a pozvánku na nové termíny."
        ),
        "success",
    )
    return redirect(url_for("admin.issue", issue_id=split.invitation.id))


@bp.post("/issues/<int(max=2147483647):issue_id>/attachments")
def issue_attachment_add(issue_id: int) -> ResponseReturnValue:
    """Upload a document to a draft (its size limit: ATTACHMENT_MAX_BYTES)."""
    issue = _issue_or_404(issue_id)
    upload = request.files.get("file")
    try:
        if upload is None:
            raise attachments.AttachmentError(_("Vyberte soubor, který chcete přiložit."))
        added = attachments.add_attachment(issue, upload.filename or "", upload.read())
    except attachments.AttachmentError as error:
        if error.status == 409:
            return _refused(issue, str(error))
        return _invalid(issue, "file", str(error), {})
    db.session.commit()
    return _done(issue, _("Příloha %(name)s je přidána.", name=added.filename))


@bp.post(
    "/issues/<int(max=2147483647):issue_id>/attachments/<int(max=2147483647):attachment_id>/remove"
)
def issue_attachment_remove(issue_id: int, attachment_id: int) -> ResponseReturnValue:
    issue = _issue_or_404(issue_id)
    try:
        attachments.remove_attachment(issue, attachment_id)
    except attachments.AttachmentError as error:
        if error.status == 404:
            abort(404)
        return _refused(issue, str(error))
    db.session.commit()
    return _done(issue, _("Příloha je odebrána."))
