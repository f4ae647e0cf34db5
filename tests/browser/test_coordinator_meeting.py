"""A coordinator invites their group to a meeting in a real Chromium, with an attachment.

The app is served over HTTP from a thread; the test runs the queued jobs with
a real RQ worker in this process, then reads the captured mails.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import icalendar
import pytest
from playwright.sync_api import expect

from service.clock import utcnow
from tests.browser.conftest import sign_in
from tests.conftest import add_confirmed_subscribers, run_jobs

# One Chromium for all browser tests: they run in one test process.
pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

MEMBERS = 3


def test_coordinator_composes_and_sends_a_meeting_invitation(
    app, accounts, live_server, outbox, page, tmp_path: Path
):
    add_confirmed_subscribers("ostrava-psb", MEMBERS)
    day = (utcnow() + timedelta(days=21)).date()
    minutes = tmp_path / "zápis z minula.pdf"
    minutes.write_bytes(b"%PDF-1.4\nzapis\n%%EOF\n")

    sign_in(page, live_server.url, accounts.coordinator.email)

    page.goto(f"{live_server.url}/admin/issues/new?list=ostrava-psb")
    page.get_by_label("Předmět").fill("Setkání pracovní skupiny")
    page.get_by_label("Text vydání").fill("Dobrý den,\n\nzveme vás na další setkání.\n")
    page.get_by_label("Začátek").fill(f"{day.isoformat()}T09:30")
    page.get_by_label("Konec").fill(f"{day.isoformat()}T11:30")
    page.get_by_label("Místo", exact=True).fill("Magistrát, zasedací místnost 118")
    page.get_by_label("Program").fill("1. Zahájení\n2. Bytový fond")
    page.get_by_role("button", name="Uložit koncept").click()
    expect(page.get_by_text("Koncept vydání je uložen.")).to_be_visible()
    expect(page.get_by_role("heading", name="Setkání", exact=True)).to_be_visible()
    expect(page.get_by_text("od 9:30 do 11:30")).to_be_visible()

    page.get_by_label("Přidat přílohu").set_input_files(str(minutes))
    page.get_by_role("button", name="Nahrát přílohu").click()
    expect(page.get_by_text("Příloha zápis z minula.pdf je přidána.")).to_be_visible()

    page.get_by_label("Ano, odeslat vydání hned").check()
    page.get_by_role("button", name="Odeslat hned").click()
    expect(page.get_by_text("Vydání se odesílá.")).to_be_visible()
    run_jobs(app)

    assert len(outbox.mails) == MEMBERS
    for mail in outbox.mails:
        message = mail.message
        [calendar] = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
        assert calendar.get_param("method") == "REQUEST"
        event = icalendar.Calendar.from_ical(calendar.get_content()).walk("VEVENT")[0]
        assert event["SUMMARY"] == "Setkání pracovní skupiny"
        assert event["DTSTART"].params["TZID"] == "Europe/Prague"
        assert [p.get_filename() for p in message.iter_attachments()] == ["zápis z minula.pdf"]

    # The page reloads itself once the issue is final; reloading it here too
    # would race that navigation (ERR_ABORTED). Wait for the report it shows.
    expect(page.get_by_role("heading", name="Závěrečná zpráva")).to_be_visible()
    expect(page.get_by_text("Změnit termín nebo místo").first).to_be_visible()
    expect(page.get_by_role("button", name="Zrušit setkání")).to_be_visible()
