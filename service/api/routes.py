"""The editors' JSON API (DESIGN.md §5.5): lists, issues, sending and its control.

Views only translate JSON to the domain functions of service/issues/sending.py
(the same ones the admin UI uses) and back; every refusal is an ApiError or
an IssueStateError, which service/api/errors.py turns into JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Response, jsonify, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import func, select

from ..clock import SkippedLocalTime, from_local, iso_utc, utcnow
from ..extensions import db
from ..issues import attachments, sending
from ..meetings import attendance, occurrences, series
from ..meetings import rules as meetings
from ..meetings.calendar import documents
from ..models import (
    SUBSCRIPTION_STATUSES,
    Issue,
    MailingList,
    Meeting,
    Subscription,
    is_valid_slug,
)
from .auth import current_api_user, may_see
from .blueprint import bp
from .errors import ApiError

# Ids are 32-bit in the schema; a larger number in the URL matches no route (404)
# instead of overflowing the database driver.
MAX_ID = 2**31 - 1
AT_MAX_LENGTH = 64
# A schedule further ahead than this is a typo (a wrong year), not a plan.
SCHEDULE_HORIZON = timedelta(days=366)


@bp.get("/openapi.json")
def openapi_document() -> ResponseReturnValue:
    """The OpenAPI 3.1 description of this API; public, so tools can fetch it."""
    from .openapi import DOCUMENT  # here: a large constant that only this answer needs

    return jsonify(DOCUMENT)


@bp.get("/lists")
def lists() -> ResponseReturnValue:
    """The lists the account may manage, with subscriber counts per status."""
    user = current_api_user()
    visible = [
        m
        for m in db.session.scalars(select(MailingList).order_by(MailingList.slug))
        if user.may_manage(m)
    ]
    counts: dict[int, dict[str, int]] = {
        m.id: dict.fromkeys(SUBSCRIPTION_STATUSES, 0) for m in visible
    }
    if visible:
        rows = db.session.execute(
            select(Subscription.list_id, Subscription.status, func.count())
            .where(Subscription.list_id.in_(counts))
            .group_by(Subscription.list_id, Subscription.status)
        )
        for list_id, status, n in rows:
            if status in counts[list_id]:
                counts[list_id][status] = n
    return jsonify(
        lists=[
            {"slug": m.slug, "name": m.name, "kind": m.kind, "counts": counts[m.id]}
            for m in visible
        ]
    )


@bp.post("/lists/<slug>/issues")
def create_issue(slug: str) -> ResponseReturnValue:
    """A new draft on the list; 201 with the issue and its Location."""
    mailing_list = _list_or_404(slug)
    data = _json_object()
    fields, errors = sending.validate_fields(
        data.get("subject"), data.get("body"), data.get("preheader", "")
    )
    errors.update(meetings.meeting_problem(mailing_list, data.get("meeting")))
    if errors:
        raise ApiError(422, errors=errors)
    meeting_fields = None
    if data.get("meeting") is not None:
        meeting_fields, _problems = meetings.validate_meeting(data["meeting"])
        if meeting_fields is None:  # its start passed since meeting_problem checked it
            raise ApiError(422, errors=meetings.meeting_problem(mailing_list, data["meeting"]))
    issue = sending.create_issue(mailing_list, fields, current_api_user())
    if meeting_fields is not None:
        meetings.attach_meeting(issue, meeting_fields)
    db.session.commit()
    response = jsonify(issue_json(issue))
    response.status_code = 201
    response.headers["Location"] = url_for("api.issue", issue_id=issue.id)
    return response


_ISSUE_ROUTE = f"/issues/<int(max={MAX_ID}):issue_id>"


@bp.get(_ISSUE_ROUTE)
def issue(issue_id: int) -> ResponseReturnValue:
    """The issue's state and delivery counts (poll it while sending)."""
    return jsonify(issue_json(_issue_or_404(issue_id)))


@bp.post(_ISSUE_ROUTE + "/send")
def send(issue_id: int) -> ResponseReturnValue:
    """Send now, or at `at` (ISO 8601; without an offset, the service's time zone)."""
    issue = _issue_or_404(issue_id, lock=True)
    data = _json_object(optional=True)
    at = parse_send_time(data.get("at"))
    if at is None:
        sending.send_now(issue)
    else:
        sending.schedule(issue, at)
    db.session.commit()
    return jsonify(issue_json(issue)), 202


@bp.post(_ISSUE_ROUTE + "/attachments")
def add_attachment(issue_id: int) -> ResponseReturnValue:
    """Attach a document (multipart field `file`: PDF, DOCX, ODT or XLSX) to a draft; 201."""
    issue = _issue_or_404(issue_id, lock=True)
    upload = request.files.get("file") if request.mimetype == "multipart/form-data" else None
    if upload is None:
        raise ApiError(
            422, errors={"file": _("Pošlete soubor jako multipart/form-data, pole file.")}
        )
    try:
        added = attachments.add_attachment(issue, upload.filename or "", upload.read())
    except attachments.AttachmentError as error:
        if error.status == 422:
            raise ApiError(422, errors={"file": str(error)}) from None
        raise ApiError(error.status, str(error)) from None
    db.session.commit()
    return jsonify(attachments.attachment_json(added)), 201


_MEETING_ROUTE = f"/meetings/<int(max={MAX_ID}):meeting_id>"


@bp.post(_MEETING_ROUTE + "/update")
def update_meeting(meeting_id: int) -> ResponseReturnValue:
    """New time or place: a draft update (same UID, SEQUENCE + 1) to send; 201 with it."""
    meeting = _meeting_or_404(meeting_id)
    fields, problems = meetings.validate_meeting(_json_object())
    if problems:
        raise ApiError(422, errors=problems)
    issue = _meeting_change(meetings.update_meeting, meeting, fields, current_api_user())
    db.session.commit()
    response = jsonify(issue_json(issue))
    response.status_code = 201
    response.headers["Location"] = url_for("api.issue", issue_id=issue.id)
    return response


@bp.post(_MEETING_ROUTE + "/cancel")
def cancel_meeting(meeting_id: int) -> ResponseReturnValue:
    """Cancel the meeting: METHOD:CANCEL goes to the group at once; 202 with that issue."""
    meeting = _meeting_or_404(meeting_id)
    issue = _meeting_change(meetings.cancel_meeting, meeting, current_api_user())
    db.session.commit()
    return jsonify(issue_json(issue)), 202


_DATE_ROUTE = _MEETING_ROUTE + "/dates/<recurrence_id>"


def _date_of(recurrence_id: str) -> datetime:
    """A date of a series in the URL: its RECURRENCE-ID in UTC (ISO 8601, `…Z`) or as
    a Unix time (`key` in the meeting's `dates`)."""
    moment = occurrences.from_timestamp(recurrence_id)
    if moment is None and len(recurrence_id) <= 40:
        try:
            parsed = datetime.fromisoformat(recurrence_id)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            moment = parsed.astimezone(UTC).replace(tzinfo=None)
    if moment is None:
        raise ApiError(404, _("Takový termín setkání v řadě není."))
    return moment


@bp.post(_DATE_ROUTE + "/update")
def update_meeting_date(meeting_id: int, recurrence_id: str) -> ResponseReturnValue:
    """Move one date of a series (or change its place): a draft update about it; 201."""
    meeting = _meeting_or_404(meeting_id)
    moment = _date_of(recurrence_id)
    fields, problems = meetings.validate_meeting(_json_object())
    if problems:
        raise ApiError(422, errors=problems)
    issue = _meeting_change(series.update_occurrence, meeting, moment, fields, current_api_user())
    db.session.commit()
    response = jsonify(issue_json(issue))
    response.status_code = 201
    response.headers["Location"] = url_for("api.issue", issue_id=issue.id)
    return response


@bp.post(_DATE_ROUTE + "/cancel")
def cancel_meeting_date(meeting_id: int, recurrence_id: str) -> ResponseReturnValue:
    """Cancel one date of a series: METHOD:CANCEL with its RECURRENCE-ID goes out; 202."""
    meeting = _meeting_or_404(meeting_id)
    moment = _date_of(recurrence_id)
    issue = _meeting_change(series.cancel_occurrence, meeting, moment, current_api_user())
    db.session.commit()
    return jsonify(issue_json(issue)), 202


@bp.post(_DATE_ROUTE + "/cancel-following")
def cancel_meeting_following(meeting_id: int, recurrence_id: str) -> ResponseReturnValue:
    """End a series before this date (UNTIL); the shortened series goes out; 202."""
    meeting = _meeting_or_404(meeting_id)
    moment = _date_of(recurrence_id)
    issue = _meeting_change(series.cancel_rest, meeting, moment, current_api_user())
    db.session.commit()
    return jsonify(issue_json(issue)), 202


@bp.post(_DATE_ROUTE + "/move-following")
def move_meeting_following(meeting_id: int, recurrence_id: str) -> ResponseReturnValue:
    """Move this date and all after it: the series ends before it and a new series (its own
    UID, the same rhythm unless `rrule` is given) starts at the new time; both go out; 202."""
    meeting = _meeting_or_404(meeting_id)
    moment = _date_of(recurrence_id)
    # What the body leaves out stays as the series has it (the place, the link, the agenda).
    kept = {"location": meeting.location, "online_url": meeting.online_url}
    fields, problems = meetings.validate_meeting(
        {**kept, "agenda": meeting.agenda, **_json_object()}
    )
    if problems:
        raise ApiError(422, errors=problems)
    split = _meeting_change(series.move_following, meeting, moment, fields, current_api_user())
    db.session.commit()
    response = jsonify(
        {"ended": issue_json(split.ended), "invitation": issue_json(split.invitation)}
    )
    response.status_code = 202
    response.headers["Location"] = url_for("api.issue", issue_id=split.invitation.id)
    return response


def _meeting_change(change, *args):
    try:
        return change(*args)
    except meetings.MeetingError as error:
        raise ApiError(409, str(error)) from None


@bp.post(_ISSUE_ROUTE + "/pause")
def pause(issue_id: int) -> ResponseReturnValue:
    return _change_state(issue_id, sending.pause)


@bp.post(_ISSUE_ROUTE + "/resume")
def resume(issue_id: int) -> ResponseReturnValue:
    return _change_state(issue_id, sending.resume)


@bp.post(_ISSUE_ROUTE + "/cancel")
def cancel(issue_id: int) -> ResponseReturnValue:
    return _change_state(issue_id, sending.cancel)


def _change_state(issue_id: int, change: Callable[[Issue], None]) -> Response:
    """Apply a state change (which raises IssueStateError → 409 when not allowed)."""
    issue = _issue_or_404(issue_id, lock=True)
    change(issue)
    db.session.commit()
    return jsonify(issue_json(issue))


# --- helpers -------------------------------------------------------------------


def issue_json(issue: Issue) -> dict[str, Any]:
    """The issue as the OpenAPI schema `Issue` describes it; times in UTC with an offset."""
    return {
        "id": issue.id,
        "list": issue.mailing_list.slug,
        "number": issue.number,
        "subject": issue.subject,
        "status": issue.status,
        "scheduled_at": iso_utc(issue.scheduled_at),
        "started_at": iso_utc(issue.started_at),
        "finished_at": iso_utc(issue.finished_at),
        "counts": sending.delivery_counts(issue),
        "meeting": meetings.meeting_json(issue.meeting) if issue.meeting else None,
        "meeting_method": issue.meeting_method,
        "meeting_date": iso_utc(issue.meeting_occurrence),
        "attachments": [attachments.attachment_json(a) for a in documents(issue)],
        "attendance": (
            attendance.counts(issue.meeting, issue.meeting_occurrence) if issue.meeting else None
        ),
    }


def parse_send_time(value: Any) -> datetime | None:
    """`at` as an aware datetime, None for "now"; 422 when unusable or not in the future.

    A time without an offset is what an editor in Prague means, so it is read
    in the TIMEZONE setting (Europe/Prague), daylight saving included.
    """
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > AT_MAX_LENGTH:
        raise ApiError(
            422,
            errors={
                "at": _(
                    "Čas zadejte jako text ve formátu ISO 8601, "
                    "např. 2026-12-10T09:00 nebo 2026-12-10T08:00:00Z."
                )
            },
        )
    try:
        at = datetime.fromisoformat(value.strip())
        if at.tzinfo is None:
            at = from_local(at)
        at_utc = at.astimezone(UTC).replace(tzinfo=None)
    except SkippedLocalTime as skipped:
        raise ApiError(422, errors={"at": str(skipped)}) from None
    except (ValueError, OverflowError):
        raise ApiError(
            422,
            errors={
                "at": _(
                    "Čas není platný údaj ve formátu ISO 8601, "
                    "např. 2026-12-10T09:00 nebo 2026-12-10T08:00:00Z."
                )
            },
        ) from None
    now = utcnow()
    if at_utc <= now:
        raise ApiError(422, errors={"at": _("Čas odeslání musí být v budoucnosti.")})
    if at_utc > now + SCHEDULE_HORIZON:
        raise ApiError(422, errors={"at": _("Odeslání lze naplánovat nejvýše rok dopředu.")})
    return at


def _json_object(*, optional: bool = False) -> dict[str, Any]:
    """The request body as a JSON object; 400/415 when it is anything else.

    Parsed here rather than with request.get_json so that absurd nesting
    (RecursionError) and undecodable bytes are a 400, never a 500.
    """
    missing = ApiError(400, _("Chybí tělo požadavku: pošlete JSON objekt."))
    if not request.is_json:
        # Judged by the headers: a form body has already been read by the input guard.
        if request.content_length or request.headers.get("Transfer-Encoding"):
            raise ApiError(415)
        if optional:
            return {}
        raise missing
    raw = request.get_data(cache=True)
    if not raw.strip():
        if optional:
            return {}
        raise missing
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(400, _("Tělo požadavku není platný JSON.")) from None
    if not isinstance(data, dict):
        raise ApiError(400, _("Tělo požadavku musí být JSON objekt."))
    return data


def _list_or_404(slug: str) -> MailingList:
    # Only slugs a list can have reach the database (no NUL, no megabyte strings).
    found = None
    if is_valid_slug(slug):
        found = db.session.scalar(select(MailingList).filter_by(slug=slug))
    if found is None or not may_see(found):
        raise ApiError(404, _("Seznam neexistuje."))
    return found


def _meeting_or_404(meeting_id: int) -> Meeting:
    """The meeting, locked until commit, if the account may manage its group (else 404)."""
    found = db.session.get(Meeting, meeting_id, with_for_update=True)
    if found is None or not may_see(found.mailing_list):
        raise ApiError(404, _("Setkání neexistuje."))
    return found


def _issue_or_404(issue_id: int, *, lock: bool = False) -> Issue:
    """The issue, if the account may manage its list; 404 both when unknown and when not theirs.

    `lock` holds the row (PostgreSQL) until commit, so two simultaneous state
    changes of one issue are applied one after the other, each checked.
    """
    found = db.session.get(Issue, issue_id, with_for_update=lock)
    if found is None or not may_see(found.mailing_list):
        raise ApiError(404, _("Vydání neexistuje."))
    return found
