"""An editor's whole round in a real Chromium: sign in, compose, preview, send, watch it go out.

The app is served over HTTP from a thread (live_server), and a real worker
process (`python -m service worker`, as operators run it) delivers the issue
to the SMTP sink, so the progress the page shows is the engine's own.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from service.extensions import db
from service.models import Issue
from tests.browser.conftest import sign_in
from tests.conftest import add_confirmed_subscribers
from tests.workers.test_outgoing_mail import worker_env

# One Chromium for all browser tests: they run in one test process.
pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

RECIPIENTS = 40
BODY = """Dobrý den,

v tomto vydání: **nové byty** v Ostravě a [metodika](https://socialnibydleni.example/metodika).

- kontaktní místo pro bydlení
- setkání pracovní skupiny
"""
# Sending takes a few seconds (rate-limited), long enough to see it progress.
SEND_RATE = "20"
SENT_WITHIN_MS = 30_000


@pytest.fixture
def worker(app, outbox) -> Iterator[subprocess.Popen]:
    """A real worker process on the test's database, Redis and SMTP sink."""
    env = worker_env(app, outbox.url)
    env.update(BATCH_SIZE="10", SEND_RATE=SEND_RATE)
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "worker"],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield process
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def test_editor_composes_previews_and_sends_an_issue(
    app, accounts, live_server, worker, outbox, page
):
    add_confirmed_subscribers("zpravodaj", RECIPIENTS)
    csp_violations: list[str] = []
    page.on(
        "console",
        lambda m: "Content Security Policy" in m.text and csp_violations.append(m.text),
    )
    polls: list[int] = []
    page.on("response", lambda r: r.url.endswith("/progress.json") and polls.append(r.status))

    # Sign in.
    sign_in(page, live_server.url, accounts.editor.email)

    # Compose a new issue on the newsletter.
    page.goto(f"{live_server.url}/admin/issues")
    page.get_by_label("Seznam").select_option("zpravodaj")
    page.get_by_role("button", name="Nové vydání").click()
    page.get_by_label("Předmět").fill("Zpravodaj 1/2027")
    page.get_by_label("Perex").fill("Novinky z obcí")
    page.get_by_label("Text vydání").fill(BODY)
    page.get_by_role("button", name="Uložit koncept").click()
    expect(page.get_by_text("Koncept vydání je uložen.")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_have_text("Zpravodaj 1/2027")

    # Preview: the framed HTML shows the body, the text version too.
    page.get_by_role("link", name="Náhled").click()
    frame = page.frame_locator("iframe.issue-preview-frame")
    expect(frame.locator("strong", has_text="nové byty")).to_be_visible()
    expect(frame.get_by_role("link", name="metodika")).to_be_visible()
    expect(page.locator("pre.issue-preview-text")).to_contain_text("kontaktní místo pro bydlení")
    page.get_by_role("link", name="Zpět na vydání").click()

    # Send now: the button waits for the confirmation box.
    send = page.get_by_role("button", name="Odeslat hned")
    expect(send).to_be_disabled()
    page.get_by_label("Ano, odeslat vydání hned").check()
    expect(send).to_be_enabled()
    send.click()
    expect(page.get_by_text("Vydání se odesílá.")).to_be_visible()

    # The page follows the sending by itself, up to the final report.
    bar = page.locator("#issue-progress progress")
    expect(bar).to_be_visible()
    expect(page.get_by_role("heading", name="Závěrečná zpráva")).to_be_visible(
        timeout=SENT_WITHIN_MS
    )
    expect(bar).to_have_js_property("value", 100)
    expect(page.locator("#issue-progress [data-progress=percent]")).to_have_text("100 %")
    expect(page.locator("#issue-progress [data-progress=status_label]")).to_have_text("odesláno")
    expect(page.locator("[data-count=sent]")).to_have_text(str(RECIPIENTS))
    expect(page.locator("[data-count=failed]")).to_have_text("0")
    assert polls and set(polls) == {200}, polls  # updated by polling, not by reloading
    assert csp_violations == []

    # Everyone got it, once.
    got = collections.Counter(r for mail in outbox.mails for r in mail.rcpt_tos)
    assert got == {f"odberatel{n}@example.cz": 1 for n in range(RECIPIENTS)}
    assert {m.message["Subject"] for m in outbox.mails} == {"Zpravodaj 1/2027"}
    db.session.expire_all()
    issue = db.session.scalar(select(Issue).filter_by(subject="Zpravodaj 1/2027"))
    assert issue.status == "sent"
