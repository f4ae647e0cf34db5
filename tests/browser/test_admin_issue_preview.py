"""The editor's live preview in a real Chromium: typed text and the mail's footer appear in
the sandboxed frame by themselves, the frame switches to a phone's width, the browser's
history does not grow with every pause in the typing, and the "Náhled" button previews
without a script."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from service.extensions import db
from service.issues import sending
from service.models import Issue, MailingList
from tests.browser import test_languages
from tests.browser.conftest import TIMEOUT_MS, sign_in
from tests.conftest import add_confirmed_subscribers

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

# axe-core and a page that lets it run: the language tests' fixtures.
axe_page = test_languages.axe_page
axe_source = test_languages.axe_source

# The frame shown (admin-issues.js swaps in a fresh one for every preview).
SHOWN_FRAME = "iframe.issue-preview-frame[data-preview-current]"


def test_preview_follows_the_typing_with_the_footer(app, accounts, live_server, page):
    csp_violations: list[str] = []
    page.on(
        "console",
        lambda m: "Content Security Policy" in m.text and csp_violations.append(m.text),
    )
    sign_in(page, live_server.url, accounts.editor.email)
    page.goto(f"{live_server.url}/admin/issues/new?list=zpravodaj")
    history = page.evaluate("history.length")
    frame = page.frame_locator(SHOWN_FRAME)
    # Even before anything is typed the frame holds the mail's footer.
    expect(frame.get_by_role("link", name="Odhlásit se z odběru")).to_be_visible()

    page.get_by_label("Předmět").fill("Zpravodaj 2/2027")
    body = page.get_by_label("Text vydání")
    body.press_sequentially("Ahoj, tady je **novinka** z Brna")
    expect(frame.locator("strong", has_text="novinka")).to_be_visible()
    expect(frame.get_by_text("z Brna")).to_be_visible()
    expect(frame.get_by_role("link", name="Odhlásit se z odběru")).to_be_visible()
    expect(frame.get_by_text("Tento e-mail dostáváte")).to_be_visible()

    body.press_sequentially("\n\n## Další zpráva")
    expect(frame.get_by_role("heading", name="Další zpráva")).to_be_visible()
    expect(page.locator("iframe.issue-preview-frame")).to_have_count(1)  # the old ones gone
    assert page.evaluate("history.length") == history

    # Desktop and phone widths, switched by the radio buttons.
    shown = page.locator(SHOWN_FRAME)
    assert shown.evaluate("e => e.getBoundingClientRect().width") > 500
    page.get_by_label("Telefon (390 px)").check()
    expect(shown).to_have_js_property("offsetWidth", 390)
    page.get_by_label("Počítač").check()
    expect(shown).not_to_have_js_property("offsetWidth", 390)

    # Saving still saves (only the preview button posts into the frame).
    page.get_by_role("button", name="Uložit koncept").click()
    expect(page.get_by_text("Koncept vydání je uložen.")).to_be_visible()
    db.session.expire_all()
    issue = db.session.scalar(select(Issue))
    assert issue.subject == "Zpravodaj 2/2027" and "## Další zpráva" in issue.body

    # The edit page previews the stored draft, then the edits as typed.
    page.get_by_role("link", name="Upravit").click()
    expect(frame.get_by_role("heading", name="Další zpráva")).to_be_visible()
    page.get_by_label("Text vydání").press_sequentially(" a Ostravy")
    expect(frame.get_by_text("a Ostravy")).to_be_visible()
    assert csp_violations == []


def test_preview_button_works_without_a_script(app, accounts, live_server, browser):
    context = browser.new_context(locale="cs-CZ", java_script_enabled=False)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        sign_in(page, live_server.url, accounts.editor.email)
        page.goto(f"{live_server.url}/admin/issues/new?list=zpravodaj")
        page.get_by_label("Předmět").fill("Bez skriptu")
        page.get_by_label("Text vydání").fill("Náhled **tlačítkem**")
        page.get_by_role("button", name="Náhled", exact=True).click()
        frame = page.frame_locator("iframe.issue-preview-frame")
        expect(frame.locator("strong", has_text="tlačítkem")).to_be_visible()
        expect(frame.get_by_role("link", name="Odhlásit se z odběru")).to_be_visible()
        # The editor stays, with what was typed; nothing is saved.
        expect(page.get_by_label("Text vydání")).to_have_value("Náhled **tlačítkem**")
        assert db.session.scalar(select(func.count()).select_from(Issue)) == 0
    finally:
        context.close()


# What axe-core checks comes from templates and CSS, not from the database: SQLite only.
@pytest.mark.one_database
@pytest.mark.parametrize("lang", ["cs", "en"])
def test_issue_pages_have_no_accessibility_violations(
    app, accounts, live_server, axe_page, axe_source, lang
):
    """The editor with its preview frame and width switch, and a draft's page (axe-core)."""
    add_confirmed_subscribers("zpravodaj", 2)
    fields, _ = sending.validate_fields("Zpravodaj 3/2027", "Text **vydání**", "Perex")
    mailing_list = db.session.scalar(select(MailingList).filter_by(slug="zpravodaj"))
    issue = sending.create_issue(mailing_list, fields, None)
    db.session.commit()
    page = axe_page
    sign_in(page, live_server.url, accounts.editor.email, lang)
    for path in (
        "/admin/issues/new?list=zpravodaj",
        f"/admin/issues/{issue.id}/edit",
        f"/admin/issues/{issue.id}",
        f"/admin/issues/{issue.id}/preview",
    ):
        page.goto(f"{live_server.url}{path}")
        assert test_languages.violations(page, axe_source) == [], path
