"""A coordinator moves a date of a recurring meeting and all after it in a real Chromium,
through the form on the invitation's page, as they would: open the date, type the new
time and place, tick the confirmation, press the button. A form broken on the page (a
field misnamed, the tick or the button missing) fails here, where a test posting the
fields itself would pass. The two series then link to each other.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from service.clock import utcnow
from service.extensions import db
from service.meetings import occurrences
from service.models import Issue, Meeting
from tests.browser.conftest import sign_in
from tests.conftest import add_confirmed_subscribers, run_jobs
from tests.meetings.test_occurrences import local, second_tuesday, series_invitation

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


def test_a_coordinator_moves_a_date_and_all_after_it_through_the_page(
    app, accounts, live_server, outbox, page
):
    add_confirmed_subscribers("ostrava-psb", 2)
    meeting = series_invitation(second_tuesday().replace(hour=9, minute=30))
    run_jobs(app)
    outbox.catcher.clear()
    [_, second] = occurrences.upcoming(meeting, after=utcnow(), count=2)
    invitation = db.session.scalar(select(Issue).order_by(Issue.id))
    new_start = local(second.start).replace(tzinfo=None) + timedelta(hours=1)

    sign_in(page, live_server.url, accounts.coordinator.email)
    page.goto(f"{live_server.url}/admin/issues/{invitation.id}")
    date = page.locator(f"details.meeting-date[data-key='{second.key}']")
    date.locator("summary").click()
    date.get_by_label("Nový začátek").fill(new_start.strftime("%Y-%m-%dT%H:%M"))
    date.get_by_label("Nový konec").fill(
        (new_start + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    )
    date.get_by_label("Místo").fill("Charita Ostrava, Kořenského 17")
    date.get_by_label("Ano, přesunout i všechny další termíny").check()
    date.get_by_role("button", name="Přesunout tento a všechny další termíny").click()
    expect(page.get_by_text("Termíny jsou přesunuty.")).to_be_visible()

    db.session.expire_all()
    old, new = db.session.scalars(select(Meeting).order_by(Meeting.id)).all()
    assert local(new.start).replace(tzinfo=None) == new_start
    assert new.location == "Charita Ostrava, Kořenského 17" and new.follows_id == old.id
    assert "UNTIL=" in old.rrule
    run_jobs(app)
    assert len(outbox.mails) == 4  # each member: the end of the series so far, the new one

    # The new series' invitation page names the series it continues, and links to it.
    back = page.locator("dd[data-series=previous] a")
    expect(page.locator("dt", has_text="Navazuje na")).to_be_visible()
    expect(back).to_contain_text("každé druhé úterý v měsíci v 9:30, naposledy")
    back.click()
    expect(page.locator("dt", has_text="Pokračuje jako")).to_be_visible()
    expect(page.locator("dd[data-series=next] a")).to_contain_text("v 10:30")
    page.locator("dd[data-series=next] a").click()
    expect(page.locator("dt", has_text="Navazuje na")).to_be_visible()

    # The attendance pages link the two series the same way.
    page.goto(f"{live_server.url}/admin/meetings/{new.id}/attendance")
    page.locator("dd[data-series=previous] a").click()
    expect(page).to_have_url(f"{live_server.url}/admin/meetings/{old.id}/attendance")
    expect(page.locator("dd[data-series=next] a")).to_be_visible()
