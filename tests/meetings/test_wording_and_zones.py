"""What an update and a cancellation say, and the time zone every calendar reads alike.

The calendar parts are read back by `icalendar` and, as calendar servers
built on it do, by `vobject`: both must give the same local times in winter
and in summer (a VTIMEZONE listing transitions as RDATE dates made vobject
show a July meeting an hour late).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import vobject
from sqlalchemy import select

from service.archive.dates import MONTHS_GENITIVE
from service.clock import utcnow
from service.extensions import db
from service.meetings import rules as meetings
from service.meetings.timezones import vtimezone
from service.models import Meeting
from tests.conftest import run_jobs
from tests.meetings.test_meetings import (
    calendars,
    event_of,
    make_invitation,
    meeting_input,
    members,  # noqa: F401  (a fixture)
    send,
    winter_thursday_10th,
)

PRAGUE = ZoneInfo("Europe/Prague")


def summer_thursday() -> datetime:
    """A Thursday in July (summer time, CEST, UTC+2), ahead of today."""
    day = utcnow().replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    while not (day.month == 7 and day.weekday() == 3):
        day += timedelta(days=1)
    return day


def calendar_texts(outbox) -> list[str]:
    texts = []
    for mail in outbox.mails:
        [part] = [p for p in mail.message.walk() if p.get_content_type() == "text/calendar"]
        texts.append(part.get_content())
    return texts


def test_an_update_says_what_changed_and_the_title_follows_the_new_date(app, outbox, members):  # noqa: F811
    day = winter_thursday_10th()
    month = MONTHS_GENITIVE[day.month - 1]
    invitation = make_invitation(
        day.replace(hour=9, minute=30), subject=f"Pozvánka: setkání PSB {day.day}. {month}"
    )
    send(invitation)
    run_jobs(app)
    assert str(event_of(calendars(outbox)[0])["SUMMARY"]) == f"Setkání PSB 10. {month}"
    outbox.catcher.clear()

    week_later = day + timedelta(days=7)
    new_month = MONTHS_GENITIVE[week_later.month - 1]
    meeting = db.session.scalar(select(Meeting))
    update = meetings.update_meeting(
        meeting, meeting_input(week_later.replace(hour=9, minute=30)), None
    )
    db.session.commit()
    assert update.subject == (
        f"Změna termínu: Setkání PSB 10. {month} nově ve čtvrtek {week_later.day}. {new_month}"
    )
    send(update)
    run_jobs(app)
    event = event_of(calendars(outbox)[0])
    assert str(event["SUMMARY"]) == f"Setkání PSB {week_later.day}. {new_month}"
    assert event["SEQUENCE"] == 1
    text = outbox.mails[0].message.get_body(("plain",)).get_content()
    assert "měníme termín" in text
    outbox.catcher.clear()

    cancel = meetings.cancel_meeting(meeting, None)
    db.session.commit()
    assert cancel.subject == f"Zrušeno: Setkání PSB {week_later.day}. {new_month}"
    run_jobs(app)
    message = outbox.mails[0].message
    assert "Pozvánka" not in str(message["Subject"])
    # (Words as the reader sees them: the text part wraps its lines.)
    assert "se ruší" in " ".join(message.get_body(("plain",)).get_content().split())
    assert (
        str(event_of(calendars(outbox)[0])["SUMMARY"])
        == f"Setkání PSB {week_later.day}. {new_month}"
    )


def test_a_change_of_time_or_place_says_so(app, outbox, members):  # noqa: F811
    day = winter_thursday_10th()
    send(make_invitation(day.replace(hour=9, minute=30), subject="Setkání PSB"))
    run_jobs(app)
    meeting = db.session.scalar(select(Meeting))
    later = meetings.update_meeting(meeting, meeting_input(day.replace(hour=13)), None)
    assert later.subject == "Změna času: Setkání PSB nově od 13:00 do 15:00"
    elsewhere = meetings.update_meeting(
        meeting, meeting_input(day.replace(hour=13), location="Komunitní centrum Hrabůvka"), None
    )
    assert elsewhere.subject == "Změna místa: Setkání PSB nově Komunitní centrum Hrabůvka"


def test_a_cancellation_without_a_date_in_the_title_names_the_day(app, outbox, members):  # noqa: F811
    day = winter_thursday_10th()
    send(make_invitation(day.replace(hour=9, minute=30), subject="Pozvánka na setkání PSB"))
    run_jobs(app)
    cancel = meetings.cancel_meeting(db.session.scalar(select(Meeting)), None)
    month = MONTHS_GENITIVE[day.month - 1]
    assert cancel.subject == f"Zrušeno: Setkání PSB ve čtvrtek 10. {month}"


@pytest.mark.parametrize("season", ["winter", "summer"])
def test_icalendar_and_vobject_read_the_same_local_time(app, outbox, members, season):  # noqa: F811
    day = winter_thursday_10th() if season == "winter" else summer_thursday()
    send(make_invitation(day.replace(hour=9, minute=30)))
    run_jobs(app)
    offset = timedelta(hours=1 if season == "winter" else 2)
    expected_utc = day.replace(hour=9, minute=30, tzinfo=UTC) - offset

    [text, *_] = calendar_texts(outbox)
    event = event_of(calendars(outbox)[0])
    assert event.decoded("DTSTART") == expected_utc
    [zone] = calendars(outbox)[0].walk("VTIMEZONE")
    observances = {c.name: c for c in zone.subcomponents}
    assert set(observances) == {"STANDARD", "DAYLIGHT"}
    for observance in observances.values():
        assert "RDATE" not in observance
        assert observance["RRULE"]["FREQ"] == ["YEARLY"]
        assert observance["RRULE"]["BYDAY"] == ["-1SU"]
    assert observances["DAYLIGHT"]["RRULE"]["BYMONTH"] == [3]
    assert observances["STANDARD"]["RRULE"]["BYMONTH"] == [10]

    parsed = vobject.readOne(text)
    start = parsed.vevent.dtstart.value
    assert (start.hour, start.minute) == (9, 30)
    assert start.utcoffset() == offset
    assert start.astimezone(UTC) == expected_utc
    # The attendee reads the same through both parsers.
    assert parsed.vevent.attendee.value == str(event["ATTENDEE"])


def test_the_yearly_rules_give_the_zoneinfo_offsets_for_years_ahead(app):
    """Read back by vobject, the VTIMEZONE gives zoneinfo's offset at every hour around
    each spring and autumn change of the next five years."""
    calendar = vobject.readOne(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//CS\r\n"
        + vtimezone("Europe/Prague").to_ical().decode()
        + "END:VCALENDAR\r\n"
    )
    from_rules = calendar.vtimezone.gettzinfo()
    for year in range(utcnow().year, utcnow().year + 5):
        for month, day in ((3, 24), (10, 24)):
            moment = datetime(year, month, day, tzinfo=UTC)
            for _ in range(24 * 8):
                assert (
                    moment.astimezone(from_rules).utcoffset()
                    == moment.astimezone(PRAGUE).utcoffset()
                ), moment
                moment += timedelta(hours=1)
