"""Single dates of a recurring meeting: one moved or cancelled alone (RECURRENCE-ID, its own
SEQUENCE), the rest of the series cancelled (UNTIL), and reminders date by date.

Real parts: the delivery engine sends to the SMTP sink, RQ's scheduler fires the
reminders on a real Redis, and every calendar is read by `icalendar` and by
`vobject`, which must agree on the local times in winter and in summer.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import islice
from zoneinfo import ZoneInfo

import icalendar
import pytest
import vobject
from sqlalchemy import delete, select, update

from service import tokens
from service.clock import utcnow
from service.extensions import db
from service.issues import sending
from service.meetings import occurrences, reminders, series
from service.meetings import rules as meetings
from service.models import Issue, Meeting, MeetingOccurrence, MeetingResponse, Subscriber
from tests.conftest import run_jobs
from tests.meetings.test_meetings import (
    BODY,
    calendars,
    fire_scheduled_jobs,
    group,
    meeting_input,
    members,  # noqa: F401  (a fixture)
    scheduled_reminders,
    send,
)
from workers.meetings import reconcile_reminders, send_reminder

PRAGUE = ZoneInfo("Europe/Prague")


def second_tuesday(months_ahead: int = 1, *, summer: bool | None = None) -> datetime:
    """The local midnight of a month's second Tuesday, at least `months_ahead` months on;
    with `summer`, the first such whose next second Tuesday is in summer (or winter) time."""
    day = utcnow().replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(
        days=30 * months_ahead
    )
    while True:
        if day.weekday() == 1 and 8 <= day.day <= 14:
            following = (day + timedelta(days=28)).replace(day=1)
            while not (following.weekday() == 1 and 8 <= following.day <= 14):
                following += timedelta(days=1)
            dst = following.replace(hour=9, tzinfo=PRAGUE).dst() != timedelta(0)
            if summer is None or dst == summer:
                return day
        day += timedelta(days=1)


def series_invitation(start_local: datetime) -> Meeting:
    fields, errors = sending.validate_fields("Pravidelné setkání PSB", BODY)
    assert not errors
    issue = sending.create_issue(group(), fields, None)
    meetings.attach_meeting(issue, meeting_input(start_local, rrule="FREQ=MONTHLY;BYDAY=2TU"))
    db.session.commit()
    send(issue)
    return db.session.scalar(select(Meeting))


def the_meeting() -> Meeting:
    db.session.expire_all()
    return db.session.scalar(select(Meeting))


def calendar_text(mail) -> str:
    [part] = [p for p in mail.message.walk() if p.get_content_type() == "text/calendar"]
    return part.get_content()


def local(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC).astimezone(PRAGUE)


@pytest.mark.parametrize("summer", [False, True], ids=["winter", "summer"])
def test_a_date_moved_alone_carries_its_recurrence_id_read_alike_by_both_parsers(
    app,
    client,
    outbox,
    members,  # noqa: F811
    summer,
):
    meeting = series_invitation(second_tuesday(summer=summer).replace(hour=9, minute=30))
    run_jobs(app)
    outbox.catcher.clear()
    [first, second, third] = occurrences.upcoming(meeting, after=utcnow(), count=3)
    assert local(second.start).dst() == (timedelta(hours=1) if summer else timedelta(0))
    moved_to = local(second.start).replace(tzinfo=None) + timedelta(days=1, minutes=30)
    update = series.update_occurrence(
        meeting, second.recurrence_id, meeting_input(moved_to, location="Charita, Ostrava"), None
    )
    db.session.commit()
    old, new = local(second.start), moved_to
    months = ("ledna", "února", "března", "dubna", "května", "června", "července", "srpna",
              "září", "října", "listopadu", "prosince")  # fmt: skip
    assert update.subject == (
        f"Změna termínu: Pravidelné setkání PSB {old.day}. {months[old.month - 1]} "
        f"nově ve středu {new.day}. {months[new.month - 1]} od 10:00"
    )
    send(update)
    run_jobs(app)

    assert len(outbox.mails) == 3
    text = " ".join(outbox.mails[0].message.get_body(("plain",)).get_content().split())
    assert "Ostatní termíny pravidelných setkání se nemění." in text
    assert "od 10:00 do 12:00" in text and "Charita, Ostrava" in text
    [cal] = calendars(outbox)[:1]
    assert cal["METHOD"] == "REQUEST"
    [event] = cal.walk("VEVENT")
    assert str(event["UID"]) == meeting.uid
    assert event.decoded("RECURRENCE-ID") == local(second.recurrence_id)
    assert event.decoded("DTSTART") == moved_to.replace(tzinfo=PRAGUE)
    assert event["SEQUENCE"] == 1 and "RRULE" not in event
    assert str(event["ATTENDEE"]).startswith("mailto:odberatel")
    assert the_meeting().sequence == 0  # answers to the series stay current

    # vobject reads the same moment and the same RECURRENCE-ID.
    read = vobject.readOne(calendar_text(outbox.mails[0])).vevent
    assert read.recurrence_id.value == local(second.recurrence_id)
    assert read.dtstart.value.astimezone(PRAGUE).replace(tzinfo=None) == moved_to

    # The series as a file (and the members' feed): the rule and the exception.
    whole = client.get(f"/meetings/{meeting.uid}.ics").data
    events = icalendar.Calendar.from_ical(whole).walk("VEVENT")
    assert [("RRULE" in e, "RECURRENCE-ID" in e) for e in events] == [(True, False), (False, True)]
    parsed = vobject.readOne(whole.decode())
    master = next(v for v in parsed.vevent_list if not hasattr(v, "recurrence_id"))
    dates = list(islice(master.getrruleset(), 3))
    assert [d.replace(tzinfo=None) for d in dates] == [
        local(o.recurrence_id).replace(tzinfo=None) for o in (first, second, third)
    ]
    assert all((d.hour, d.minute) == (9, 30) for d in dates)

    # The members' page lists the moved date where it now is.
    member = db.session.scalar(select(Subscriber).order_by(Subscriber.id))
    page = client.get(f"/groups/ostrava-psb/member/{tokens.preferences_token(member)}")
    assert "od 10:00 do 12:00" in page.get_data(as_text=True)


def test_a_date_cancelled_alone_sends_cancel_with_its_recurrence_id(app, client, outbox, members):  # noqa: F811
    meeting = series_invitation(second_tuesday().replace(hour=9, minute=30))
    run_jobs(app)
    outbox.catcher.clear()
    [_, second, third] = occurrences.upcoming(meeting, after=utcnow(), count=3)
    cancellation = series.cancel_occurrence(meeting, second.recurrence_id, None)
    db.session.commit()
    run_jobs(app)
    day = local(second.start)
    assert cancellation.subject.startswith("Zrušeno: Pravidelné setkání PSB v úterý ")
    assert f" {day.day}. " in cancellation.subject
    assert len(outbox.mails) == 3
    text = " ".join(outbox.mails[0].message.get_body(("plain",)).get_content().split())
    assert "se **ruší**" not in text and "se ruší" in text and "Ostatní termíny" in text
    cal = calendars(outbox)[0]
    assert cal["METHOD"] == "CANCEL"
    [event] = cal.walk("VEVENT")
    assert event["STATUS"] == "CANCELLED" and event["SEQUENCE"] == 1
    assert event.decoded("RECURRENCE-ID") == local(second.recurrence_id)
    assert vobject.readOne(calendar_text(outbox.mails[0])).vevent.recurrence_id.value == local(
        second.recurrence_id
    )

    # The series' calendar leaves the date out (EXDATE), and so do the pages.
    whole = client.get(f"/meetings/{meeting.uid}.ics").data.decode()
    master = vobject.readOne(whole).vevent
    # The rule has no end: take the first two dates after now, not all of them to 9999.
    following = list(islice((d for d in master.getrruleset() if d > datetime.now(UTC)), 2))
    assert following[1] == local(third.start)
    assert [o.recurrence_id for o in occurrences.upcoming(meeting, after=utcnow(), count=2)][
        1
    ] == third.recurrence_id
    with pytest.raises(meetings.MeetingError, match="už je zrušený"):
        series.cancel_occurrence(meeting, second.recurrence_id, None)
    with pytest.raises(meetings.MeetingError, match="není"):
        series.cancel_occurrence(meeting, second.recurrence_id + timedelta(hours=1), None)


def test_the_rest_of_a_series_is_cancelled_with_until(app, client, outbox, members):  # noqa: F811
    meeting = series_invitation(second_tuesday().replace(hour=9, minute=30))
    run_jobs(app)
    outbox.catcher.clear()
    [first, second, third] = occurrences.upcoming(meeting, after=utcnow(), count=3)
    issue = series.cancel_rest(meeting, third.recurrence_id, None)
    db.session.commit()
    run_jobs(app)
    assert issue.subject.startswith("Zrušeno: Pravidelné setkání PSB od ")
    meeting = the_meeting()
    assert "UNTIL=" in meeting.rrule and meeting.sequence == 1
    cal = calendars(outbox)[0]
    assert cal["METHOD"] == "REQUEST"
    read = vobject.readOne(calendar_text(outbox.mails[0])).vevent
    assert list(read.getrruleset()) == [local(first.start), local(second.start)]
    assert occurrences.upcoming(meeting, after=second.start, count=5) == []


def test_a_series_is_reminded_date_by_date_once_each(app, outbox, members):  # noqa: F811
    meeting = series_invitation(second_tuesday().replace(hour=9, minute=30))
    [first, second] = occurrences.upcoming(meeting, after=utcnow(), count=2)
    assert list(scheduled_reminders()) == [
        reminders.reminder_job_id(meeting.id, first.start, first.recurrence_id)
    ]
    run_jobs(app)
    outbox.catcher.clear()

    fire_scheduled_jobs(app)
    sent = [m for m in outbox.mails if m.message["Subject"].startswith("Připomínka")]
    assert len(sent) == 3
    [event] = calendars(outbox)[0].walk("VEVENT")
    assert event.decoded("RECURRENCE-ID") == local(first.recurrence_id)
    assert event.decoded("DTSTART") == local(first.start)
    reminder = db.session.scalar(select(Issue).where(Issue.subject.startswith("Připomínka")))
    assert reminder.meeting_occurrence == first.recurrence_id
    # The next date's reminder is scheduled; the first is never sent twice.
    assert list(scheduled_reminders()) == [
        reminders.reminder_job_id(meeting.id, second.start, second.recurrence_id)
    ]
    stamp = occurrences.timestamp
    assert send_reminder(meeting.id, stamp(first.start), stamp(first.recurrence_id)) == "skipped"
    assert reconcile_reminders() == 0


def test_a_date_moved_alone_is_reminded_at_its_new_time_and_lost_jobs_come_back(
    app,
    outbox,
    members,  # noqa: F811
):
    meeting = series_invitation(second_tuesday().replace(hour=9, minute=30))
    [first] = occurrences.upcoming(meeting, after=utcnow(), count=1)
    moved_to = local(first.start).replace(tzinfo=None) + timedelta(hours=4)
    update = series.update_occurrence(meeting, first.recurrence_id, meeting_input(moved_to), None)
    db.session.commit()
    send(update)
    assert sorted(scheduled_reminders()) == sorted(
        [
            reminders.reminder_job_id(meeting.id, first.start, first.recurrence_id),
            reminders.reminder_job_id(
                meeting.id, moved_to.replace(tzinfo=PRAGUE).astimezone(UTC).replace(tzinfo=None),
                first.recurrence_id,
            ),
        ]
    )  # fmt: skip
    run_jobs(app)
    outbox.catcher.clear()
    fire_scheduled_jobs(app)
    sent = [m for m in outbox.mails if m.message["Subject"].startswith("Připomínka")]
    assert len(sent) == 3  # the job for the old time found the date moved
    assert "od 13:30 do 15:30" in sent[0].message.get_body(("plain",)).get_content()
    row = db.session.scalar(select(MeetingOccurrence))
    assert row.reminder_sent_at is not None and row.sequence == 1

    # Redis forgets the next date's job: the reconciler puts it back, once.
    from service.jobs import redis_connection

    redis_connection().flushdb()
    assert reconcile_reminders() == 1
    assert reconcile_reminders() == 0


# --- answers, attendance and the coordinator's controls per date ---------------------


def reminder_of(app, outbox, address: str):
    """Fire the scheduled reminder (of the series' first date); the mail `address` got."""
    run_jobs(app)
    outbox.catcher.clear()
    fire_scheduled_jobs(app)
    return next(m for m in outbox.mails if m.rcpt_tos == [address])


def test_answers_per_date_by_link_and_by_calendar_and_attendance_per_date(
    app,
    client,
    runner,
    accounts,
    outbox,
    members,  # noqa: F811
):
    from service.accounts import create_token
    from tests.conftest import log_in
    from tests.meetings.test_answers import answers, api_get, reply_for, rsvp_link

    meeting = series_invitation(second_tuesday().replace(hour=9, minute=30))
    run_jobs(app)
    invitation = {m.rcpt_tos[0]: m for m in outbox.mails}
    [first, second] = occurrences.upcoming(meeting, after=utcnow(), count=2)
    # The series' invitation: one answer for every date.
    client.post(
        rsvp_link(invitation["odberatel0@example.cz"], "Přijdu").split("?")[0],
        data={"odpoved": "prijdu"},
    )
    mail = reminder_of(app, outbox, "odberatel0@example.cz")
    path = rsvp_link(mail, "Nepřijdu")
    assert path.startswith(f"/rsvp/{meeting.id}-{first.key}.")
    page = client.get(path).get_data(as_text=True)
    assert "Odpověď platí jen pro tento termín pravidelného setkání." in page
    assert answers() == {"odberatel0@example.cz": ("ACCEPTED", "")}  # GET changed nothing
    client.post(path.split("?")[0], data={"odpoved": "neprijdu", "poznamka": "dovolená"})
    rows = db.session.execute(
        select(MeetingResponse.occurrence, MeetingResponse.partstat).order_by(MeetingResponse.id)
    ).all()
    assert rows == [(None, "ACCEPTED"), (first.recurrence_id, "DECLINED")]

    # Accept in the calendar app for the first date only (RECURRENCE-ID), by the pipe.
    other = next(m for m in outbox.mails if m.rcpt_tos == ["odberatel1@example.cz"])
    _, raw = reply_for(other, "TENTATIVE")
    result = runner.invoke(args=["replies", "process", "-"], input=raw)
    assert "Odpověď zaznamenána: TENTATIVE" in result.output
    token = create_token(accounts.coordinator)
    db.session.commit()
    reminder = db.session.scalar(select(Issue).where(Issue.subject.startswith("Připomínka")))
    counted = api_get(client, token, f"/api/v1/issues/{reminder.id}").get_json()
    assert counted["meeting_date"] == first.recurrence_id.isoformat() + "+00:00"
    assert counted["attendance"] == {
        "accepted": 0, "tentative": 1, "declined": 1, "needs_action": 1,
    }  # fmt: skip
    invitation_id = db.session.scalar(select(Issue.id).order_by(Issue.id))
    series_counts = api_get(client, token, f"/api/v1/issues/{invitation_id}").get_json()
    series_counts = series_counts["attendance"]
    assert series_counts == {"accepted": 1, "tentative": 0, "declined": 0, "needs_action": 2}
    # A stale calendar answer to the date (below its SEQUENCE) changes nothing.
    series.update_occurrence(
        meeting, second.recurrence_id, meeting_input(local(second.start).replace(tzinfo=None)
                                                     + timedelta(hours=1)), None,
    )  # fmt: skip
    db.session.commit()

    # After the first date, the coordinator ticks who came at that date.
    # Time passes: the first date began 3 h ago (a daily rule, so it still is a date).
    shift = first.start - utcnow().replace(second=0, microsecond=0) + timedelta(hours=3)
    moving = the_meeting()
    moving.start, moving.end = moving.start - shift, moving.end - shift
    moving.rrule = "FREQ=DAILY"
    db.session.execute(
        update(MeetingResponse)
        .where(MeetingResponse.occurrence == first.recurrence_id)
        .values(occurrence=first.recurrence_id - shift)
    )
    db.session.execute(delete(MeetingOccurrence))
    db.session.commit()
    log_in(client, accounts.coordinator.email)
    started = occurrences.upcoming(the_meeting(), after=utcnow() - timedelta(days=1), count=1)[0]
    html = client.get(f"/admin/meetings/{meeting.id}/attendance").get_data(as_text=True)
    assert f'name="termin" value="{started.key}"' in html
    csrf = html.split('name="csrf_token" value="')[1].split('"')[0]
    zero = db.session.scalar(select(Subscriber.id).filter_by(email="odberatel2@example.cz"))
    ticked = client.post(
        f"/admin/meetings/{meeting.id}/attendance",
        data={"csrf_token": csrf, "termin": started.key, "present": [str(zero)]},
    )
    assert ticked.status_code == 302
    came = db.session.execute(
        select(MeetingResponse.subscriber_id, MeetingResponse.attended).where(
            MeetingResponse.occurrence == started.recurrence_id
        )
    ).all()
    assert sorted(a for _, a in came) == [False, False, True]
    no_date = client.post(
        f"/admin/meetings/{meeting.id}/attendance", data={"csrf_token": csrf, "termin": "1"}
    )
    assert no_date.status_code == 404


def test_the_api_and_the_admin_move_and_cancel_single_dates(app, client, accounts, outbox, members):  # noqa: F811
    from service.accounts import create_token, create_user
    from service.models import MailingList
    from tests.conftest import PASSWORD, csrf_token_of, log_in

    meeting = series_invitation(second_tuesday().replace(hour=9, minute=30))
    run_jobs(app)
    [first, second, third, fourth] = occurrences.upcoming(meeting, after=utcnow(), count=4)
    token = create_token(accounts.coordinator)
    db.session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    shown = client.get(
        f"/api/v1/issues/{db.session.scalar(select(Issue.id))}", headers=headers
    ).get_json()["meeting"]
    assert [d["key"] for d in shown["dates"]][:2] == [first.key, second.key]

    moved = local(second.start).replace(tzinfo=None) + timedelta(days=2)
    body = {"start": moved.isoformat(), "end": (moved + timedelta(hours=2)).isoformat(),
            "location": "Charita"}  # fmt: skip
    iso = second.recurrence_id.isoformat() + "Z"
    made = client.post(f"/api/v1/meetings/{meeting.id}/dates/{iso}/update", json=body,
                       headers=headers)  # fmt: skip
    assert made.status_code == 201, made.get_json()
    assert made.get_json()["meeting_date"] == second.recurrence_id.isoformat() + "+00:00"
    cancelled = client.post(
        f"/api/v1/meetings/{meeting.id}/dates/{third.key}/cancel", headers=headers
    )
    assert cancelled.status_code == 202 and cancelled.get_json()["meeting_method"] == "CANCEL"
    again = client.post(f"/api/v1/meetings/{meeting.id}/dates/{third.key}/cancel", headers=headers)
    assert again.status_code == 409 and "už je zrušený" in again.get_json()["error"]
    nowhere = client.post(f"/api/v1/meetings/{meeting.id}/dates/12345/cancel", headers=headers)
    assert nowhere.status_code == 409
    junk = client.post(f"/api/v1/meetings/{meeting.id}/dates/zitra/cancel", headers=headers)
    assert junk.status_code == 404

    # The admin: the invitation's page lists the dates; the rest of the series ends.
    log_in(client, accounts.coordinator.email)
    invitation = db.session.scalar(select(Issue).order_by(Issue.id))
    page = client.get(f"/admin/issues/{invitation.id}").get_data(as_text=True)
    assert f'data-key="{fourth.key}"' in page and "Přesunout tento termín" in page
    csrf = csrf_token_of(client, f"/admin/issues/{invitation.id}")
    unconfirmed = client.post(
        f"/admin/meetings/{meeting.id}/dates/{fourth.key}",
        data={"csrf_token": csrf, "issue": invitation.id, "akce": "zrusit-dalsi"},
    )
    assert unconfirmed.status_code == 302 and "UNTIL" not in the_meeting().rrule
    ended = client.post(
        f"/admin/meetings/{meeting.id}/dates/{fourth.key}",
        data={"csrf_token": csrf, "issue": invitation.id, "akce": "zrusit-dalsi", "confirm": "1"},
    )
    assert ended.status_code == 302
    assert "UNTIL" in the_meeting().rrule
    assert occurrences.upcoming(the_meeting(), after=third.start, count=3) == []

    # A coordinator of another group: 404, as for anything not theirs.
    other = MailingList(slug="chomutov-os", name="Odborná skupina Chomutov", kind="group")
    db.session.add(other)
    db.session.flush()
    stranger = create_token(
        create_user("koordinator@chomutov.example", PASSWORD, "coordinator", [other])
    )
    db.session.commit()
    refused = client.post(
        f"/api/v1/meetings/{meeting.id}/dates/{second.key}/cancel",
        headers={"Authorization": f"Bearer {stranger}"},
    )
    assert refused.status_code == 404


def test_the_sheet_of_a_date_leads_back_to_that_dates_attendance(app, client, accounts, members):  # noqa: F811
    """Before: "Zpět na účast" on a date's printable sheet led to the series' default date."""
    from html.parser import HTMLParser

    from tests.conftest import log_in

    meeting = series_invitation(second_tuesday().replace(hour=9, minute=30))
    [_, second] = occurrences.upcoming(meeting, after=utcnow(), count=2)
    log_in(client, accounts.coordinator.email)
    attendance = client.get(f"/admin/meetings/{meeting.id}/attendance?termin={second.key}")
    sheet_link = next(
        href for href in links_of(attendance.get_data(as_text=True)) if "/attendance/sheet" in href
    )
    sheet = client.get(sheet_link)
    assert sheet.status_code == 200

    class Back(HTMLParser):
        """The href of the link whose text is "Zpět na účast"."""

        href: str | None = None
        _open: str | None = None

        def handle_starttag(self, tag, attrs):
            if tag == "a":
                self._open = dict(attrs).get("href")

        def handle_data(self, data):
            if self._open is not None and data.strip() == "Zpět na účast":
                self.href = self._open

        def handle_endtag(self, tag):
            if tag == "a":
                self._open = None

    back = Back()
    back.feed(sheet.get_data(as_text=True))
    assert back.href == f"/admin/meetings/{meeting.id}/attendance?termin={second.key}"
    page = client.get(back.href).get_data(as_text=True)
    assert f'name="termin" value="{second.key}"' in page


def links_of(html: str) -> list[str]:
    """Every link's href on a page, unescaped."""
    from html.parser import HTMLParser

    class Links(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.found: list[str] = []

        def handle_starttag(self, tag, attrs):
            if tag == "a" and dict(attrs).get("href"):
                self.found.append(dict(attrs)["href"])

    parser = Links()
    parser.feed(html)
    return parser.found
