"""A member answers a meeting invitation from the mail's link, in a real Chromium.

The invitation goes through the delivery engine to the SMTP sink; the member
opens the mail's "Možná" link (as a mail scanner would first: nothing is
recorded), changes their mind to "Přijdu", leaves a note and saves.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from service.extensions import db
from service.models import MeetingResponse
from tests.conftest import add_confirmed_subscribers, run_jobs
from tests.meetings.test_answers import rsvp_link
from tests.meetings.test_meetings import make_invitation, send, winter_thursday_10th

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


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
