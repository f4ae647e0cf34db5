"""A member's personal calendar feed of the group's meetings (webcal://, METHOD:PUBLISH)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import icalendar
import vobject
from sqlalchemy import select, update

from service import tokens
from service.extensions import db
from service.models import Meeting, Subscriber, Subscription
from tests.conftest import add_confirmed_subscribers, run_jobs
from tests.meetings.test_meetings import make_invitation, send, winter_thursday_10th


def feed_path(client, subscriber: Subscriber) -> str:
    """The feed's path as the members' page links it (webcal://host/path)."""
    page = client.get(
        f"/groups/ostrava-psb/member/{tokens.preferences_token(subscriber)}"
    ).get_data(as_text=True)
    [webcal] = re.findall(r'href="(webcal://[^"]+)"', page)
    return urlsplit(webcal).path


def test_the_feed_lists_the_groups_announced_meetings_until_the_member_leaves(app, client, outbox):
    add_confirmed_subscribers("ostrava-psb", 2)
    day = winter_thursday_10th()
    send(make_invitation(day.replace(hour=9, minute=30), subject="Setkání PSB v prosinci"))
    make_invitation(day.replace(hour=13), subject="Koncept, zatím neodeslaný")
    run_jobs(app)
    announced = db.session.scalar(select(Meeting).order_by(Meeting.id))
    member = db.session.scalar(select(Subscriber).filter_by(email="odberatel0@example.cz"))

    path = feed_path(client, member)
    assert re.fullmatch(r"/groups/ostrava-psb/calendar/[^/]+\.ics", path)
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == "text/calendar"
    calendar = icalendar.Calendar.from_ical(response.data)
    assert calendar["METHOD"] == "PUBLISH"
    assert calendar["X-WR-CALNAME"] == "Pracovní skupina sociálního bydlení"
    [event] = calendar.walk("VEVENT")
    assert event["UID"] == announced.uid
    assert str(event["SUMMARY"]) == "Setkání PSB v prosinci"
    parsed = vobject.readOne(response.get_data(as_text=True))
    assert (parsed.vevent.dtstart.value.hour, parsed.vevent.dtstart.value.minute) == (9, 30)

    other_group = tokens.dump("calendar", {"s": member.public_key, "l": "zpravodaj"})
    assert client.get(f"/groups/ostrava-psb/calendar/{other_group}.ics").status_code == 404
    assert client.get(path.replace(".ics", "x.ics")).status_code == 404

    db.session.execute(
        update(Subscription)
        .where(Subscription.subscriber_id == member.id)
        .values(status="unsubscribed")
    )
    db.session.commit()
    assert client.get(path).status_code == 404  # left the group: the feed is gone
