"""Recurring meetings: one series, one UID, an RRULE in the calendar, the API and the admin,
its next dates in Czech on the members' page, kept at 9:30 across the clock change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import islice

import pytest
import vobject
from sqlalchemy import select

from service import tokens
from service.accounts import create_token
from service.clock import utcnow
from service.extensions import db
from service.issues import sending
from service.meetings import recurrence
from service.meetings import rules as meetings
from service.models import Issue, Meeting, Subscriber
from tests.conftest import csrf_token_of, log_in, run_jobs
from tests.meetings.test_meetings import (
    BODY,
    calendars,
    event_of,
    group,
    meeting_input,
    members,  # noqa: F401  (a fixture)
    send,
)


def second_tuesday_ahead() -> datetime:
    """The second Tuesday of a month at least a month ahead (local date, midnight)."""
    day = utcnow().replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=30)
    while not (day.weekday() == 1 and 8 <= day.day <= 14):
        day += timedelta(days=1)
    return day


@pytest.mark.parametrize(
    ("choice", "rule", "rhythm"),
    [
        ("monthly-weekday", "FREQ=MONTHLY;BYDAY=2TU", "každé druhé úterý v měsíci v 9:30"),
        ("weekly", "FREQ=WEEKLY;BYDAY=TU", "každé úterý v 9:30"),
        ("biweekly", "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU", "jednou za dva týdny v úterý v 9:30"),
    ],
)
def test_the_chooser_gives_the_rule_and_its_czech_rhythm(app, choice, rule, rhythm):
    start = second_tuesday_ahead().replace(hour=9, minute=30)
    fields = meeting_input(start, repeat=choice)
    assert fields.rrule == rule
    assert recurrence.describe(rule, fields.start, "Europe/Prague") == rhythm


def test_a_series_is_one_invitation_with_an_rrule_read_alike_by_both_parsers(app, outbox, members):  # noqa: F811
    start = second_tuesday_ahead().replace(hour=9, minute=30)
    fields, _ = sending.validate_fields("Pravidelné setkání PSB", BODY)
    issue = sending.create_issue(group(), fields, None)
    meetings.attach_meeting(issue, meeting_input(start, rrule="FREQ=MONTHLY;BYDAY=2TU"))
    db.session.commit()
    send(issue)
    run_jobs(app)
    cals = calendars(outbox)
    assert len({str(event_of(c)["UID"]) for c in cals}) == 1
    event = event_of(cals[0])
    assert event["RRULE"]["FREQ"] == ["MONTHLY"] and event["RRULE"]["BYDAY"] == ["2TU"]
    text = outbox.mails[0].message.get_body(("plain",)).get_content()
    assert "Opakuje se: každé druhé úterý v měsíci v 9:30" in text

    [part] = [p for p in outbox.mails[0].message.walk() if p.get_content_type() == "text/calendar"]
    series = vobject.readOne(part.get_content()).vevent
    dates = list(islice(series.getrruleset(), 8))
    assert all((d.hour, d.minute, d.weekday()) == (9, 30, 1) and 8 <= d.day <= 14 for d in dates)
    assert {d.utcoffset() for d in dates} <= {timedelta(hours=1), timedelta(hours=2)}


def test_members_see_the_next_dates_of_the_series(app, client, members):  # noqa: F811
    start = second_tuesday_ahead().replace(hour=9, minute=30)
    fields, _ = sending.validate_fields("Pravidelné setkání PSB", BODY)
    issue = sending.create_issue(group(), fields, None)
    meetings.attach_meeting(issue, meeting_input(start, repeat="monthly-weekday"))
    db.session.commit()
    send(issue)  # a draft's meeting is nobody's business yet
    member = db.session.scalar(select(Subscriber).order_by(Subscriber.id))
    page = client.get(f"/groups/ostrava-psb/member/{tokens.preferences_token(member)}").get_data(
        as_text=True
    )
    assert "Skupina se schází každé druhé úterý v měsíci v 9:30." in page
    meeting = db.session.scalar(select(Meeting))
    upcoming = recurrence.occurrences(
        meeting.rrule, meeting.start, meeting.end, "Europe/Prague", after=utcnow(), count=4
    )
    assert len(upcoming) == 4 and page.count("od 9:30 do 11:30") == 4
    assert all(s.replace(tzinfo=UTC).astimezone().weekday() == 1 for s, _ in upcoming)


def test_the_api_takes_and_shows_the_rrule_and_refuses_a_bad_one(app, client, accounts):
    token = create_token(accounts.coordinator)
    db.session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    start = second_tuesday_ahead().replace(hour=9, minute=30)
    meeting = {
        "start": start.isoformat(),
        "end": (start + timedelta(hours=2)).isoformat(),
        "location": "Magistrát",
    }
    body = {"subject": "Pravidelné setkání", "body": BODY}
    made = client.post(
        "/api/v1/lists/ostrava-psb/issues",
        json={**body, "meeting": {**meeting, "rrule": "FREQ=MONTHLY;BYDAY=2TU"}},
        headers=headers,
    )
    assert made.status_code == 201, made.get_json()
    shown = made.get_json()["meeting"]
    assert shown["rrule"] == "FREQ=MONTHLY;BYDAY=2TU"
    assert shown["rhythm"] == "každé druhé úterý v měsíci v 9:30"
    for rule in ("FREQ=MINUTELY", "FREQ=MONTHLY;BYDAY=9XX", 5):
        refused = client.post(
            "/api/v1/lists/ostrava-psb/issues",
            json={**body, "meeting": {**meeting, "rrule": rule}},
            headers=headers,
        )
        assert refused.status_code == 422
        assert "meeting.rrule" in refused.get_json()["errors"]


def test_the_admin_chooser_makes_a_series(app, client, accounts):
    log_in(client, accounts.coordinator.email)
    token = csrf_token_of(client, "/admin/issues/new?list=ostrava-psb")
    start = second_tuesday_ahead().replace(hour=9, minute=30)
    response = client.post(
        "/admin/issues/new?list=ostrava-psb",
        data={
            "csrf_token": token,
            "list": "ostrava-psb",
            "subject": "Pravidelné setkání PSB",
            "body": BODY,
            "meeting_start": start.strftime("%Y-%m-%dT%H:%M"),
            "meeting_end": (start + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"),
            "meeting_location": "Magistrát",
            "meeting_repeat": "monthly-weekday",
        },
    )
    assert response.status_code in (200, 302), response.get_data(as_text=True)[:500]
    meeting = db.session.scalar(select(Meeting))
    assert meeting.rrule == "FREQ=MONTHLY;BYDAY=2TU"
    issue = db.session.scalar(select(Issue))
    page = client.get(f"/admin/issues/{issue.id}/edit").get_data(as_text=True)
    # The chooser shows the series' choice again (WTForms writes `selected` first).
    assert '<option selected value="monthly-weekday">' in page
