"""A member answers a meeting invitation from the mail's link, in a real Chromium.

The invitation goes through the delivery engine to the SMTP sink; the member
opens the mail's "Možná" link (as a mail scanner would first: nothing is
recorded), changes their mind to "Přijdu", leaves a note and saves. For a
recurring meeting, a date's reminder links to that date alone.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from service.clock import utcnow
from service.extensions import db
from service.meetings import occurrences
from service.models import MeetingResponse
from tests.conftest import add_confirmed_subscribers, run_jobs
from tests.meetings.test_answers import rsvp_link
from tests.meetings.test_meetings import make_invitation, send, winter_thursday_10th
from tests.meetings.test_occurrences import reminder_of, second_tuesday, series_invitation

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]
MEMBER = "odberatel1@example.cz"


def test_a_member_answers_the_invitation_in_the_browser(app, live_server, outbox, page):
    add_confirmed_subscribers("ostrava-psb", 2)
    send(make_invitation(winter_thursday_10th().replace(hour=9, minute=30)))
    run_jobs(app)
    mail = next(m for m in outbox.mails if m.rcpt_tos == ["odberatel1@example.cz"])

    page.goto(live_server.url + rsvp_link(mail, "Možná"))
    expect(page.get_by_role("heading", name="Setkání PSB v prosinci")).to_be_visible()
    expect(page.get_by_label("Možná", exact=True)).to_be_checked()
    db.session.expire_all()
    assert db.session.scalar(select(MeetingResponse)) is None  # the GET changed nothing

    page.get_by_label("Přijdu", exact=True).check()
    page.get_by_label("Poznámka pro koordinátora").fill("Přijde za nás kolegyně Nováková.")
    page.get_by_role("button", name="Uložit odpověď").click()
    expect(page.get_by_role("status")).to_contain_text("odpověď „Přijdu“ je uložena")
    expect(page.get_by_label("Přijdu", exact=True)).to_be_checked()

    db.session.expire_all()
    response = db.session.scalar(select(MeetingResponse))
    assert (response.partstat, response.note) == ("ACCEPTED", "Přijde za nás kolegyně Nováková.")


def rsvp_url(mail, choice: str) -> str:
    """The whole address of the mail's `choice` link, as the member's mail app opens it."""
    text = mail.message.get_body(("plain",)).get_content()
    return next(
        url
        for label, _, url in (line.partition(": ") for line in text.splitlines())
        if label == choice and "/rsvp/" in url
    )


def answers_given() -> list[tuple]:
    db.session.expire_all()
    return db.session.execute(
        select(MeetingResponse.occurrence, MeetingResponse.partstat, MeetingResponse.note).order_by(
            MeetingResponse.id
        )
    ).all()


def test_a_member_answers_one_date_of_a_series_from_its_reminder(app, live_server, outbox, page):
    """Yes to the series from the invitation, then no to its next date alone from the
    reminder's link: the date's answer is recorded, the series' stays."""
    add_confirmed_subscribers("ostrava-psb", 2)
    meeting = series_invitation(second_tuesday().replace(hour=9, minute=30))
    run_jobs(app)
    invitation = next(m for m in outbox.mails if m.rcpt_tos == [MEMBER])
    [first] = occurrences.upcoming(meeting, after=utcnow(), count=1)

    page.goto(rsvp_url(invitation, "Přijdu"))
    expect(page.get_by_text("Odpověď platí pro všechna setkání řady")).to_be_visible()
    # The group's name says "skupina" itself: said once ("Setkání Pracovní skupiny …").
    expect(page.get_by_text("Setkání Pracovní skupiny sociálního bydlení")).to_be_visible()
    page.get_by_role("button", name="Uložit odpověď").click()
    expect(page.get_by_role("status")).to_contain_text("odpověď „Přijdu“ je uložena")
    assert answers_given() == [(None, "ACCEPTED", "")]

    link = rsvp_url(reminder_of(app, outbox, MEMBER), "Nepřijdu")
    assert link.startswith(f"{live_server.url}/rsvp/{meeting.id}-{first.key}.")
    page.goto(link)
    expect(
        page.get_by_text("Odpověď platí jen pro tento termín pravidelného setkání.")
    ).to_be_visible()
    expect(page.get_by_label("Nepřijdu", exact=True)).to_be_checked()
    # Until answered alone, the date holds the series' answer.
    expect(page.get_by_text("Vaše současná odpověď:")).to_contain_text("Přijdu")
    assert answers_given() == [(None, "ACCEPTED", "")]  # the GET changed nothing

    page.get_by_label("Poznámka pro koordinátora").fill("Ten den jsem na školení.")
    page.get_by_role("button", name="Uložit odpověď").click()
    expect(page.get_by_role("status")).to_contain_text("odpověď „Nepřijdu“ je uložena")
    expect(page.get_by_label("Nepřijdu", exact=True)).to_be_checked()
    assert answers_given() == [
        (None, "ACCEPTED", ""),
        (first.recurrence_id, "DECLINED", "Ten den jsem na školení."),
    ]

    # The series' own page still says yes: only that date changed.
    page.goto(rsvp_url(invitation, "Možná").split("?")[0])
    expect(page.get_by_label("Přijdu", exact=True)).to_be_checked()
    expect(page.get_by_text("Vaše současná odpověď:")).to_contain_text("Přijdu")
