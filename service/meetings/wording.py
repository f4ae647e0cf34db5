"""What the meeting announcements say: subjects and opening lines of an update, a
cancellation, the minutes and the reminder.

Announcements are issues on the group's list, written once for all its
members, so they speak the list's language (`MailingList.language`), not the
language of the coordinator's admin page: each function renders its text
inside `in_language(group.language)`. The wording is Czech in the code (the
gettext msgids) and English in the catalogue.
"""

from __future__ import annotations

from datetime import datetime

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ..clock import local_zone
from ..czech import group_in_sentence
from ..groups.dates import clock_time, format_meeting_time, local_time, on_day
from ..i18n import in_language
from ..models import Meeting
from .calendar import meeting_title

# The update's opening line by what changed (change_kind).
CHANGE_BODIES = {
    "date": _l(
        "Dobrý den,\n\nměníme **termín** setkání %(group)s. Aktuální termín, místo a program "
        "najdete níže; pozvánka v kalendáři se sama aktualizuje.\n"
    ),
    "time": _l(
        "Dobrý den,\n\nměníme **čas** setkání %(group)s. Aktuální termín, místo a program "
        "najdete níže; pozvánka v kalendáři se sama aktualizuje.\n"
    ),
    "place": _l(
        "Dobrý den,\n\nměníme **místo** setkání %(group)s. Aktuální termín, místo a program "
        "najdete níže; pozvánka v kalendáři se sama aktualizuje.\n"
    ),
    "details": _l(
        "Dobrý den,\n\nposíláme **změněné údaje** o setkání %(group)s. Aktuální termín, místo "
        "a program najdete níže; pozvánka v kalendáři se sama aktualizuje.\n"
    ),
}


def change_kind(old_start: datetime, old_end: datetime, old_location: str, meeting: Meeting) -> str:
    """What an update changed most visibly: "date", "time", "place" or "details"."""
    zone = local_zone().key
    if local_time(old_start, zone).date() != local_time(meeting.start, zone).date():
        return "date"
    if (old_start, old_end) != (meeting.start, meeting.end):
        return "time"
    if old_location != meeting.location and meeting.location:
        return "place"
    return "details"


def update_text(
    title: str, old_start: datetime, old_end: datetime, old_location: str, meeting: Meeting
) -> tuple[str, str]:
    """(subject, body) of an update: "Změna termínu: … nově ve čtvrtek 11. prosince"."""
    kind = change_kind(old_start, old_end, old_location, meeting)
    zone = local_zone().key
    with in_language(meeting.mailing_list.language):
        new_clock = clock_time(meeting.start, zone)
        if kind == "date" and clock_time(old_start, zone) != new_clock:
            subject = _(
                "Změna termínu: %(title)s nově %(day)s od %(time)s",
                title=title,
                day=on_day(meeting.start, zone),
                time=new_clock,
            )
        elif kind == "date":
            subject = _(
                "Změna termínu: %(title)s nově %(day)s",
                title=title,
                day=on_day(meeting.start, zone),
            )
        elif kind == "time":
            subject = _(
                "Změna času: %(title)s nově od %(start)s do %(end)s",
                title=title,
                start=new_clock,
                end=clock_time(meeting.end, zone),
            )
        elif kind == "place":
            subject = _(
                "Změna místa: %(title)s nově %(place)s", title=title, place=meeting.location
            )
        else:
            subject = _("Změna: %(title)s", title=title)
        body = CHANGE_BODIES[kind] % {"group": group_in_sentence(meeting.mailing_list.name)}
    return subject, body


def cancel_text(meeting: Meeting) -> tuple[str, str]:
    """(subject, body) of a cancellation: "Zrušeno: Setkání PSB ve čtvrtek 10. prosince"."""
    title = meeting_title(meeting)
    with in_language(meeting.mailing_list.language):
        day = on_day(meeting.start, local_zone().key)
        # The day once, when the title has it already ("10. prosince", "December 10").
        if day.split(" ", 2)[-1] in title:
            subject = _("Zrušeno: %(title)s", title=title)
        else:
            subject = _("Zrušeno: %(title)s %(day)s", title=title, day=day)
        body = _(
            "Dobrý den,\n\nsetkání %(group)s %(day)s se **ruší**. Z kalendáře se odstraní samo.\n",
            group=group_in_sentence(meeting.mailing_list.name),
            day=day,
        )
    return subject, body


def minutes_text(meeting: Meeting) -> tuple[str, str]:
    """(subject, body) of the minutes' draft, with headings for the minutes and the tasks."""
    title = meeting_title(meeting)
    with in_language(meeting.mailing_list.language):
        subject = _("Zápis: %(title)s", title=title)
        body = _(
            "Dobrý den,\n\nposíláme zápis ze setkání %(group)s (%(when)s).\n\n"
            "## Zápis\n\n…\n\n## Úkoly\n\n- …\n",
            group=group_in_sentence(meeting.mailing_list.name),
            when=format_meeting_time(meeting.start, meeting.end, local_zone().key),
        )
    return subject, body


def reminder_text(meeting: Meeting) -> tuple[str, str]:
    """(subject, body) of the reminder sent MEETING_REMINDER_HOURS before the start."""
    title = meeting_title(meeting)
    with in_language(meeting.mailing_list.language):
        subject = _("Připomínka: %(title)s", title=title)
        body = _(
            "Dobrý den,\n\npřipomínáme blížící se setkání %(group)s. "
            "Termín, místo a program najdete níže.\n",
            group=group_in_sentence(meeting.mailing_list.name),
        )
    return subject, body
