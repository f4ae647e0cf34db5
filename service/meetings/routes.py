"""The public meeting pages: "Přidat do kalendáře" (the .ics download) and a member's
answer to an invitation (/rsvp/<token>).

As everywhere a mail links to, no GET changes anything (mail scanners fetch
every link): the RSVP page shows the meeting and the choice the link
preselects, and only its POST records the answer.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import select

from ..clock import local_zone, utcnow
from ..extensions import db
from ..groups.joining import membership_of
from ..i18n import use_person_language
from ..models import Meeting, PartStat, Subscriber, SubscriptionStatus
from ..signed_links import LinkProblem, SubscriberGone, render_link_problem
from ..subscriptions.actions import subscriber_by_public_key
from . import occurrences, rsvp
from .calendar import format_meeting_time, ics_for, meeting_title
from .occurrences import Occurrence
from .recurrence import describe

bp = Blueprint("meetings", __name__, url_prefix="/meetings")
rsvp_bp = Blueprint("rsvp", __name__, url_prefix="/rsvp")
rsvp_bp.register_error_handler(LinkProblem, render_link_problem)


@bp.get("/<uid>.ics")
def download(uid: str) -> ResponseReturnValue:
    """ "Přidat do kalendáře": the meeting's current state as a file (METHOD:PUBLISH)."""
    meeting = None
    if len(uid) <= 255:
        meeting = db.session.scalar(select(Meeting).filter_by(uid=uid))
    if meeting is None:
        abort(404)
    data = ics_for(meeting, "PUBLISH", meeting.sequence)
    return Response(
        data,
        mimetype="text/calendar",
        headers={
            "Content-Disposition": f'attachment; filename="setkani-{meeting.id}.ics"',
            "Cache-Control": "no-store",
        },
    )


# --- a member's answer ----------------------------------------------------------


def _load_answer(token: str) -> tuple[Subscriber, Meeting, Occurrence | None]:
    """The member, meeting and (for one date of a series) date a signed RSVP link names
    (the signed links' pages otherwise: a bad link 400, anything gone 404); the page speaks
    the member's language."""
    signed = rsvp.RsvpTokens().load(token) if len(token) < 200 else None
    if signed is None:
        raise LinkProblem(token)
    meeting_id, public_key, recurrence_id = signed
    subscriber = subscriber_by_public_key(public_key)
    meeting = db.session.get(Meeting, meeting_id)
    if subscriber is None or meeting is None:
        raise SubscriberGone(token)
    use_person_language(subscriber.language)
    date = None
    if recurrence_id is not None:
        date = occurrences.find(meeting, recurrence_id)
        if date is None:
            raise SubscriberGone(token)
    return subscriber, meeting, date


def _when(meeting: Meeting, date: Occurrence | None) -> str:
    """The date answered for; for a whole series its next date and its rhythm."""
    if date is not None:
        return format_meeting_time(date.start, date.end)
    if meeting.rrule:
        rhythm = describe(meeting.rrule, meeting.start, local_zone().key)
        upcoming = occurrences.upcoming(meeting, after=utcnow(), count=1)
        if upcoming:
            first = format_meeting_time(upcoming[0].start, upcoming[0].end)
            return _("%(first)s, dále %(rhythm)s", first=first, rhythm=rhythm)
        return rhythm
    return format_meeting_time(meeting.start, meeting.end)


def _page(
    token: str,
    subscriber: Subscriber,
    meeting: Meeting,
    date: Occurrence | None,
    *,
    status: int = 200,
    **extra: Any,
) -> ResponseReturnValue:
    member = membership_of(subscriber, meeting.mailing_list)
    if member is None or member.status != SubscriptionStatus.CONFIRMED:
        return render_template("groups/members_only.html", group=meeting.mailing_list), 403
    response = rsvp.answer_for(meeting, subscriber, date.recurrence_id if date else None)
    current = response.partstat if response is not None else PartStat.NEEDS_ACTION
    chosen = rsvp.CHOICES.get(request.args.get("odpoved", ""), current)
    closed = rsvp.closed_because(meeting, date)
    context = {
        "token": token,
        "meeting": meeting,
        "group": meeting.mailing_list,
        "title": meeting_title(meeting),
        "when": _when(meeting, date),
        "place": date.location if date else meeting.location,
        "online_url": date.online_url if date else meeting.online_url,
        # Answering a whole series, or one date of it.
        "series": bool(meeting.rrule) and date is None,
        "one_date": bool(meeting.rrule) and date is not None,
        "response": response,
        "chosen": extra.pop("chosen", chosen),
        "note": extra.pop("note", response.note if response is not None else ""),
        "choices": rsvp.CHOICES,
        "labels": rsvp.LABELS,
        "open": closed is None,
        "closed": closed,
    }
    return render_template("meetings/rsvp.html", **context, **extra), status


@rsvp_bp.get("/<token>")
def answer(token: str) -> ResponseReturnValue:
    """The meeting and the choice the mail's link preselects; changes nothing."""
    subscriber, meeting, date = _load_answer(token)
    return _page(token, subscriber, meeting, date)


@rsvp_bp.post("/<token>")
def answer_post(token: str) -> ResponseReturnValue:
    """Record (or change) the member's answer and note, until the meeting starts."""
    subscriber, meeting, date = _load_answer(token)
    choice = rsvp.CHOICES.get(request.form.get("odpoved", ""))
    note = request.form.get("poznamka", "")
    if choice is None or len(note) > rsvp.NOTE_MAX:
        error = (
            _("Vyberte prosím, zda přijdete.")
            if choice is None
            else _("Poznámka může mít nejvýše %(limit)s znaků.", limit=rsvp.NOTE_MAX)
        )
        return _page(token, subscriber, meeting, date, status=422, error=error, note=note)
    member = membership_of(subscriber, meeting.mailing_list)
    if member is None or member.status != SubscriptionStatus.CONFIRMED:
        return _page(token, subscriber, meeting, date)  # the members-only page, 403
    try:
        rsvp.answer_from_page(meeting, subscriber, choice, note, date)
    except rsvp.RsvpRefused as refused:
        db.session.rollback()
        return _page(token, subscriber, meeting, date, status=refused.status, error=str(refused))
    db.session.commit()
    return _page(token, subscriber, meeting, date, saved=True, chosen=choice)
