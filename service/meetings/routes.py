"""The public meeting pages: "Přidat do kalendáře" (the .ics download)."""

from __future__ import annotations

from flask import Blueprint, Response, abort
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from ..extensions import db
from ..models import Meeting
from .calendar import ics_for

bp = Blueprint("meetings", __name__, url_prefix="/meetings")


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
