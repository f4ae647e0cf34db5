"""What the meeting announcements say: subjects and opening lines of an update, a
cancellation, the minutes and the reminder, of a whole meeting or of one date of a
series (moved or cancelled alone, or the rest of the series cancelled).

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

from ..archive.dates import long_date
from ..clock import local_zone
from ..czech import group_in_sentence
from ..groups.dates import clock_time, format_meeting_time, local_time, on_day
from ..i18n import in_language
from ..models import Meeting, MeetingOccurrence
from .calendar import meeting_title
from .occurrences import Occurrence
from .recurrence import describe

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

# The update of one date of a series by what changed; %(day)s is the date's old day.
DATE_CHANGE_BODIES = {
    "date": _l(
        "Dobrý den,\n\nměníme **termín** setkání %(group)s %(day)s. Ostatní termíny "
        "pravidelných setkání se nemění. Aktuální termín, místo a program najdete níže; "
        "pozvánka v kalendáři se sama aktualizuje.\n"
    ),
    "time": _l(
        "Dobrý den,\n\nměníme **čas** setkání %(group)s %(day)s. Ostatní termíny "
        "pravidelných setkání se nemění. Aktuální termín, místo a program najdete níže; "
        "pozvánka v kalendáři se sama aktualizuje.\n"
    ),
    "place": _l(
        "Dobrý den,\n\nměníme **místo** setkání %(group)s %(day)s. Ostatní termíny "
        "pravidelných setkání se nemění. Aktuální termín, místo a program najdete níže; "
        "pozvánka v kalendáři se sama aktualizuje.\n"
    ),
    "details": _l(
        "Dobrý den,\n\nposíláme **změněné údaje** o setkání %(group)s %(day)s. Ostatní "
        "termíny pravidelných setkání se nemění. Aktuální termín, místo a program najdete "
        "níže; pozvánka v kalendáři se sama aktualizuje.\n"
    ),
}


def change_kind(
    old_start: datetime, old_end: datetime, old_location: str, new: Meeting | MeetingOccurrence
) -> str:
    """What an update changed most visibly: "date", "time", "place" or "details"; `new`
    holds the new start, end and place (a whole meeting, or one date of a series)."""
    zone = local_zone().key
    if local_time(old_start, zone).date() != local_time(new.start, zone).date():
        return "date"
    if (old_start, old_end) != (new.start, new.end):
        return "time"
    if old_location != new.location and new.location:
        return "place"
    return "details"


def _change_subject(
    kind: str, title: str, old_start: datetime, new: Meeting | MeetingOccurrence
) -> str:
    """ "Změna termínu: … nově ve čtvrtek 11. prosince", in the current language."""
    zone = local_zone().key
    new_clock = clock_time(new.start, zone)
    if kind == "date" and clock_time(old_start, zone) != new_clock:
        return _(
            "Změna termínu: %(title)s nově %(day)s od %(time)s",
            title=title,
            day=on_day(new.start, zone),
            time=new_clock,
        )
    if kind == "date":
        return _("Změna termínu: %(title)s nově %(day)s", title=title, day=on_day(new.start, zone))
    if kind == "time":
        return _(
            "Změna času: %(title)s nově od %(start)s do %(end)s",
            title=title,
            start=new_clock,
            end=clock_time(new.end, zone),
        )
    if kind == "place":
        return _("Změna místa: %(title)s nově %(place)s", title=title, place=new.location)
    return _("Změna: %(title)s", title=title)


def _with_day(title: str, day: str) -> str:
    """ "Setkání PSB 13. ledna": the title with the day it is about, unless it names the day
    already; `day` is "v úterý 13. ledna" or "on Tuesday, January 13"."""
    date = day.split(" ", 2)[-1]  # "v úterý 13. ledna" → "13. ledna"
    return title if date in title else f"{title} {date}"


def title_on(title: str, moment: datetime) -> str:
    """A series' title with the date it is about, in the current language ("Setkání PSB
    13. ledna", "PSB meeting January 13"); the title alone when it names the day already."""
    return _with_day(title, on_day(moment, local_zone().key))


def _update(
    meeting: Meeting, title: str, old: Occurrence, new: Meeting | MeetingOccurrence, one_date: bool
) -> tuple[str, str]:
    """(subject, body) of an update from `old` (start, end, place) to `new`: of the whole
    meeting, or (`one_date`) of one date of a series, which the title and body name."""
    kind = change_kind(old.start, old.end, old.location, new)
    with in_language(meeting.mailing_list.language):
        if one_date:
            title = title_on(title, old.start)
        subject = _change_subject(kind, title, old.start, new)
        body = (DATE_CHANGE_BODIES if one_date else CHANGE_BODIES)[kind] % {
            "group": group_in_sentence(meeting.mailing_list.name),
            "day": on_day(old.start, local_zone().key),
        }
    return subject, body


def update_text(
    title: str, old_start: datetime, old_end: datetime, old_location: str, meeting: Meeting
) -> tuple[str, str]:
    """(subject, body) of an update: "Změna termínu: … nově ve čtvrtek 11. prosince"."""
    old = Occurrence(
        meeting.id, old_start, old_start, old_end, old_location, "", "", 0, False, False
    )
    return _update(meeting, title, old, meeting, one_date=False)


def date_update_text(meeting: Meeting, date: Occurrence, new: MeetingOccurrence) -> tuple[str, str]:
    """(subject, body) of the update of one date of a series: `date` as it was, `new` as it
    is now ("Změna termínu: Setkání PSB 13. ledna nově ve čtvrtek 15. ledna")."""
    return _update(meeting, meeting_title(meeting), date, new, one_date=True)


def _cancel(meeting: Meeting, start: datetime, one_date: bool) -> tuple[str, str]:
    """(subject, body) of the cancellation of the meeting, or (`one_date`) of one date of a
    series starting at `start`: "Zrušeno: Setkání PSB ve čtvrtek 10. prosince"."""
    title = meeting_title(meeting)
    with in_language(meeting.mailing_list.language):
        day = on_day(start, local_zone().key)
        if _with_day(title, day) == title:
            subject = _("Zrušeno: %(title)s", title=title)
        else:
            subject = _("Zrušeno: %(title)s %(day)s", title=title, day=day)
        group = group_in_sentence(meeting.mailing_list.name)
        if one_date:
            body = _(
                "Dobrý den,\n\nsetkání %(group)s %(day)s se **ruší**. Ostatní termíny "
                "pravidelných setkání platí. Z kalendáře se tento termín odstraní sám.\n",
                group=group,
                day=day,
            )
        else:
            body = _(
                "Dobrý den,\n\nsetkání %(group)s %(day)s se **ruší**. Z kalendáře se odstraní "
                "samo.\n",
                group=group,
                day=day,
            )
    return subject, body


def cancel_text(meeting: Meeting) -> tuple[str, str]:
    """(subject, body) of a cancellation: "Zrušeno: Setkání PSB ve čtvrtek 10. prosince"."""
    return _cancel(meeting, meeting.start, one_date=False)


def date_cancel_text(meeting: Meeting, date: Occurrence) -> tuple[str, str]:
    """(subject, body) of one date of a series cancelled alone."""
    return _cancel(meeting, date.start, one_date=True)


def rest_cancel_text(meeting: Meeting, date: Occurrence) -> tuple[str, str]:
    """(subject, body) of a series ended before `date`: "Zrušeno: Setkání PSB od 13. ledna
    2027"."""
    title = meeting_title(meeting)
    with in_language(meeting.mailing_list.language):
        day = long_date(local_time(date.start, local_zone().key).date())
        subject = _("Zrušeno: %(title)s od %(day)s", title=title, day=day)
        body = _(
            "Dobrý den,\n\npravidelná setkání %(group)s se od %(day)s **ruší**; dřívější "
            "termíny platí. Váš kalendář pozdější termíny odstraní sám.\n",
            group=group_in_sentence(meeting.mailing_list.name),
            day=day,
        )
    return subject, body


def split_texts(
    meeting: Meeting, date: Occurrence, follower: Meeting
) -> tuple[tuple[str, str], tuple[str, str]]:
    """(subject, body) of the two mails of a series moved from `date` on: the end of the
    series so far, and the invitation to the new series `follower` ("Změna termínu od
    13. ledna 2027: Setkání PSB nově každý čtvrtek v 10:00")."""
    zone = local_zone().key
    title = meeting_title(meeting)
    with in_language(meeting.mailing_list.language):
        values = {
            "title": title,
            "group": group_in_sentence(meeting.mailing_list.name),
            # From the first day that changes: the old date, or the new one when earlier.
            "day": long_date(local_time(min(date.start, follower.start), zone).date()),
            "rhythm": describe(follower.rrule, follower.start, zone),
            "first": on_day(follower.start, zone),
        }
        ended = (
            _("Změna termínu od %(day)s: %(title)s v dosavadním termínu končí", **values),
            _(
                "Dobrý den,\n\npravidelná setkání %(group)s se od %(day)s **přesouvají**: nově "
                "%(rhythm)s. Pozvánku na nové termíny posíláme v samostatném e-mailu. Dřívější "
                "termíny platí; pozdější termíny v dosavadním čase váš kalendář odstraní sám.\n",
                **values,
            ),
        )
        invitation = (
            _("Změna termínu od %(day)s: %(title)s nově %(rhythm)s", **values),
            _(
                "Dobrý den,\n\npravidelná setkání %(group)s se od %(day)s **přesouvají**: nově "
                "%(rhythm)s, poprvé %(first)s. Toto je pozvánka na nové termíny; ty dosavadní "
                "z kalendáře odstraní e-mail, který posíláme zvlášť. Odpovědi, které jste už "
                "dali, platí i pro nové termíny; pokud vám nový čas nevyhovuje, změňte prosím "
                "svou odpověď.\n",
                **values,
            ),
        )
    return ended, invitation


def minutes_text(meeting: Meeting, date: Occurrence | None = None) -> tuple[str, str]:
    """(subject, body) of the minutes' draft (of a series, of one of its dates), with
    headings for the minutes and the tasks."""
    title = meeting_title(meeting)
    start, end = (date.start, date.end) if date is not None else (meeting.start, meeting.end)
    with in_language(meeting.mailing_list.language):
        if date is not None:
            title = title_on(title, start)
        subject = _("Zápis: %(title)s", title=title)
        body = _(
            "Dobrý den,\n\nposíláme zápis ze setkání %(group)s (%(when)s).\n\n"
            "## Zápis\n\n…\n\n## Úkoly\n\n- …\n",
            group=group_in_sentence(meeting.mailing_list.name),
            when=format_meeting_time(start, end, local_zone().key),
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
