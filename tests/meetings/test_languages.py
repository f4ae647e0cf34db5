"""Meetings in Czech and English: the RSVP page in the member's language, and the
announcements (invitation's meeting box, update, cancellation, reminder, minutes, one date
of a series moved or cancelled), the calendar and the coordinators' notice in the group's
content language."""

from __future__ import annotations

import re
from datetime import UTC, timedelta

import icalendar
import pytest
from sqlalchemy import select, update

from service.clock import utcnow
from service.extensions import db
from service.i18n import in_language
from service.issues import sending
from service.meetings import recurrence
from service.meetings import rules as meetings
from service.meetings.replies import _counter_notice
from service.models import Issue, MailingList, Meeting, Subscriber
from tests.conftest import run_jobs
from tests.i18n_checks import untranslated, visible_text
from tests.meetings.test_answers import answers, invited, rsvp_link  # noqa: F401  (fixture)
from tests.meetings.test_meetings import (
    calendars,
    event_of,
    group,
    make_invitation,
    meeting_input,
    members,  # noqa: F401  (a fixture)
    send,
    winter_thursday_10th,
)
from workers.meetings import send_reminder

# Data, not interface: the group's own Czech texts around the fixed parts.
GROUP_TEXT = (
    "Pracovní skupina sociálního bydlení",
    "Setkání PSB v prosinci",
    "Magistrát města Ostravy, zasedací místnost 118",
    "Zahájení",
    "Bytový fond města",
    "Různé",
    "zveme vás na",
    "další setkání",
    "pracovní skupiny",
    "Dobrý den",
    "Čeština",  # the language switch names each language in itself
)


def in_english() -> None:
    db.session.execute(update(MailingList).filter_by(slug="ostrava-psb").values(language="en"))
    db.session.commit()


def texts(mail) -> tuple[str, str, str]:
    message = mail.message
    return (
        str(message["Subject"]),
        message.get_body(("plain",)).get_content(),
        message.get_body(("html",)).get_content(),
    )


# --- the RSVP page: the member's language -----------------------------------------


def test_the_rsvp_page_speaks_the_members_language(app, client, invited):  # noqa: F811
    czech = client.get(rsvp_link(invited["odberatel0@example.cz"], "Přijdu"))
    assert "Přijdete?" in czech.get_data(as_text=True) and '<html lang="cs">' in czech.text

    db.session.execute(update(Subscriber).values(language="en"))
    db.session.commit()
    path = rsvp_link(invited["odberatel1@example.cz"], "Možná")
    page = client.get(path).get_data(as_text=True)
    assert '<html lang="en">' in page and "Will you come?" in page
    assert 'value="mozna" checked' in page and "Save the answer" in page
    # The meeting's own Czech title is marked as Czech on the English page.
    assert '<h1 lang="cs">Setkání PSB v prosinci</h1>' in page
    assert not untranslated(visible_text(page), *GROUP_TEXT, "Nováková")

    refused = client.post(path.split("?")[0], data={"odpoved": "", "poznamka": ""})
    assert refused.status_code == 422
    assert "Please choose whether you will come." in refused.get_data(as_text=True)
    saved = client.post(path.split("?")[0], data={"odpoved": "mozna", "poznamka": "late"})
    assert "Thank you, your answer “Maybe” is saved." in saved.get_data(as_text=True)
    assert answers()["odberatel1@example.cz"] == ("TENTATIVE", "late")


# --- announcements: the group's language --------------------------------------------


def test_an_english_groups_invitation_has_its_fixed_parts_in_english(app, outbox, members):  # noqa: F811
    in_english()
    send(make_invitation(winter_thursday_10th().replace(hour=9, minute=30)))
    run_jobs(app)
    _, text, html = texts(outbox.mails[0])
    assert "MEETING\nWhen: Thursday," in text.replace("\r\n", "\n")
    assert "from 9:30\u202fAM to 11:30\u202fAM" in text or "from 9:30 AM to 11:30 AM" in text
    assert "Will you come? Answer with one click" in text and "I'll come: " in text
    assert "Add to calendar: " in text and "Unsubscribe: " in text
    assert "You receive this e-mail as a member of Pracovní skupina" in " ".join(text.split())
    assert '<html lang="en">' in html and ">Maybe</a>" in html
    # The group's Czech text stays; nothing else is Czech.
    assert not untranslated(" ".join(text.split()), *GROUP_TEXT)
    description = str(event_of(calendars(outbox)[0])["DESCRIPTION"])
    assert description.startswith("Agenda:\n") and "Join online: https://" in description


def test_a_czech_groups_invitation_stays_czech_for_an_english_member(app, outbox, members):  # noqa: F811
    db.session.execute(update(Subscriber).values(language="en"))
    db.session.commit()
    send(make_invitation(winter_thursday_10th().replace(hour=9, minute=30)))
    run_jobs(app)
    _, text, html = texts(outbox.mails[0])
    assert "SETKÁNÍ" in text and "Přidat do kalendáře: " in text and '<html lang="cs">' in html
    assert "Will you come" not in text


def test_an_english_groups_update_cancellation_and_reminder(app, outbox, members):  # noqa: F811
    in_english()
    day = winter_thursday_10th()
    issue = make_invitation(day.replace(hour=9, minute=30), subject="December meeting")
    send(issue)
    run_jobs(app)
    outbox.catcher.clear()
    meeting = db.session.scalar(select(Meeting))

    moved = meetings.update_meeting(meeting, meeting_input(day.replace(hour=10)), None)
    db.session.commit()
    assert (
        moved.subject == "Time changed: December meeting, now from 10:00\u202fAM to 12:00\u202fPM"
    )
    assert moved.body.startswith("Hello,\n\nwe are changing the **time** of the meeting of ")

    later = meetings.update_meeting(
        meeting, meeting_input(day.replace(hour=10) + timedelta(days=7)), None
    )
    db.session.commit()
    assert later.subject.startswith("Date changed: December meeting, now on Thursday, ")
    assert meeting.title == "December meeting"  # English titles are not read for dates

    cancel = meetings.cancel_meeting(meeting, None)
    db.session.commit()
    assert cancel.subject.startswith("Cancelled: December meeting on Thursday, ")
    assert "is **cancelled**. It will disappear from your calendar" in cancel.body
    run_jobs(app)
    _, text, _ = texts(outbox.mails[0])
    assert "CANCELLED MEETING" in text and "Add to calendar" not in text


def test_an_english_groups_reminder_and_minutes(app, outbox, members):  # noqa: F811
    in_english()
    start = utcnow().replace(microsecond=0) + timedelta(hours=20)
    issue = make_invitation(start.replace(tzinfo=None) + timedelta(hours=1), "Team meeting")
    send(issue)
    run_jobs(app)
    meeting = db.session.scalar(select(Meeting))
    start_timestamp = int(meeting.start.replace(tzinfo=UTC).timestamp())
    assert send_reminder(meeting.id, start_timestamp) == "sent"
    reminder = db.session.scalar(select(Issue).where(Issue.subject.startswith("Reminder: ")))
    assert reminder.subject == "Reminder: Team meeting"
    assert reminder.body.startswith("Hello,\n\na reminder of the coming meeting of Pracovní")

    db.session.execute(
        update(Meeting).values(
            start=utcnow() - timedelta(hours=2), end=utcnow() - timedelta(hours=1)
        )
    )
    db.session.commit()
    minutes = meetings.start_minutes(db.session.scalar(select(Meeting)), None)
    assert minutes.subject == "Minutes: Team meeting"
    assert "## Minutes" in minutes.body and "## Tasks" in minutes.body


@pytest.mark.parametrize(
    ("rule", "czech", "english"),
    [
        ("FREQ=WEEKLY", "každý čtvrtek v 9:30", "every Thursday at 9:30\u202fAM"),
        ("FREQ=WEEKLY;INTERVAL=2", "jednou za dva týdny ve čtvrtek v 9:30", "every other Thursday"),
        (
            "FREQ=MONTHLY;BYDAY=2TH",
            "každý druhý čtvrtek v měsíci v 9:30",
            "on the second Thursday of every month at 9:30\u202fAM",
        ),
        ("FREQ=MONTHLY;BYMONTHDAY=10", "každý měsíc 10. den v 9:30", "on day 10 of every month"),
        ("FREQ=YEARLY", "podle pravidla FREQ=YEARLY", "by the rule FREQ=YEARLY"),
    ],
)
def test_a_rhythm_in_both_languages(app, rule, czech, english):
    start = winter_thursday_10th().replace(hour=8, minute=30)  # 9:30 in Prague (CET)
    with app.test_request_context(), in_language("cs"):
        assert recurrence.describe(rule, start, "Europe/Prague") == czech
    with app.test_request_context(), in_language("en"):
        assert recurrence.describe(rule, start, "Europe/Prague").startswith(english)


def test_the_counter_notice_follows_the_groups_language(app, outbox, members):  # noqa: F811
    send(make_invitation(winter_thursday_10th().replace(hour=9, minute=30)))
    run_jobs(app)
    meeting = db.session.scalar(select(Meeting))
    member = db.session.scalar(select(Subscriber).order_by(Subscriber.id))
    with in_language("cs"):
        subject, text, _ = _counter_notice(meeting, member, icalendar.Event())
    assert subject == "Návrh jiného termínu: Setkání PSB v prosinci"
    assert "jiný termín setkání Pracovní skupiny sociálního bydlení" in " ".join(text.split())
    with in_language("en"):
        subject, text, _ = _counter_notice(meeting, member, icalendar.Event())
    assert subject == "Another time proposed: Setkání PSB v prosinci"
    assert "proposes another time for the meeting of Pracovní skupina" in " ".join(text.split())
    assert group().language == "cs"


# --- one date of a series: the group's language --------------------------------------

# The date moved alone, by language: (subject's start, its new day, the body's lines).
DATE_CHANGE = {
    "cs": (
        "Změna termínu: Pravidelné setkání ",
        "nově ve středu ",
        "měníme **termín** setkání Pracovní skupiny sociálního bydlení v úterý ",
        "Ostatní termíny pravidelných setkání se nemění.",
    ),
    "en": (
        "Date changed: Regular meeting ",
        ", now on Wednesday, ",
        "we are changing the **date** of the meeting of Pracovní skupina sociálního bydlení "
        "on Tuesday, ",
        "The other dates of the regular meetings stay as they are.",
    ),
}


@pytest.mark.parametrize("language", ["cs", "en"])
def test_a_single_dates_change_and_cancellation_in_the_groups_language(
    app,
    client,
    outbox,
    members,  # noqa: F811
    language,
):
    from service.meetings import occurrences, series
    from tests.meetings.test_occurrences import second_tuesday

    if language == "en":
        in_english()
    title = "Pravidelné setkání PSB" if language == "cs" else "Regular meeting"
    fields, errors = sending.validate_fields(title, "…")
    assert not errors
    issue = sending.create_issue(group(), fields, None)
    start = second_tuesday().replace(hour=9, minute=30)
    meetings.attach_meeting(issue, meeting_input(start, rrule="FREQ=MONTHLY;BYDAY=2TU"))
    db.session.commit()
    send(issue)
    run_jobs(app)
    outbox.catcher.clear()
    meeting = the_meeting()
    [_, second, third, fourth] = occurrences.upcoming(meeting, after=utcnow(), count=4)
    moved_to = second.start + timedelta(days=1)  # Wednesday, the same time
    prague = recurrence.local_time(moved_to, "Europe/Prague").replace(tzinfo=None)

    update_issue = series.update_occurrence(
        meeting, second.recurrence_id, meeting_input(prague), None
    )
    db.session.commit()
    subject_start, new_day, opening, others = DATE_CHANGE[language]
    assert update_issue.subject.startswith(subject_start) and new_day in update_issue.subject
    body = " ".join(update_issue.body.split())
    assert opening in body and others in body
    send(update_issue)
    run_jobs(app)
    _, text, html = texts(outbox.mails[0])
    flat = " ".join(text.split())
    assert others in flat and f'<html lang="{language}">' in html
    if language == "en":
        assert "When: Wednesday," in flat and "Will you come?" in flat
        assert not untranslated(flat, *GROUP_TEXT)
        # The date's RSVP page, for a member reading English: about that date only.
        db.session.execute(update(Subscriber).values(language="en"))
        db.session.commit()
        link = re.search(r"https?://[^/\s]+(/rsvp/\S+)", flat)
        assert link is not None
        page = client.get(link[1]).get_data(as_text=True)
        assert "The answer is for this date of the regular meeting only." in page
        assert "Wednesday, " in page
        assert not untranslated(visible_text(page), *GROUP_TEXT, "Nováková")
    else:
        assert "Kdy: středa " in flat and "Přijdete?" in flat

    outbox.catcher.clear()
    cancelled = series.cancel_occurrence(the_meeting(), third.recurrence_id, None)
    db.session.commit()
    ending = series.cancel_rest(the_meeting(), fourth.recurrence_id, None)
    db.session.commit()
    if language == "en":
        assert cancelled.subject.startswith("Cancelled: Regular meeting on Tuesday, ")
        assert "The other dates of the regular meetings stand." in " ".join(cancelled.body.split())
        assert ending.subject.startswith("Cancelled: Regular meeting from ")
        assert "are **cancelled** from " in ending.body
        assert not untranslated(cancelled.body + ending.body, *GROUP_TEXT)
    else:
        assert cancelled.subject.startswith("Zrušeno: Pravidelné setkání PSB v úterý ")
        assert "Ostatní termíny pravidelných setkání platí." in " ".join(cancelled.body.split())
        assert ending.subject.startswith("Zrušeno: Pravidelné setkání PSB od ")
        assert "pravidelná setkání Pracovní skupiny sociálního bydlení se od " in ending.body


def the_meeting() -> Meeting:
    db.session.expire_all()
    return db.session.scalar(select(Meeting))
