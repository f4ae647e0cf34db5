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

from ..extensions import db
from ..groups.joining import membership_of
from ..i18n import use_person_language
from ..models import Meeting, PartStat, Subscriber, SubscriptionStatus
from ..signed_links import LinkProblem, SubscriberGone, render_link_problem
from ..subscriptions.actions import subscriber_by_public_key
from . import rsvp
from .calendar import format_meeting_time, ics_for, meeting_title

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


def _load_answer(token: str) -> tuple[Subscriber, Meeting]:
    """The member and meeting a signed RSVP link names (the signed links' pages otherwise:
    a bad link 400, a member or meeting gone 404); the page speaks the member's language."""
    signed = rsvp.RsvpTokens().load(token) if len(token) < 200 else None
    if signed is None:
        raise LinkProblem(token)
    meeting_id, public_key = signed
    subscriber = subscriber_by_public_key(public_key)
    meeting = db.session.get(Meeting, meeting_id)
    if subscriber is None or meeting is None:
        raise SubscriberGone(token)
    use_person_language(subscriber.language)
    return subscriber, meeting


def _page(
    token: str, subscriber: Subscriber, meeting: Meeting, *, status: int = 200, **extra: Any
) -> ResponseReturnValue:
    member = membership_of(subscriber, meeting.mailing_list)
    if member is None or member.status != SubscriptionStatus.CONFIRMED:
        return render_template("groups/members_only.html", group=meeting.mailing_list), 403
    response = rsvp.response_of(meeting, subscriber)
    current = response.partstat if response is not None else PartStat.NEEDS_ACTION
    chosen = rsvp.CHOICES.get(request.args.get("odpoved", ""), current)
    context = {
        "token": token,
        "meeting": meeting,
        "group": meeting.mailing_list,
        "title": meeting_title(meeting),
        "when": format_meeting_time(meeting.start, meeting.end),
        "response": response,
        "chosen": extra.pop("chosen", chosen),
        "note": extra.pop("note", response.note if response is not None else ""),
        "choices": rsvp.CHOICES,
        "labels": rsvp.LABELS,
        "open": meeting.cancelled_at is None and not meeting.started,
    }
    return render_template("meetings/rsvp.html", **context, **extra), status


@rsvp_bp.get("/<token>")
def answer(token: str) -> ResponseReturnValue:
    """The meeting and the choice the mail's link preselects; changes nothing."""
    subscriber, meeting = _load_answer(token)
    return _page(token, subscriber, meeting)


@rsvp_bp.post("/<token>")
def answer_post(token: str) -> ResponseReturnValue:
    """Record (or change) the member's answer and note, until the meeting starts."""
    subscriber, meeting = _load_answer(token)
    choice = rsvp.CHOICES.get(request.form.get("odpoved", ""))
    note = request.form.get("poznamka", "")
    if choice is None or len(note) > rsvp.NOTE_MAX:
        error = (
            _("Vyberte prosím, zda přijdete.")
            if choice is None
            else _("Poznámka může mít nejvýše %(limit)s znaků.", limit=rsvp.NOTE_MAX)
        )
        return _page(token, subscriber, meeting, status=422, error=error, note=note)
    member = membership_of(subscriber, meeting.mailing_list)
    if member is None or member.status != SubscriptionStatus.CONFIRMED:
        return _page(token, subscriber, meeting)  # the members-only page, 403
    try:
        rsvp.answer_from_page(meeting, subscriber, choice, note)
    except rsvp.RsvpRefused as refused:
        db.session.rollback()
        return _page(token, subscriber, meeting, status=refused.status, error=str(refused))
    db.session.commit()
    return _page(token, subscriber, meeting, saved=True, chosen=choice)
