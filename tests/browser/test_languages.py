"""Czech and English in a real Chromium: the sign-up form in English, the website's script
telling the visitor when the browser refuses its post, and axe-core on public and admin
pages in both languages (0 violations)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import select
from werkzeug.wrappers import Request, Response

from service import PROJECT_ROOT
from service.extensions import db
from service.models import SignupRequest, Subscriber
from tests.browser.conftest import TIMEOUT_MS, Website, serve, sign_in
from tests.browser.test_admin_narrow import admin_content  # noqa: F401  (a fixture)
from tests.conftest import missing_part, process_signups

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

AXE_DEFAULT = PROJECT_ROOT / ".venv" / "npm" / "node_modules" / "axe-core" / "axe.min.js"


def test_a_visitor_signs_up_in_english(app, live_server, page):
    page.goto(f"{live_server.url}/subscribe?lang=en")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    email = page.get_by_label("E-mail")
    email.fill("jana@@seznam.cz")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.locator("#email-error")).to_have_text("Invalid e-mail address.")
    expect(email).to_have_value("jana@@seznam.cz")
    email.fill("jana.novakova@seznam.cz")
    page.get_by_label("Name").fill("Jana Nováková")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("heading", name="Check your mailbox")).to_be_visible()
    process_signups()  # what the sign-up job does (no worker runs here)
    subscriber = db.session.scalar(select(Subscriber))
    assert (subscriber.email, subscriber.language) == ("jana.novakova@seznam.cz", "en")


# --- the website's own form with the service's script --------------------------


def script_page(service_url: str, lang: str) -> str:
    return f"""<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><title>Web</title></head>
<body><main>
<form data-zpravodaj lang="{lang}" method="post" action="{service_url}/subscribe">
  <label>E-mail <input type="email" name="email" required></label>
  <input type="hidden" name="list" value="zpravodaj">
  <input type="text" name="website" tabindex="-1" autocomplete="off" hidden>
  <button>Send</button>
  <p class="zpravodaj-zprava" role="status"></p>
</form>
<script src="{service_url}/static/zpravodaj-embed.js"></script>
</main></body></html>"""


@pytest.fixture
def script_website(live_server):
    pages = {}

    @Request.application
    def site(request: Request) -> Response:
        return Response(pages[request.path], content_type="text/html; charset=utf-8")

    live = serve(site)
    website = Website(live)
    pages["/cs"] = script_page(live_server.url, "cs")
    pages["/en"] = script_page(live_server.url, "en")
    yield website
    live.stop()


def test_the_script_says_so_when_the_browser_refuses_the_post(app, script_website, page):
    app.config["EMBED_ORIGINS"] = []  # the website is not allowed: CORS refuses
    page.goto(script_website.origin + "/cs")
    page.get_by_label("E-mail").fill("jana.novakova@seznam.cz")
    page.get_by_role("button", name="Send").click()
    message = page.locator(".zpravodaj-zprava")
    expect(message).to_contain_text("Přihlášení se nepodařilo odeslat")
    expect(message.locator("a")).to_have_attribute(
        "href", f"{app.config['BASE_URL']}/subscribe?lang=cs"
    )
    assert db.session.scalar(select(SignupRequest)) is None  # nothing reached the service


def test_the_script_answers_in_english_when_allowed(app, script_website, page):
    app.config["EMBED_ORIGINS"] = [script_website.origin]
    page.goto(script_website.origin + "/en")
    # The browser's own check lets it through; the service's refuses it.
    page.get_by_label("E-mail").fill("jana@seznam")
    page.get_by_role("button", name="Send").click()
    message = page.locator(".zpravodaj-zprava")
    expect(message).to_have_text("Invalid e-mail address.")
    page.get_by_label("E-mail").fill("jana.novakova@seznam.cz")
    page.get_by_role("button", name="Send").click()
    expect(message).to_have_text("Check your mailbox and confirm your subscription.")
    process_signups()
    assert db.session.scalar(select(Subscriber.language)) == "en"


# --- axe-core: 0 violations ------------------------------------------------------


@pytest.fixture(scope="module")
def axe_source() -> str:
    path = Path(os.environ.get("AXE_CORE_PATH") or AXE_DEFAULT)
    if not path.is_file():
        missing_part("axe-core is not installed (scripts/test installs it with npm)")
    return path.read_text()


def violations(page, axe_source: str) -> list[str]:
    page.add_script_tag(content=axe_source)
    found = page.evaluate(
        "async () => (await axe.run(document)).violations"
        ".map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))"
    )
    return list(found)


PUBLIC = ["/subscribe", "/embed/subscribe", "/privacy", "/nikde", "/confirm/neplatny"]
ADMIN = ["/admin/", "/admin/subscribers", "/admin/issues", "/admin/users", "/admin/groups"]


@pytest.fixture
def axe_page(browser):
    """A page whose Content-Security-Policy lets axe-core's injected script run."""
    context = browser.new_context(locale="cs-CZ", bypass_csp=True)
    context.set_default_timeout(TIMEOUT_MS)
    yield context.new_page()
    context.close()


# What axe-core checks comes from templates and CSS, not from the database: SQLite only.
@pytest.mark.one_database
@pytest.mark.parametrize("lang", ["cs", "en"])
def test_public_pages_have_no_accessibility_violations(live_server, axe_page, axe_source, lang):
    page = axe_page
    for path in PUBLIC:
        page.goto(f"{live_server.url}{path}?lang={lang}")
        assert violations(page, axe_source) == [], path
    page.goto(f"{live_server.url}/subscribe?lang={lang}")
    page.locator("button[type=submit]").click()  # the form with its errors
    assert violations(page, axe_source) == [], "the form with errors"


# What axe-core checks comes from templates and CSS, not from the database: SQLite only.
@pytest.mark.one_database
@pytest.mark.parametrize("lang", ["cs", "en"])
def test_admin_pages_have_no_accessibility_violations(
    live_server, axe_page, axe_source, accounts, lang
):
    page = axe_page
    page.goto(f"{live_server.url}/admin/login?lang={lang}")
    assert violations(page, axe_source) == [], "login"
    sign_in(page, live_server.url, "admin@socialnibydleni.example", lang)
    for path in ADMIN:
        page.goto(f"{live_server.url}{path}")
        assert violations(page, axe_source) == [], path


# What axe-core checks comes from templates and CSS, not from the database: SQLite only.
@pytest.mark.one_database
@pytest.mark.parametrize("lang", ["cs", "en"])
def test_every_admin_page_with_content_has_no_accessibility_violations(
    live_server,
    axe_page,
    axe_source,
    admin_content,  # noqa: F811  (the fixture imported above)
    lang,
):
    """Beyond the lists: a subscriber, an issue in each state, the editor and its preview,
    a meeting's attendance and sheet, a group, the stored texts, the 404."""
    page = axe_page
    sign_in(page, live_server.url, "admin@socialnibydleni.example", lang)
    for path in admin_content:
        page.goto(f"{live_server.url}{path}")
        page.evaluate("() => document.querySelectorAll('details').forEach(d => { d.open = true; })")
        assert violations(page, axe_source) == [], path
