"""A meeting's attendance in the admin: answers by institution type, the CSV, the printable
attendance sheet (prezenční listina), and ticking who came.

A coordinator sees only their own groups' meetings; another group's meeting
answers 404, as if it did not exist (its members are none of their business).
"""

from __future__ import annotations

import io

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import ngettext

from ..clock import utcnow
from ..extensions import db
from ..meetings import attendance, occurrences, series
from ..meetings import rules as meetings
from ..meetings.calendar import format_meeting_time, meeting_title
from ..meetings.occurrences import Occurrence
from ..meetings.rsvp import LABELS
from ..models import Meeting, PartStat
from ..people_csv import writer
from .auth import account
from .blueprint import bp

_MEETING = "/meetings/<int(max=2147483647):meeting_id>"
CSV_COLUMNS = (
    "name",
    "email",
    "organization",
    "institution",
    "function",
    "answer",
    "note",
    "attended",
)
ANSWER_CODES = {
    PartStat.ACCEPTED: "accepted",
    PartStat.TENTATIVE: "tentative",
    PartStat.DECLINED: "declined",
    PartStat.NEEDS_ACTION: "needs_action",
}


def _meeting_or_404(meeting_id: int) -> Meeting:
    """The meeting, if the signed-in account may manage its group; 404 otherwise."""
    meeting = db.session.get(Meeting, meeting_id)
    if meeting is None or not account().may_manage(meeting.mailing_list):
        abort(404)
    return meeting


def _date(meeting: Meeting) -> Occurrence | None:
    """The date of a series the page is about (`termin`, its key): by default the last
    one that has begun, else the next. None for a single meeting."""
    if not meeting.rrule:
        return None
    key = request.values.get("termin", "")
    moment = occurrences.from_timestamp(key)
    if key:
        found = occurrences.find(meeting, moment) if moment is not None else None
        if found is None:
            abort(404)
        return found
    dates = occurrences.listed(meeting)
    begun = [d for d in dates if d.started and not d.cancelled]
    ahead = [d for d in dates if not d.started and not d.cancelled]
    return begun[-1] if begun else (ahead[0] if ahead else None)


def _context(meeting: Meeting) -> dict:
    date = _date(meeting)
    key = date.recurrence_id if date is not None else None
    people = attendance.attendees(meeting, key)
    not_coming, absent = attendance.missing_kinds(people)
    start, end = (date.start, date.end) if date else (meeting.start, meeting.end)
    cancelled = meeting.cancelled_at is not None or (date is not None and date.cancelled)
    return {
        "meeting": meeting,
        "group": meeting.mailing_list,
        "title": meeting_title(meeting),
        "when": format_meeting_time(start, end),
        "place": date.location if date else meeting.location,
        "cancelled": cancelled,
        "date": date,
        "dates": occurrences.listed(meeting) if meeting.rrule else [],
        "series_neighbours": series.neighbours(meeting),
        "termin": date.key if date else None,
        "people": people,
        "groups": attendance.by_institution(people),
        "counts": attendance.counts(meeting, key),
        "not_coming": not_coming,
        "absent": absent,
        "labels": LABELS,
        "may_tick": start <= utcnow() and not cancelled and (date is not None or not meeting.rrule),
    }


@bp.get(_MEETING + "/attendance")
def meeting_attendance(meeting_id: int) -> ResponseReturnValue:
    """Who comes, grouped by institution type, and which kinds of institution are missing;
    for a series, at one of its dates (`?termin=`)."""
    meeting = _meeting_or_404(meeting_id)
    return render_template("admin/meeting_attendance.html", **_context(meeting))


@bp.post(_MEETING + "/attendance")
def meeting_attendance_post(meeting_id: int) -> ResponseReturnValue:
    """After the meeting: the coordinator ticks who came."""
    meeting = _meeting_or_404(meeting_id)
    date = _date(meeting)
    key = date.recurrence_id if date is not None else None
    present = {int(v) for v in request.form.getlist("present") if v.isdigit() and len(v) < 12}
    try:
        came = attendance.record_attendance(meeting, present, key)
    except attendance.AttendanceRefused as refused:
        db.session.rollback()
        flash(str(refused), "error")
        return render_template("admin/meeting_attendance.html", **_context(meeting)), 409
    db.session.commit()
    invited = len(attendance.attendees(meeting, key))
    flash(
        ngettext(
            "Účast je uložena: přišel %(num)d z %(invited)d.",
            "Účast je uložena: přišlo %(num)d z %(invited)d.",
            came,
            invited=invited,
        ),
        "success",
    )
    return redirect(
        url_for(
            "admin.meeting_attendance", meeting_id=meeting.id, termin=date.key if date else None
        )
    )


@bp.get(_MEETING + "/attendance.csv")
def meeting_attendance_csv(meeting_id: int) -> ResponseReturnValue:
    """The attendance as CSV (UTF-8 with a byte-order mark, for spreadsheets): the columns
    and answers as stable codes, the institution type and "ano"/"ne" in the page's language."""
    meeting = _meeting_or_404(meeting_id)
    stream = io.StringIO()
    stream.write("\ufeff")
    out = writer(stream, CSV_COLUMNS)
    out.writeheader()
    date = _date(meeting)
    for person in attendance.attendees(meeting, date.recurrence_id if date else None):
        out.writerow(
            {
                "name": person.name,
                "email": person.email,
                "organization": person.organization,
                "institution": person.institution_label if person.institution else "",
                "function": person.function,
                "answer": ANSWER_CODES[PartStat(person.partstat)],
                "note": person.note,
                "attended": ""
                if person.attended is None
                else (_("ano") if person.attended else _("ne")),
            }
        )
    return Response(
        stream.getvalue(),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="ucast-setkani-{meeting.id}.csv"',
            "Cache-Control": "no-store",
        },
    )


@bp.get(_MEETING + "/attendance/sheet")
def meeting_attendance_sheet(meeting_id: int) -> ResponseReturnValue:
    """The printable attendance sheet: names, organisations and a column to sign."""
    meeting = _meeting_or_404(meeting_id)
    return render_template("admin/meeting_sheet.html", **_context(meeting))


@bp.post(_MEETING + "/minutes")
def meeting_minutes(meeting_id: int) -> ResponseReturnValue:
    """ "Napsat zápis": a draft of the minutes, opened for writing and attachments."""
    meeting = _meeting_or_404(meeting_id)
    date = _date(meeting)
    try:
        draft = meetings.start_minutes(meeting, account(), date)
    except meetings.MeetingError as error:
        db.session.rollback()
        flash(str(error), "error")
        return redirect(
            url_for(
                "admin.meeting_attendance", meeting_id=meeting.id, termin=date.key if date else None
            )
        )
    db.session.commit()
    flash(
        _("Koncept zápisu je připraven; doplňte text, přiložte dokumenty a odešlete ho."),
        "success",
    )
    return redirect(url_for("admin.issue_edit", issue_id=draft.id))
