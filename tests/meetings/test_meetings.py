"""Meeting invitations with real parts: RQ worker and scheduler, Redis, SMTP sink, databases.

The invitation, its update, its cancellation and its reminder go out through
the delivery engine; the calendar part of the captured mails is parsed back
with `icalendar` and its fields asserted.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import pytest
from rq import Queue
from rq.job import Job
from rq.scheduler import RQScheduler
from sqlalchemy import select

from service.clock import utcnow
from service.extensions import db
from service.issues import sending
from service.jobs import DEFAULT_QUEUE, redis_connection
from service.meetings import calendar, reminders
from service.meetings import rules as meetings
from service.models import Issue, MailingList, Meeting
from tests.conftest import BASE_URL, add_confirmed_subscribers, run_jobs
from workers.meetings import reconcile_reminders

PRAGUE = ZoneInfo("Europe/Prague")
BODY = "Dobrý den,\n\nzveme vás na **další setkání** pracovní skupiny.\n"
AGENDA = "1. Zahájení\n2. Bytový fond města\n3. Různé\n"


WINTER_MONTHS = {11: "listopadu", 12: "prosince", 1: "ledna", 2: "února"}


def winter_thursday_10th() -> datetime:
    """A Thursday the 10th in winter time (CET, UTC+1), a month or more ahead."""
    day = utcnow().replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=30)
    while not (day.day == 10 and day.weekday() == 3 and day.month in WINTER_MONTHS):
        day += timedelta(days=1)
    return day


def czech_day(day: datetime, weekday: str = "čtvrtek") -> str:
    return f"{weekday} {day.day}. {WINTER_MONTHS[day.month]} {day.year}"


def group() -> MailingList:
    return db.session.scalar(select(MailingList).filter_by(slug="ostrava-psb"))


def meeting_input(start_local: datetime, hours: float = 2, **extra) -> meetings.MeetingInput:
    data = {
        "start": start_local.isoformat(),
        "end": (start_local + timedelta(hours=hours)).isoformat(),
        "location": "Magistrát města Ostravy, zasedací místnost 118",
        "online_url": "https://meet.example.cz/psb",
        "agenda": AGENDA,
        **extra,
    }
    fields, errors = meetings.validate_meeting(data)
    assert not errors, errors
    return fields


def make_invitation(start_local: datetime, subject: str = "Setkání PSB v prosinci") -> Issue:
    fields, errors = sending.validate_fields(subject, BODY)
    assert not errors
    issue = sending.create_issue(group(), fields, None)
    meetings.attach_meeting(issue, meeting_input(start_local))
    db.session.commit()
    return issue


def send(issue: Issue) -> None:
    sending.send_now(issue)
    db.session.commit()


def calendars(outbox) -> list[icalendar.Calendar]:
    found = []
    for mail in outbox.mails:
        parts = [p for p in mail.message.walk() if p.get_content_type() == "text/calendar"]
        assert len(parts) == 1, "every mail carries exactly one calendar part"
        found.append(icalendar.Calendar.from_ical(parts[0].get_content()))
    return found


def event_of(calendar: icalendar.Calendar) -> icalendar.Event:
    [event] = calendar.walk("VEVENT")
    return event


@pytest.fixture
def members(app):
    return add_confirmed_subscribers("ostrava-psb", 3)


def test_invitation_carries_an_icalendar_request_with_prague_times(app, outbox, members):
    day = winter_thursday_10th()
    start_local = day.replace(hour=9, minute=30)
    issue = make_invitation(start_local)
    send(issue)
    run_jobs(app)

    assert len(outbox.mails) == 3
    cals = calendars(outbox)
    cal = cals[0]
    assert cal["METHOD"] == "REQUEST"
    assert cal["VERSION"] == "2.0"
    assert "PRODID" in cal
    assert [tz["TZID"] for tz in cal.walk("VTIMEZONE")] == ["Europe/Prague"]
    event = event_of(cal)
    start, end = event.decoded("DTSTART"), event.decoded("DTEND")
    assert event["DTSTART"].params["TZID"] == "Europe/Prague"
    assert event["DTEND"].params["TZID"] == "Europe/Prague"
    assert start == day.replace(hour=8, minute=30, tzinfo=UTC)  # 9:30 CET
    assert end == day.replace(hour=10, minute=30, tzinfo=UTC)
    assert event["SUMMARY"] == "Setkání PSB v prosinci"
    assert "zasedací místnost 118" in event["LOCATION"]
    assert "https://meet.example.cz/psb" in event["LOCATION"]
    assert "Bytový fond města" in event["DESCRIPTION"]
    assert str(event["ORGANIZER"]).startswith("mailto:rsvp+m")
    assert str(event["ORGANIZER"]).endswith("@socialnibydleni.example")
    assert event["ORGANIZER"].params["CN"] == "Pracovní skupina sociálního bydlení"
    assert event["SEQUENCE"] == 0
    assert event["STATUS"] == "CONFIRMED"
    assert event["UID"].endswith("@socialnibydleni.example")
    assert "RRULE" not in event

    # Each member's copy names that member as ATTENDEE (RFC 5546 §3.2.2), and only them.
    for mail, cal in zip(outbox.mails, cals, strict=True):
        attendee = event_of(cal)["ATTENDEE"]
        assert not isinstance(attendee, list)
        [recipient] = mail.rcpt_tos
        assert str(attendee) == f"mailto:{recipient}"
        assert attendee.params["ROLE"] == "REQ-PARTICIPANT"
        assert attendee.params["PARTSTAT"] == "NEEDS-ACTION"
        assert attendee.params["RSVP"] == "TRUE"
        assert attendee.params["CN"].startswith("Čtenář ")
        assert str(mail.message["To"]) == f"{attendee.params['CN']} <{recipient}>"
    # ... and its own reply address; the rest of the calendar is the same for all.
    assert len({str(event_of(c)["ORGANIZER"]) for c in cals}) == 3
    without_personal = {
        b"\r\n".join(
            line
            for line in c.to_ical().split(b"\r\n")
            if not line.startswith((b"ATTENDEE", b"ORGANIZER", b"DTSTAMP", b" "))
        )
        for c in cals
    }
    assert len(without_personal) == 1

    mail = outbox.mails[0].message
    [calendar_part] = [p for p in mail.walk() if p.get_content_type() == "text/calendar"]
    assert calendar_part.get_param("method") == "REQUEST"
    assert calendar_part.get_param("charset") == "utf-8"


def test_mail_shows_the_czech_date_place_agenda_and_calendar_link(app, outbox, members):
    day = winter_thursday_10th()
    issue = make_invitation(day.replace(hour=9, minute=30))
    send(issue)
    run_jobs(app)
    message = outbox.mails[0].message
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    when = f"{czech_day(day)} od 9:30 do 11:30"
    uid = db.session.scalar(select(Meeting.uid))
    for part in (text, html):
        assert when in part
        assert "zasedací místnost 118" in part
        assert "https://meet.example.cz/psb" in part
        assert "Bytový fond města" in part
        assert "Přidat do kalendáře" in part
        assert f"{BASE_URL}/meetings/{uid}.ics" in part


def test_the_ics_download_is_public_and_matches_the_meeting(app, client, outbox):
    issue = make_invitation(winter_thursday_10th().replace(hour=9, minute=30))
    uid = issue.meeting.uid
    response = client.get(f"/meetings/{uid}.ics")
    assert response.status_code == 200
    assert response.mimetype == "text/calendar"
    event = event_of(icalendar.Calendar.from_ical(response.data))
    assert event["UID"] == uid
    assert client.get("/meetings/neexistuje@example.ics").status_code == 404


def test_update_keeps_the_uid_and_raises_the_sequence(app, outbox, members):
    day = winter_thursday_10th()
    issue = make_invitation(day.replace(hour=9, minute=30))
    send(issue)
    run_jobs(app)
    [first] = {event_of(c)["UID"] for c in calendars(outbox)}
    outbox.catcher.clear()

    meeting = db.session.scalar(select(Meeting))
    update = meetings.update_meeting(
        meeting, meeting_input((day + timedelta(days=1)).replace(hour=13)), None
    )
    db.session.commit()
    assert update.status == "draft"
    tomorrow = day + timedelta(days=1)
    assert update.subject == (
        f"Změna termínu: Setkání PSB v prosinci nově v pátek {tomorrow.day}. "
        f"{WINTER_MONTHS[tomorrow.month]} od 13:00"
    )
    send(update)
    run_jobs(app)

    assert len(outbox.mails) == 3
    event = event_of(calendars(outbox)[0])
    assert event["UID"] == first
    assert event["SEQUENCE"] == 1
    assert event.decoded("DTSTART") == (day + timedelta(days=1)).replace(hour=12, tzinfo=UTC)
    text = outbox.mails[0].message.get_body(("plain",)).get_content()
    assert f"{czech_day(day + timedelta(days=1), 'pátek')} od 13:00 do 15:00" in text


def test_cancellation_sends_method_cancel(app, outbox, members):
    issue = make_invitation(winter_thursday_10th().replace(hour=9, minute=30))
    send(issue)
    run_jobs(app)
    uid = issue.meeting.uid
    outbox.catcher.clear()

    cancel = meetings.cancel_meeting(db.session.scalar(select(Meeting)), None)
    db.session.commit()
    assert cancel.status == "sending"
    run_jobs(app)

    assert len(outbox.mails) == 3
    cal = calendars(outbox)[0]
    assert cal["METHOD"] == "CANCEL"
    event = event_of(cal)
    assert event["UID"] == uid
    assert event["STATUS"] == "CANCELLED"
    assert event["SEQUENCE"] == 1
    part = next(
        p for p in outbox.mails[0].message.walk() if p.get_content_type() == "text/calendar"
    )
    assert part.get_param("method") == "CANCEL"
    with pytest.raises(meetings.MeetingError):
        meetings.cancel_meeting(db.session.scalar(select(Meeting)), None)


def test_a_sent_invitation_keeps_its_calendar_when_the_meeting_changes(app, outbox, members):
    day = winter_thursday_10th()
    issue = make_invitation(day.replace(hour=9, minute=30))
    send(issue)  # frozen now; delivered after the change below
    meeting = db.session.scalar(select(Meeting))
    meetings.update_meeting(
        meeting, meeting_input((day + timedelta(days=1)).replace(hour=13)), None
    )
    db.session.commit()
    run_jobs(app)
    event = event_of(calendars(outbox)[0])
    assert event["SEQUENCE"] == 0
    assert event.decoded("DTSTART") == day.replace(hour=8, minute=30, tzinfo=UTC)


def test_the_section_5_6_headers_stay_with_a_calendar(app, outbox, members):
    send(make_invitation(winter_thursday_10th().replace(hour=9, minute=30)))
    run_jobs(app)
    raw = outbox.mails[0].data
    header_lines = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert any(h.startswith(b"List-Unsubscribe: <" + BASE_URL.encode()) for h in header_lines)
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in header_lines
    assert any(h.startswith(b"List-Id: ") and b"<ostrava-psb." in h for h in header_lines)
    msg = outbox.mails[0].message
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.get_payload()] == [
        "text/plain",
        "text/html",
        "text/calendar",
    ]
    assert msg["Message-ID"].endswith("@socialnibydleni.example>")


# --- validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"start": "zítra"}, "start", "Čas není platný údaj ve formátu ISO 8601"),
        ({"start": "2001-01-01T10:00"}, "start", "Začátek setkání musí být v budoucnosti."),
        ({"end": "START"}, "end", "Konec setkání musí být po jeho začátku."),
        ({"location": "", "online_url": None}, "location", "Vyplňte místo setkání"),
        ({"online_url": "javascript:alert(1)"}, "online_url", "musí začínat http://"),
        ({"location": "x" * 301}, "location", "nejvýše 300 znaků"),
        ({"location": "a\nb"}, "location", "na jednom řádku"),
        ({"agenda": 5}, "agenda", "Program musí být text."),
    ],
)
def test_invalid_meetings_are_refused_in_czech(app, change, field, message):
    start = winter_thursday_10th().replace(hour=9, minute=30).isoformat()
    data = {"start": start, "end": start.replace("09:30", "11:30"), "location": "Radnice"}
    data.update({k: (start if v == "START" else v) for k, v in change.items()})
    fields, errors = meetings.validate_meeting(data)
    assert fields is None
    assert message in errors[field]


def test_a_time_skipped_by_the_spring_clock_change_is_refused(app):
    year = utcnow().year + 1
    last_sunday = max(
        datetime(year, 3, d) for d in range(25, 32) if datetime(year, 3, d).weekday() == 6
    )
    _, errors = meetings.validate_meeting(
        {
            "start": last_sunday.replace(hour=2, minute=30).isoformat(),
            "end": last_sunday.replace(hour=4).isoformat(),
            "location": "Radnice",
        }
    )
    assert "letní čas" in errors["start"]


def test_newsletters_refuse_meetings(app):
    issue = sending.create_issue(
        db.session.scalar(select(MailingList).filter_by(slug="zpravodaj")),
        sending.IssueInput("A", BODY),
        None,
    )
    with pytest.raises(meetings.MeetingError):
        meetings.attach_meeting(issue, meeting_input(winter_thursday_10th().replace(hour=9)))


def test_czech_meeting_time_over_two_days(app):
    start = datetime(2026, 12, 10, 8, 30)
    assert calendar.format_meeting_time(start, start + timedelta(hours=2)) == (
        "čtvrtek 10. prosince 2026 od 9:30 do 11:30"
    )
    summer = datetime(2026, 7, 1, 7, 0)  # CEST
    assert calendar.format_meeting_time(summer, summer + timedelta(days=1)) == (
        "od středy 1. července 2026 9:00 do čtvrtka 2. července 2026 9:00"
    )


# --- reminders ---------------------------------------------------------------------


def fire_scheduled_jobs(app) -> None:
    """Move every scheduled job's time to now and let RQ's own scheduler enqueue it."""
    connection = redis_connection()
    registry = Queue(DEFAULT_QUEUE, connection=connection).scheduled_job_registry
    for job_id in registry.get_job_ids():
        registry.schedule(Job.fetch(job_id, connection=connection), datetime.now(UTC))
    scheduler = RQScheduler([DEFAULT_QUEUE], connection=connection)
    scheduler.acquire_locks()
    scheduler.enqueue_scheduled_jobs()
    scheduler.release_locks()
    run_jobs(app)


def scheduled_reminders() -> dict[str, datetime]:
    connection = redis_connection()
    registry = Queue(DEFAULT_QUEUE, connection=connection).scheduled_job_registry
    return {
        job_id: registry.get_scheduled_time(job_id)
        for job_id in registry.get_job_ids()
        if "-reminder-" in job_id
    }


def test_sending_an_invitation_schedules_the_reminder_a_day_before(app, outbox, members):
    day = winter_thursday_10th()
    send(make_invitation(day.replace(hour=9, minute=30)))
    [(job_id, at)] = scheduled_reminders().items()
    meeting = db.session.scalar(select(Meeting))
    assert job_id == reminders.reminder_job_id(meeting.id, meeting.start)
    assert at == (day - timedelta(days=1)).replace(hour=8, minute=30, tzinfo=UTC)


def test_reminder_goes_out_once_with_the_current_sequence(app, outbox, members):
    day = winter_thursday_10th()
    send(make_invitation(day.replace(hour=9, minute=30)))
    run_jobs(app)
    outbox.catcher.clear()

    fire_scheduled_jobs(app)
    assert len(outbox.mails) == 3
    message = outbox.mails[0].message
    assert message["Subject"] == "Připomínka: Setkání PSB v prosinci"
    cal = calendars(outbox)[0]
    assert cal["METHOD"] == "REQUEST"
    assert event_of(cal)["SEQUENCE"] == 0
    assert db.session.scalar(select(Meeting.reminder_sent_at)) is not None

    # Twice is once: the job claims the meeting with a conditional update.
    from workers.meetings import send_reminder

    meeting = db.session.scalar(select(Meeting))
    assert send_reminder(meeting.id, int(meeting.start.replace(tzinfo=UTC).timestamp())) == (
        "skipped"
    )
    assert reconcile_reminders() == 0


def test_no_reminder_after_cancellation(app, outbox, members):
    send(make_invitation(winter_thursday_10th().replace(hour=9, minute=30)))
    run_jobs(app)
    meetings.cancel_meeting(db.session.scalar(select(Meeting)), None)
    db.session.commit()
    run_jobs(app)
    outbox.catcher.clear()

    assert scheduled_reminders()  # still in RQ's registry ...
    fire_scheduled_jobs(app)  # ... and run: it finds the meeting cancelled
    assert outbox.mails == []
    assert db.session.scalar(select(Meeting.reminder_sent_at)) is None
    assert db.session.scalar(select(Issue).where(Issue.subject.startswith("Připomínka"))) is None


def test_a_moved_meeting_is_reminded_at_its_new_time_only(app, outbox, members):
    day = winter_thursday_10th()
    send(make_invitation(day.replace(hour=9, minute=30)))
    update = meetings.update_meeting(
        db.session.scalar(select(Meeting)),
        meeting_input((day + timedelta(days=7)).replace(hour=9, minute=30)),
        None,
    )
    db.session.commit()
    send(update)
    assert sorted(scheduled_reminders().values()) == [
        (day - timedelta(days=1)).replace(hour=8, minute=30, tzinfo=UTC),
        (day + timedelta(days=6)).replace(hour=8, minute=30, tzinfo=UTC),
    ]
    run_jobs(app)
    outbox.catcher.clear()
    fire_scheduled_jobs(app)
    reminders = [m for m in outbox.mails if m.message["Subject"].startswith("Připomínka")]
    assert len(reminders) == 3  # one job found the start moved and sent nothing
    assert event_of(calendars(outbox)[0])["SEQUENCE"] == 1


def test_reconciler_reschedules_a_reminder_redis_lost(app, outbox, members):
    send(make_invitation(winter_thursday_10th().replace(hour=9, minute=30)))
    run_jobs(app)
    [before] = scheduled_reminders().values()
    redis_connection().flushdb()
    assert scheduled_reminders() == {}
    assert reconcile_reminders() == 1
    assert list(scheduled_reminders().values()) == [before]
    assert reconcile_reminders() == 0


def test_an_invitation_sent_too_late_for_a_reminder_schedules_none(app, outbox, members):
    soon = (datetime.now(UTC) + timedelta(hours=5)).astimezone(PRAGUE).replace(tzinfo=None)
    send(make_invitation(soon.replace(microsecond=0, second=0)))
    assert scheduled_reminders() == {}
    assert reconcile_reminders() == 0


# --- the admin pages ----------------------------------------------------------------


def test_coordinator_composes_sends_changes_and_cancels_in_the_admin(app, client, accounts, outbox):
    import io
    import re

    from tests.conftest import csrf_token_of, log_in

    add_confirmed_subscribers("ostrava-psb", 2)
    log_in(client, "koordinator@ostrava.example")
    token = csrf_token_of(client, "/admin/issues/new?list=ostrava-psb")
    day = winter_thursday_10th()
    form = {
        "csrf_token": token,
        "subject": "Prosincové setkání",
        "body": BODY,
        "meeting_start": day.strftime("%Y-%m-%dT09:30"),
        "meeting_end": day.strftime("%Y-%m-%dT08:00"),
        "meeting_location": "Radnice",
    }
    refused = client.post("/admin/issues/new?list=ostrava-psb", data=form)
    assert refused.status_code == 422
    assert "Konec setkání musí být po jeho začátku." in refused.get_data(as_text=True)
    form["meeting_end"] = day.strftime("%Y-%m-%dT11:30")
    created = client.post("/admin/issues/new?list=ostrava-psb", data=form)
    assert created.status_code == 302
    issue_id = int(re.search(r"/issues/(\d+)", created.headers["Location"]).group(1))
    page = client.get(f"/admin/issues/{issue_id}").get_data(as_text=True)
    assert f"{czech_day(day)} od 9:30 do 11:30" in page

    upload = client.post(
        f"/admin/issues/{issue_id}/attachments",
        data={"csrf_token": token, "file": (io.BytesIO(b"%PDF-1.4 program"), "program.pdf")},
        content_type="multipart/form-data",
    )
    assert upload.status_code == 302
    bad = client.post(
        f"/admin/issues/{issue_id}/attachments",
        data={"csrf_token": token, "file": (io.BytesIO(b"MZ"), "virus.exe")},
        content_type="multipart/form-data",
    )
    assert bad.status_code == 422
    assert "Přiložit lze jen soubory PDF, DOCX, ODT a XLSX." in bad.get_data(as_text=True)

    sent = client.post(f"/admin/issues/{issue_id}/send", data={"csrf_token": token, "confirm": "1"})
    assert sent.status_code == 302
    run_jobs(app)
    assert len(outbox.mails) == 2
    assert len(calendars(outbox)) == 2
    assert all(
        [p.get_filename() for p in m.message.iter_attachments()] == ["program.pdf"]
        for m in outbox.mails
    )
    page = client.get(f"/admin/issues/{issue_id}").get_data(as_text=True)
    assert "Změnit termín nebo místo" in page and "Zrušit setkání" in page
    meeting_id = db.session.scalar(select(Meeting.id))

    moved = client.post(
        f"/admin/meetings/{meeting_id}/update",
        data={
            "csrf_token": token,
            "issue": issue_id,
            "meeting_start": day.strftime("%Y-%m-%dT13:00"),
            "meeting_end": day.strftime("%Y-%m-%dT15:00"),
            "meeting_location": "Radnice, sál 2",
        },
    )
    assert moved.status_code == 302
    update_id = int(re.search(r"/issues/(\d+)", moved.headers["Location"]).group(1))
    assert db.session.get(Issue, update_id).status == "draft"

    outbox.catcher.clear()
    no_confirm = client.post(
        f"/admin/meetings/{meeting_id}/cancel", data={"csrf_token": token, "issue": issue_id}
    )
    assert no_confirm.status_code == 422
    cancelled = client.post(
        f"/admin/meetings/{meeting_id}/cancel",
        data={"csrf_token": token, "issue": issue_id, "confirm": "1"},
    )
    assert cancelled.status_code == 302
    run_jobs(app)
    assert [c["METHOD"] for c in calendars(outbox)] == ["CANCEL", "CANCEL"]


def test_a_coordinator_cannot_touch_another_groups_meeting(app, client, accounts):
    from service.accounts import create_token
    from tests.conftest import csrf_token_of, log_in

    other = MailingList(slug="chomutov", name="Expertní skupina Chomutov", kind="group")
    db.session.add(other)
    db.session.commit()
    issue = sending.create_issue(other, sending.IssueInput("Setkání", BODY), None)
    meetings.attach_meeting(issue, meeting_input(winter_thursday_10th().replace(hour=9)))
    token = create_token(accounts.coordinator)
    db.session.commit()
    meeting_id = issue.meeting.id

    bearer = {"Authorization": f"Bearer {token}"}
    # The API answers 404, as for a meeting that does not exist (no existence oracle).
    assert client.post(f"/api/v1/meetings/{meeting_id}/cancel", headers=bearer).status_code == 404
    log_in(client, "koordinator@ostrava.example")
    csrf = csrf_token_of(client, "/admin/issues")
    answer = client.post(
        f"/admin/meetings/{meeting_id}/cancel", data={"csrf_token": csrf, "confirm": "1"}
    )
    assert answer.status_code == 403
    assert db.session.get(Meeting, meeting_id).cancelled_at is None
