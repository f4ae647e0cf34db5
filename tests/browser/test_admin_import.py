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
from tests.browser.test_admin_issue import worker  # noqa: F401  (the fixture)
from tests.conftest import PASSWORD

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

    page.goto(f"{live_server.url}/admin/login")
    page.get_by_label("E-mail").fill(accounts.editor.email)
    page.get_by_label("Heslo").fill(PASSWORD)
    page.get_by_role("button", name="Přihlásit se").click()

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
