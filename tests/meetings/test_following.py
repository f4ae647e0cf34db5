"""A date of a recurring meeting and all after it moved: the series splits, as calendar apps
do for "this and following events".

The series so far ends before the date (UNTIL, SEQUENCE + 1, a REQUEST) and a
new series with its own UID starts at the date's new time with the same
rhythm. Real parts: both mails go through the delivery engine to the SMTP
sink, each calendar is read by `icalendar` (its rule expanded by dateutil) and
by `vobject`, and both must give the same local times in winter and summer.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from itertools import islice

import icalendar
import pytest
import vobject
from dateutil.rrule import rrulestr
from sqlalchemy import select

from service.clock import utcnow
from service.extensions import db
from service.issues import sending
from service.meetings import occurrences, recurrence, reminders, rsvp, series
from service.meetings import rules as meetings
from service.models import Issue, MailingList, Meeting, MeetingOccurrence, PartStat, Subscriber
from tests.conftest import run_jobs
from tests.meetings.test_meetings import (
    BODY,
    group,
    meeting_input,
    members,  # noqa: F401  (a fixture)
    scheduled_reminders,
    send,
)
from tests.meetings.test_occurrences import (
    PRAGUE,
    calendar_text,
    local,
    second_tuesday,
    series_invitation,
)

ORDINALS = {2: "druhý", 3: "třetí"}
MONTHS = ("ledna", "února", "března", "dubna", "května", "června", "července", "srpna",
          "září", "října", "listopadu", "prosince")  # fmt: skip


def the_meetings() -> tuple[Meeting, Meeting]:
    """(the series so far, the new series)."""
    db.session.expire_all()
    old, new = db.session.scalars(select(Meeting).order_by(Meeting.id)).all()
    return old, new


def member(number: int) -> Subscriber:
    return db.session.scalar(select(Subscriber).filter_by(email=f"odberatel{number}@example.cz"))


def mails_to(outbox, address: str) -> tuple:
    """(the end of the series so far, the new series' invitation) that `address` got."""
    mails = [m for m in outbox.mails if m.rcpt_tos == [address]]
    assert len(mails) == 2
    invitation = next(m for m in mails if the_calendar(m).walk("VEVENT")[0]["SEQUENCE"] == 0)
    return next(m for m in mails if m is not invitation), invitation


def the_calendar(mail) -> icalendar.Calendar:
    return icalendar.Calendar.from_ical(calendar_text(mail))


def naive_local(moment: datetime) -> datetime:
    return local(moment).replace(tzinfo=None)


def icalendar_dates(event: icalendar.Event, count: int) -> list[datetime]:
    """The event's first `count` starts: icalendar's DTSTART and RRULE, expanded by dateutil."""
    rule = event["RRULE"].to_ical().decode()
    return list(rrulestr(rule, dtstart=event.decoded("DTSTART")))[:count]


@pytest.mark.parametrize("summer", [False, True], ids=["winter", "summer"])
def test_moving_a_date_and_all_after_it_splits_the_series_read_alike_by_both_parsers(
    app,
    outbox,
    members,  # noqa: F811
    summer,
):
    meeting = series_invitation(second_tuesday(summer=summer).replace(hour=9, minute=30))
    run_jobs(app)
    outbox.catcher.clear()
    [first, second] = occurrences.upcoming(meeting, after=utcnow(), count=2)
    assert local(second.start).dst() == (timedelta(hours=1) if summer else timedelta(0))
    rsvp.answer_from_page(meeting, member(0), PartStat.ACCEPTED, "Přijde kolegyně z OSPOD.")
    rsvp.answer_from_page(meeting, member(1), PartStat.DECLINED, "dovolená", second)
    db.session.commit()

    # From the second date on: Thursdays two days later, at 10:00 instead of 9:30.
    moved_to = naive_local(second.start) + timedelta(days=2, minutes=30)
    split = series.move_following(meeting, second.recurrence_id, meeting_input(moved_to), None)
    db.session.commit()
    run_jobs(app)

    old, new = the_meetings()
    assert "UNTIL=" in old.rrule and old.sequence == 1
    assert new.uid != old.uid and new.sequence == 0
    # The rhythm follows the new day: the second Tuesday's Thursday is the 2nd or 3rd one.
    week = (moved_to.day - 1) // 7 + 1
    assert new.rrule == f"FREQ=MONTHLY;BYDAY={week}TH" and new.title == old.title
    assert occurrences.upcoming(old, after=first.start, count=3) == []
    assert [naive_local(o.start) for o in occurrences.upcoming(new, after=utcnow(), count=1)] == [
        moved_to
    ]
    day = local(second.start)
    since = f"Změna termínu od {day.day}. {MONTHS[day.month - 1]} {day.year}: "
    assert split.ended.subject == since + "Pravidelné setkání PSB v dosavadním termínu končí"
    assert split.invitation.subject == (
        since + f"Pravidelné setkání PSB nově každý {ORDINALS[week]} čtvrtek v měsíci v 10:00"
    )
    assert (split.ended.meeting_id, split.invitation.meeting_id) == (old.id, new.id)

    # Each member gets both mails: the end of the series so far, and the new series.
    ended_mail, invitation_mail = mails_to(outbox, "odberatel0@example.cz")
    assert len(outbox.mails) == 6
    assert ended_mail.message["Subject"] == split.ended.subject
    ended = the_calendar(ended_mail)
    [event] = ended.walk("VEVENT")
    assert ended["METHOD"] == "REQUEST" and str(event["UID"]) == old.uid
    assert event["SEQUENCE"] == 1 and "UNTIL" in event["RRULE"]
    assert list(vobject.readOne(calendar_text(ended_mail)).vevent.getrruleset()) == [
        local(first.start)
    ]
    # The series so far says when it ends.
    ended_text = " ".join(ended_mail.message.get_body(("plain",)).get_content().split())
    last = local(first.start)
    assert (
        "Opakuje se: každé druhé úterý v měsíci v 9:30, "
        f"naposledy {last.day}. {MONTHS[last.month - 1]} {last.year}"
    ) in ended_text
    invitation = the_calendar(invitation_mail)
    [event] = invitation.walk("VEVENT")
    assert invitation["METHOD"] == "REQUEST" and str(event["UID"]) == new.uid
    assert event["SEQUENCE"] == 0
    assert str(event["ATTENDEE"]) == "mailto:odberatel0@example.cz"
    assert event.decoded("DTSTART") == moved_to.replace(tzinfo=PRAGUE)

    # Eight monthly dates span both times of year; both parsers say 10:00 local for each.
    by_icalendar = icalendar_dates(event, 8)
    by_vobject = list(
        islice(vobject.readOne(calendar_text(invitation_mail)).vevent.getrruleset(), 8)
    )
    assert [d.astimezone(UTC) for d in by_icalendar] == [d.astimezone(UTC) for d in by_vobject]
    assert all((d.astimezone(PRAGUE).hour, d.astimezone(PRAGUE).minute) == (10, 0)
               for d in by_vobject)  # fmt: skip
    assert {d.astimezone(PRAGUE).utcoffset() for d in by_vobject} == {
        timedelta(hours=1),
        timedelta(hours=2),
    }
    assert all(d.weekday() == 3 and (d.day - 1) // 7 + 1 == week for d in by_vobject)

    text = " ".join(invitation_mail.message.get_body(("plain",)).get_content().split())
    assert f"nově každý {ORDINALS[week]} čtvrtek v měsíci v 10:00" in text
    assert "Odpovědi, které jste už dali, platí i pro nové termíny" in text
    assert f"/rsvp/{new.id}." in text  # the mail's answer links are the new series'

    # The answer to the series carries over; the answer to the moved Tuesday alone lapses.
    carried = rsvp.response_of(new, member(0))
    assert (carried.partstat, carried.note) == ("ACCEPTED", "Přijde kolegyně z OSPOD.")
    assert rsvp.response_of(new, member(1)) is None
    # The new series is reminded from its first date on.
    first_new = occurrences.upcoming(new, after=utcnow(), count=1)[0]
    assert reminders.reminder_job_id(new.id, first_new.start, first_new.recurrence_id) in (
        scheduled_reminders()
    )


def test_dates_kept_apart_and_answers_per_date_follow_when_the_new_series_meets_that_day(
    app,
    client,
    outbox,
    members,  # noqa: F811
):
    meeting = series_invitation(second_tuesday().replace(hour=9, minute=30))
    run_jobs(app)
    [_, second, third, fourth, fifth, sixth] = occurrences.upcoming(
        meeting, after=utcnow(), count=6
    )
    place_only = meeting_input(naive_local(third.start), location="Charita, Ostrava")
    series.update_occurrence(meeting, third.recurrence_id, place_only, None)
    series.cancel_occurrence(meeting, fourth.recurrence_id, None)
    elsewhere = naive_local(fifth.start).replace(hour=14, minute=0) + timedelta(days=1)
    series.update_occurrence(meeting, fifth.recurrence_id, meeting_input(elsewhere), None)
    rsvp.answer_from_page(
        meeting, member(1), PartStat.DECLINED, "", occurrences.find(meeting, third.recurrence_id)
    )
    db.session.commit()

    # The same Tuesdays an hour later, from the second date on.
    later = naive_local(second.start) + timedelta(hours=1)
    series.move_following(meeting, second.recurrence_id, meeting_input(later), None)
    db.session.commit()
    old, new = the_meetings()
    assert new.rrule == "FREQ=MONTHLY;BYDAY=2TU"
    assert all(row.recurrence_id < second.recurrence_id for row in occurrences.rows(old).values())

    dates = occurrences.upcoming(new, after=utcnow(), count=4)
    assert [(naive_local(d.start), d.location) for d in dates] == [
        (later, "Magistrát města Ostravy, zasedací místnost 118"),
        (naive_local(third.start) + timedelta(hours=1), "Charita, Ostrava"),  # its place kept
        (elsewhere, "Magistrát města Ostravy, zasedací místnost 118"),  # its own time kept
        (
            naive_local(sixth.start) + timedelta(hours=1),
            "Magistrát města Ostravy, zasedací místnost 118",
        ),
    ]  # fmt: skip  (the fourth stays cancelled)
    third_now = dates[1].recurrence_id
    assert rsvp.response_of(new, member(1), third_now).partstat == "DECLINED"

    # The calendars say the same: nothing of the old series after its end, and the new
    # series with its exceptions under its own UID.
    whole_old = icalendar.Calendar.from_ical(client.get(f"/meetings/{old.uid}.ics").data)
    assert [("RECURRENCE-ID" in e, "EXDATE" in e) for e in whole_old.walk("VEVENT")] == [
        (False, False)
    ]
    whole_new = client.get(f"/meetings/{new.uid}.ics").data.decode()
    events = icalendar.Calendar.from_ical(whole_new).walk("VEVENT")
    assert [e.decoded("RECURRENCE-ID") for e in events if "RECURRENCE-ID" in e] == [
        local(third_now),
        local(fifth.recurrence_id) + timedelta(hours=1),
    ]
    master = next(
        v for v in vobject.readOne(whole_new).vevent_list if not hasattr(v, "recurrence_id")
    )
    rule_dates = list(islice(master.getrruleset(), 4))
    assert local(fourth.start) + timedelta(hours=1) not in rule_dates  # EXDATE
    assert rule_dates[0] == later.replace(tzinfo=PRAGUE)


def test_the_date_moved_with_all_after_it_drops_its_own_earlier_move(
    app,
    client,
    outbox,
    members,  # noqa: F811
):
    """Before: the date moved alone earlier (10:30, "Jinde") kept that time and place in
    the new series, while the mail said it first met at the time typed (12:30)."""
    meeting = series_invitation(second_tuesday().replace(hour=9, minute=30))
    run_jobs(app)
    [_, second] = occurrences.upcoming(meeting, after=utcnow(), count=2)
    alone = naive_local(second.start).replace(hour=10, minute=30)
    series.update_occurrence(
        meeting, second.recurrence_id, meeting_input(alone, location="Jinde"), None
    )
    db.session.commit()

    typed = naive_local(second.start).replace(hour=12, minute=30)
    split = series.move_following(meeting, second.recurrence_id, meeting_input(typed), None)
    db.session.commit()
    _, new = the_meetings()
    assert "poprvé" in split.invitation.body and "12:30" in split.invitation.body
    [first_new] = occurrences.upcoming(new, after=utcnow(), count=1)
    assert (naive_local(first_new.start), first_new.location) == (
        typed,
        "Magistrát města Ostravy, zasedací místnost 118",
    )
    assert db.session.scalars(select(MeetingOccurrence).filter_by(meeting_id=new.id)).all() == []
    whole = icalendar.Calendar.from_ical(client.get(f"/meetings/{new.uid}.ics").data)
    [event] = whole.walk("VEVENT")
    assert "RECURRENCE-ID" not in event
    assert event.decoded("DTSTART") == typed.replace(tzinfo=PRAGUE)


def series_with(rule: str, start_local: datetime) -> Meeting:
    fields, errors = sending.validate_fields("Setkání PSB", BODY)
    assert not errors
    issue = sending.create_issue(group(), fields, None)
    meetings.attach_meeting(issue, meeting_input(start_local, rrule=rule))
    db.session.commit()
    send(issue)
    return issue.meeting


def next_weekday(weekday: int, hour: int = 9) -> datetime:
    day = utcnow().replace(hour=hour, minute=0, second=0, microsecond=0) + timedelta(days=3)
    while day.weekday() != weekday:
        day += timedelta(days=1)
    return day


def test_what_cannot_be_moved_from_a_date_on_is_refused(app, outbox, members):  # noqa: F811
    meeting = series_with("FREQ=WEEKLY;BYDAY=TU,TH", next_weekday(1))
    [first, second, third] = occurrences.upcoming(meeting, after=utcnow(), count=3)
    wednesday = naive_local(third.start) + timedelta(days=1)
    with pytest.raises(meetings.MeetingError, match="Od prvního termínu"):
        series.move_following(meeting, first.recurrence_id, meeting_input(wednesday), None)
    with pytest.raises(meetings.MeetingError, match="po předchozím termínu"):
        series.move_following(
            meeting, third.recurrence_id, meeting_input(naive_local(second.start)), None
        )
    # A rhythm of two days a week is no chooser's: it stays, and a Wednesday is none of it.
    with pytest.raises(meetings.MeetingError, match="neodpovídá pravidlu opakování"):
        series.move_following(meeting, third.recurrence_id, meeting_input(wednesday), None)
    db.session.rollback()
    assert db.session.scalar(select(Meeting.rrule)) == "FREQ=WEEKLY;BYDAY=TU,TH"
    assert db.session.scalar(select(Issue).where(Issue.subject.startswith("Změna"))) is None

    # With a rule for the new dates, it moves.
    given = meeting_input(wednesday, rrule="FREQ=WEEKLY;BYDAY=WE,FR")
    series.move_following(meeting, third.recurrence_id, given, None)
    db.session.commit()
    _, new = the_meetings()
    assert new.rrule == "FREQ=WEEKLY;BYDAY=WE,FR"


def test_the_new_rule_keeps_until_and_counts_only_the_dates_left(app):
    zone = "Europe/Prague"
    start = datetime(2027, 1, 12, 8, 30)  # Tuesday 9:30 in Prague
    third = datetime(2027, 1, 26, 8, 30)
    thursday = datetime(2027, 1, 28, 9, 0)
    assert recurrence.continued("FREQ=WEEKLY;BYDAY=TU;COUNT=6", start, zone, third, thursday) == (
        "FREQ=WEEKLY;BYDAY=TH;COUNT=4"
    )
    until = "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU;UNTIL=20270630T215959Z"
    assert recurrence.continued(until, start, zone, third, thursday) == (
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=TH;UNTIL=20270630T215959Z"
    )
    assert recurrence.continued("FREQ=MONTHLY;BYMONTHDAY=12", start, zone, third, thursday) == (
        "FREQ=MONTHLY;BYMONTHDAY=28"
    )
    assert recurrence.continued("FREQ=DAILY", start, zone, third, thursday) == "FREQ=DAILY"
    assert recurrence.previous("FREQ=WEEKLY", start, zone, third) == datetime(2027, 1, 19, 8, 30)
    assert recurrence.previous("FREQ=WEEKLY", start, zone, start) is None


def test_a_date_moved_alone_after_the_rest_was_cancelled_is_gone_too(app, client, members):  # noqa: F811
    """Before: the moved date outlived "cancel this and all later" in the pages, the
    calendar and the reminders."""
    meeting = series_invitation(second_tuesday().replace(hour=9, minute=30))
    [_, _, third, fourth] = occurrences.upcoming(meeting, after=utcnow(), count=4)
    moved = naive_local(fourth.start) + timedelta(hours=2)
    series.update_occurrence(meeting, fourth.recurrence_id, meeting_input(moved), None)
    db.session.commit()
    series.cancel_rest(meeting, third.recurrence_id, None)
    db.session.commit()
    db.session.expire_all()
    assert occurrences.upcoming(meeting, after=third.start - timedelta(hours=1), count=5) == []
    assert occurrences.find(meeting, fourth.recurrence_id) is None
    assert db.session.scalar(select(MeetingOccurrence)) is None
    whole = icalendar.Calendar.from_ical(client.get(f"/meetings/{meeting.uid}.ics").data)
    assert len(whole.walk("VEVENT")) == 1


def test_the_api_and_the_admin_move_a_date_and_all_after_it(
    app,
    client,
    accounts,
    outbox,
    members,  # noqa: F811
):
    from service.accounts import create_token
    from tests.api import Api
    from tests.conftest import csrf_token_of, log_in

    meeting = series_invitation(second_tuesday().replace(hour=9, minute=30))
    run_jobs(app)
    [first, second, _, fourth] = occurrences.upcoming(meeting, after=utcnow(), count=4)
    api = Api(client, create_token(accounts.coordinator))
    db.session.commit()
    path = f"/api/v1/meetings/{meeting.id}/dates/"
    later = naive_local(fourth.start) + timedelta(hours=1)
    body = {"start": later.isoformat(), "end": (later + timedelta(hours=2)).isoformat()}

    assert api.post(path + f"{first.key}/move-following", body).status_code == 409
    wrong = api.post(path + f"{fourth.key}/move-following", {**body, "end": body["start"]})
    assert wrong.status_code == 422 and "end" in wrong.get_json()["errors"]
    english = api.post(
        path + f"{first.key}/move-following", body, headers={"Accept-Language": "en"}
    )
    assert english.get_json()["error"] == "From the first date on, change the whole series instead."
    moved = api.post(path + f"{fourth.recurrence_id.isoformat()}Z/move-following", body)
    assert moved.status_code == 202, moved.get_json()
    answer = moved.get_json()
    assert answer["ended"]["meeting"]["id"] == meeting.id
    assert "UNTIL=" in answer["ended"]["meeting"]["rrule"]
    new = answer["invitation"]["meeting"]
    assert new["id"] != meeting.id and new["rrule"] == "FREQ=MONTHLY;BYDAY=2TU"
    # What the body left out stays as the series has it.
    assert new["location"] == "Magistrát města Ostravy, zasedací místnost 118"
    assert new["online_url"] == "https://meet.example.cz/psb"
    assert moved.headers["Location"].endswith(f"/api/v1/issues/{answer['invitation']['id']}")
    assert api.post(path + f"{fourth.key}/move-following", body).status_code == 409

    # The admin: a date of the series on the invitation's page, moved with all after it.
    log_in(client, accounts.coordinator.email)
    invitation = db.session.scalar(select(Issue).order_by(Issue.id))
    page = client.get(f"/admin/issues/{invitation.id}").get_data(as_text=True)
    assert "Přesunout tento a všechny další termíny" in page
    csrf = csrf_token_of(client, f"/admin/issues/{invitation.id}")
    form = {
        "csrf_token": csrf,
        "issue": invitation.id,
        "akce": "presunout-dalsi",
        "meeting_start": (naive_local(second.start) + timedelta(hours=1)).isoformat(),
        "meeting_end": (naive_local(second.start) + timedelta(hours=3)).isoformat(),
        "meeting_location": "Charita, Ostrava",
    }
    unconfirmed = client.post(f"/admin/meetings/{meeting.id}/dates/{second.key}", data=form)
    assert unconfirmed.status_code == 302
    assert "zaškrtnutím" in client.get(unconfirmed.headers["Location"]).get_data(as_text=True)
    assert db.session.scalar(select(Meeting).order_by(Meeting.id.desc())).id == new["id"]
    done = client.post(
        f"/admin/meetings/{meeting.id}/dates/{second.key}", data={**form, "confirm": "1"}
    )
    assert done.status_code == 302
    newest = db.session.scalar(select(Meeting).order_by(Meeting.id.desc()))
    assert newest.location == "Charita, Ostrava" and newest.id != new["id"]
    shown = client.get(done.headers["Location"]).get_data(as_text=True)
    assert "Termíny jsou přesunuty." in shown
    db.session.expire_all()
    assert (
        occurrences.upcoming(db.session.get(Meeting, meeting.id), after=first.start, count=1) == []
    )


def test_the_split_mails_speak_the_groups_language(app, outbox, members):  # noqa: F811
    db.session.scalar(select(MailingList).filter_by(slug="ostrava-psb")).language = "en"
    db.session.commit()
    meeting = series_invitation(second_tuesday().replace(hour=9, minute=30))
    run_jobs(app)
    outbox.catcher.clear()
    [_, second] = occurrences.upcoming(meeting, after=utcnow(), count=2)
    moved_to = naive_local(second.start) + timedelta(days=2, minutes=30)
    split = series.move_following(meeting, second.recurrence_id, meeting_input(moved_to), None)
    db.session.commit()
    run_jobs(app)
    week = {2: "second", 3: "third"}[(moved_to.day - 1) // 7 + 1]
    day = local(second.start)
    since = f"New schedule from {day:%B} {day.day}, {day.year}: "
    assert split.ended.subject == since + "the current dates of Pravidelné setkání PSB end"
    assert split.invitation.subject == (
        since + f"Pravidelné setkání PSB now on the {week} Thursday of every month at 10:00\u202fAM"
    )
    ended_mail, invitation_mail = mails_to(outbox, "odberatel0@example.cz")
    text = " ".join(invitation_mail.message.get_body(("plain",)).get_content().split())
    assert "the regular meetings of Pracovní skupina sociálního bydlení move from" in text
    assert "The answers you have given hold for the new dates too" in text
    ended_text = " ".join(ended_mail.message.get_body(("plain",)).get_content().split())
    assert "The invitation to the new dates comes in a separate e-mail." in ended_text


def related_to(text: str) -> list[tuple[str, str]]:
    """Each VEVENT's RELATED-TO as (RELTYPE, UID), read by icalendar and checked by vobject."""
    by_icalendar = []
    for event in icalendar.Calendar.from_ical(text).walk("VEVENT"):
        links = event.get("RELATED-TO", [])
        for link in links if isinstance(links, list) else [links]:
            by_icalendar.append((link.params["RELTYPE"], str(link)))
    by_vobject = [
        (line.params["RELTYPE"][0], line.value)
        for event in vobject.readOne(text).vevent_list
        for line in event.contents.get("related-to", [])
    ]
    assert by_icalendar == by_vobject
    return by_icalendar


def test_the_split_series_name_each_other_in_every_calendar(app, client, outbox, members):  # noqa: F811
    """RFC 9253 RELATED-TO: the series so far names its continuation NEXT, the continuation
    names the first series FIRST; in both mails, the .ics downloads and the members' feed.
    Split again, the middle series carries both and the last names the first one."""
    meeting = series_invitation(second_tuesday().replace(hour=9, minute=30))
    run_jobs(app)
    outbox.catcher.clear()
    [_, second, third] = occurrences.upcoming(meeting, after=utcnow(), count=3)
    series.move_following(
        meeting, second.recurrence_id, meeting_input(naive_local(second.start)), None
    )
    db.session.commit()
    run_jobs(app)
    old, new = the_meetings()

    ended_mail, invitation_mail = mails_to(outbox, "odberatel0@example.cz")
    assert related_to(calendar_text(ended_mail)) == [("NEXT", new.uid)]
    assert related_to(calendar_text(invitation_mail)) == [("FIRST", old.uid)]
    for one, links in ((old, [("NEXT", new.uid)]), (new, [("FIRST", old.uid)])):
        download = client.get(f"/meetings/{one.uid}.ics")
        assert related_to(download.get_data(as_text=True)) == links
    # The members' feed carries both series, each with its link.
    from tests.groups.test_calendar_feed import feed_path

    feed = client.get(feed_path(client, member(0))).get_data(as_text=True)
    assert related_to(feed) == [("NEXT", new.uid), ("FIRST", old.uid)]
    # The raw lines, as a calendar app reads them.
    assert f"RELATED-TO;RELTYPE=NEXT:{new.uid}" in calendar_text(ended_mail).replace("\r\n ", "")

    # Split the new series again: a line of three.
    moved = occurrences.find(new, new.start + (third.recurrence_id - second.recurrence_id))
    series.move_following(new, moved.recurrence_id, meeting_input(naive_local(moved.start)), None)
    db.session.commit()
    db.session.expire_all()
    last = db.session.scalar(select(Meeting).order_by(Meeting.id.desc()))
    middle = client.get(f"/meetings/{new.uid}.ics").get_data(as_text=True)
    assert related_to(middle) == [("FIRST", old.uid), ("NEXT", last.uid)]
    assert related_to(client.get(f"/meetings/{last.uid}.ics").get_data(as_text=True)) == [
        ("FIRST", old.uid)
    ]


@pytest.mark.parametrize(
    ("language", "previous", "following"),
    [("cs", "Navazuje na", "Pokračuje jako"), ("en", "Follows on from", "Continues as")],
)
def test_the_admin_pages_link_the_split_series_in_both_languages(
    app,
    client,
    accounts,
    members,  # noqa: F811
    language,
    previous,
    following,
):
    from tests.conftest import log_in

    meeting = series_invitation(second_tuesday().replace(hour=9, minute=30))
    [_, second] = occurrences.upcoming(meeting, after=utcnow(), count=2)
    split = series.move_following(
        meeting, second.recurrence_id, meeting_input(naive_local(second.start)), None
    )
    db.session.commit()
    old, new = the_meetings()
    first_invitation = db.session.scalar(select(Issue.id).order_by(Issue.id))
    log_in(client, accounts.coordinator.email)
    client.get(f"/admin/?lang={language}")

    def link(path: str, label: str) -> str:
        page = " ".join(client.get(path).get_data(as_text=True).split())
        found = re.search(rf"<dt>{label}</dt> <dd [^>]*><a href=\"([^\"]+)\">", page)
        assert found, f"no {label!r} link on {path}"
        return found.group(1)

    assert link(f"/admin/issues/{split.invitation.id}", previous) == (
        f"/admin/issues/{first_invitation}"
    )
    assert link(f"/admin/issues/{first_invitation}", following) == (
        f"/admin/issues/{split.invitation.id}"
    )
    assert link(f"/admin/meetings/{new.id}/attendance", previous) == (
        f"/admin/meetings/{old.id}/attendance"
    )
    assert link(f"/admin/meetings/{old.id}/attendance", following) == (
        f"/admin/meetings/{new.id}/attendance"
    )


def test_a_meeting_not_yet_stored_continues_no_series(app):
    """The live preview's meeting has no id: `follows_id == None` would match any series."""
    stored = Meeting(
        list_id=group().id, uid="ulozene@example.cz", start=utcnow(), end=utcnow(),
        rrule="FREQ=WEEKLY",
    )  # fmt: skip
    db.session.add(stored)
    db.session.commit()
    unsaved = Meeting(list_id=group().id, uid="ukazka@example.cz", rrule="FREQ=WEEKLY")
    assert unsaved.next_series() is None and unsaved.first_series() is unsaved
