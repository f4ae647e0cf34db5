"""An editor imports a CSV in a real Chromium: the upload returns at once, the page
follows the worker's import with its progress bar, then shows the report.

The worker is a real process (`python -m service worker`), as in test_admin_issue.py.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from service.extensions import db
from service.models import Subscription
from tests.browser.conftest import sign_in
from tests.browser.test_admin_issue import worker  # noqa: F401  (the fixture)
from tests.browser.test_languages import axe_page, axe_source, violations  # noqa: F401
from tests.conftest import PASSWORD, add_confirmed_subscribers

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

PEOPLE = 3000
IMPORTED_WITHIN_MS = 60_000


def test_editor_uploads_a_csv_and_watches_it_imported(
    app,
    accounts,
    live_server,
    worker,  # noqa: F811
    page,
    tmp_path,
):
    csv_file = tmp_path / "lide.csv"
    lines = ["email,name"] + [f"clen{n}@seznam.cz,Člen {n}" for n in range(PEOPLE)]
    csv_file.write_text("\n".join([*lines, "nic-tu-neni,Nikdo"]) + "\n", encoding="utf-8")
    csp_violations: list[str] = []
    page.on(
        "console",
        lambda m: "Content Security Policy" in m.text and csp_violations.append(m.text),
    )
    polls: list[int] = []
    page.on("response", lambda r: r.url.endswith("/progress.json") and polls.append(r.status))

    sign_in(page, live_server.url, accounts.editor.email)

    page.goto(f"{live_server.url}/admin/subscribers/import")
    page.get_by_label("Soubor CSV").set_input_files(str(csv_file))
    page.get_by_label("Seznam").select_option("zpravodaj")
    page.get_by_label("Zdroj souhlasu").fill("Mailchimp, export 2026-11")
    page.get_by_role("button", name="Importovat").click()

    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Import do seznamu Zpravodaj sociálního bydlení"
    )
    expect(page.get_by_role("heading", name="Výsledek importu do seznamu")).to_be_visible(
        timeout=IMPORTED_WITHIN_MS
    )
    expect(page.locator("[data-count=imported]")).to_have_text(f"Importováno {PEOPLE} odběratelů")
    expect(page.locator("table.import-problems")).to_contain_text("nic-tu-neni")
    assert polls and set(polls) == {200}, polls
    assert csp_violations == []
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(Subscription)) == PEOPLE


def test_an_import_in_english_follows_the_page_s_language_and_passes_axe(
    app,
    accounts,
    live_server,
    worker,  # noqa: F811
    axe_page,  # noqa: F811
    axe_source,  # noqa: F811
    tmp_path,
):
    """The progress the script shows comes from progress.json in the page's language;
    the import's pages and a subscriber's page in English have no axe-core violations."""
    (subscriber_id,) = add_confirmed_subscribers("novinky", 1)
    csv_file = tmp_path / "people.csv"
    lines = ["email,name"] + [f"member{n}@seznam.cz,Member {n}" for n in range(300)]
    csv_file.write_text("\n".join([*lines, "nothing-here,Nobody"]) + "\n", encoding="utf-8")
    page = axe_page
    progress_texts: list[dict] = []
    page.on(
        "response",
        lambda r: r.url.endswith("/progress.json") and progress_texts.append(r.json()["texts"]),
    )

    page.goto(f"{live_server.url}/admin/login?lang=en")
    page.get_by_label("E-mail").fill(accounts.editor.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server.url}/admin/**")

    page.goto(f"{live_server.url}/admin/subscribers/import")
    assert violations(page, axe_source) == [], "the import form"
    page.get_by_role("button", name="Import").click()  # nothing filled in
    expect(page.get_by_role("alert")).to_contain_text("Choose a CSV file to import.")
    assert violations(page, axe_source) == [], "the import form with errors"
    page.get_by_label("CSV file").set_input_files(str(csv_file))
    page.get_by_label("List").select_option("zpravodaj")
    page.get_by_label("Source of consent").fill("Mailchimp, export 2026-11")
    page.get_by_role("button", name="Import").click()

    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Import into Zpravodaj sociálního bydlení"
    )
    expect(page.get_by_role("heading", name="Result of the import into")).to_be_visible(
        timeout=IMPORTED_WITHIN_MS
    )
    expect(page.locator("[data-count=imported]")).to_have_text("300 subscribers imported")
    expect(page.locator("table.import-problems")).to_contain_text("invalid address")
    found = violations(page, axe_source)
    assert found == [], "; ".join(found)
    for texts in progress_texts:  # whatever the script was shown while it ran
        assert " of " in texts["rows"] and texts["percent"].endswith("%"), texts

    page.goto(f"{live_server.url}/admin/subscribers/{subscriber_id}")
    expect(page.get_by_role("heading", name="Consent history")).to_be_visible()
    assert violations(page, axe_source) == [], "a subscriber's page"
