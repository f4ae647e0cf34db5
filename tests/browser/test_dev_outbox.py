"""The dev outbox in a real Chromium: a caught mail's HTML frame is as tall as the mail
(no scrollbar inside it), long URLs wrap, header names stay whole."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from pathlib import Path

import pytest

from service.dev.mail_catcher import MailCatcher, start_catcher

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

LONG_URL = "https://zpravodaj.socialnibydleni.example/preferences/" + "Ab3dEf6hIj9kLm2n" * 12
PARAGRAPHS = 60

FITTED = """() => {
  const frame = document.querySelector("iframe.mail-html");
  const doc = frame && frame.contentDocument;
  return Boolean(doc && doc.body && doc.body.textContent.includes("Odstavec LAST")
    && frame.clientHeight === doc.documentElement.scrollHeight);
}""".replace("LAST", str(PARAGRAPHS - 1))


@pytest.fixture
def outbox_dir(app_config, tmp_path) -> Path:
    directory = tmp_path / "dev-outbox"
    app_config["DEV_OUTBOX_DIR"] = str(directory)
    return directory


@pytest.fixture
def long_mail(outbox_dir) -> None:
    """A mail as tall as a long issue, with a long link and a long header, caught."""
    message = EmailMessage()
    message["From"] = "Zpravodaj sociálního bydlení <zpravodaj@socialnibydleni.example>"
    message["To"] = "jana.novakova@seznam.cz"
    message["Subject"] = "Zpravodaj sociálního bydlení: nové byty v Ostravě"
    message["List-Unsubscribe"] = f"<{LONG_URL}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(f"Dobrý den,\n\nnastavení odběru: {LONG_URL}\n")
    html = "".join(f"<p>Odstavec {n}: kontaktní místo pro bydlení.</p>" for n in range(PARAGRAPHS))
    message.add_alternative(f"<!doctype html><html><body>{html}</body></html>", subtype="html")
    controller = start_catcher(MailCatcher(outbox_dir))
    try:
        with smtplib.SMTP("127.0.0.1", controller.port, timeout=10) as smtp:
            smtp.send_message(message)
    finally:
        controller.stop()


# The frame's layout comes from templates, CSS and script; the outbox is files: SQLite only.
@pytest.mark.one_database
def test_the_mail_frame_grows_with_the_mail_and_nothing_overflows(
    outbox_dir, long_mail, live_server, page
):
    page.goto(f"{live_server.url}/dev/outbox/")
    page.get_by_role("link", name="Zpravodaj sociálního bydlení: nové byty v Ostravě").click()
    page.wait_for_function(FITTED)
    heights = page.evaluate(
        """() => {
          const frame = document.querySelector("iframe.mail-html");
          const root = frame.contentDocument.documentElement;
          return {frame: frame.clientHeight, content: root.scrollHeight, inner: root.clientHeight};
        }"""
    )
    assert heights["frame"] == heights["content"] == heights["inner"]  # no scrollbar inside
    assert heights["frame"] > 36 * 16  # taller than the fixed frame it was

    # The text part's long link wraps inside its box; the page never scrolls sideways.
    assert page.evaluate(
        """() => {
          const text = document.querySelector("pre.mail-text");
          return text.scrollWidth <= text.clientWidth
            && document.scrollingElement.scrollWidth <= window.innerWidth;
        }"""
    )

    page.get_by_text("Hlavičky").click()
    assert_headers_whole_and_within(page)

    # On a phone the mail is narrower and taller: the frame follows it.
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_function(FITTED)
    assert page.evaluate("() => document.scrollingElement.scrollWidth <= window.innerWidth")
    assert_headers_whole_and_within(page)


def assert_headers_whole_and_within(page) -> None:
    """Every header name on one line (never broken mid-word); the values wrap in the page."""
    names = page.evaluate(
        """() => [...document.querySelectorAll("table.headers th")].map(th => {
          const range = document.createRange();
          range.selectNodeContents(th);
          return [th.textContent, range.getClientRects().length];
        })"""
    )
    assert ["List-Unsubscribe-Post", 1] in names
    assert all(lines == 1 for _, lines in names), names
    assert page.evaluate(
        """() => {
          const table = document.querySelector("table.headers");
          return table.scrollWidth <= table.parentElement.clientWidth
            && document.scrollingElement.scrollWidth <= window.innerWidth;
        }"""
    )
