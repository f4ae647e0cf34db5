"""The embeddable sign-up form in a real Chromium, framed by a page of another origin.

The app runs on http://127.0.0.1:<port>, the programme's "website" on
http://localhost:<other port>; its page holds <iframe src=".../embed/subscribe">.
Nothing is mocked: the browser types, submits, and the rows land in the database.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from service.extensions import db
from service.models import ConsentEvent, Subscriber, Subscription
from tests.conftest import process_signups

# One Chromium for all browser tests: they run in one test process.
pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

BAD_ADDRESS = "jana@@seznam.cz"
GOOD_ADDRESS = "jana.novakova@seznam.cz"
SUBMIT = "Přihlásit k odběru"
CHECK_MAILBOX = "Zkontrolujte svou e-mailovou schránku"


def frame_ancestors(headers: dict[str, str]) -> list[str]:
    """The sources of the frame-ancestors directive of a response's CSP."""
    for directive in headers["content-security-policy"].split(";"):
        name, *sources = directive.split()
        if name == "frame-ancestors":
            return sources
    raise AssertionError("no frame-ancestors in the Content-Security-Policy")


def test_website_frames_the_form_and_a_visitor_signs_up(app, live_server, website, page):
    app.config["EMBED_ORIGINS"] = [website.origin]
    blocked = []
    page.on("console", lambda m: "frame-ancestors" in m.text and blocked.append(m.text))

    with page.expect_response(f"{live_server.url}/embed/subscribe") as embed:
        page.goto(website.url)
    assert frame_ancestors(embed.value.headers) == ["'self'", website.origin]

    frame = page.frame_locator("iframe")
    email = frame.locator("input[name=email]")
    submit = frame.get_by_role("button", name=SUBMIT)
    expect(email).to_be_visible()

    # A bad address: the form comes back, still framed, with the error under the field.
    email.fill(BAD_ADDRESS)
    submit.click()
    error = frame.locator("#email-error")
    expect(error).to_have_text("Neplatný e-mail.")
    expect(error).to_be_visible()
    expect(email).to_have_value(BAD_ADDRESS)
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(email).to_have_attribute("aria-describedby", "email-error")
    expect(frame.locator(".field.has-error", has=email).locator("#email-error")).to_have_count(1)
    # Measure once the stylesheet is applied to the new page (its error border): a layout
    # read before that is the browser's default, label and field side by side.
    expect(email).to_have_css("border-top-width", "2px")
    field_box, error_box = email.bounding_box(), error.bounding_box()
    assert field_box is not None and error_box is not None
    below = error_box["y"] - (field_box["y"] + field_box["height"])
    assert 0 <= below < 40, (field_box, error_box)  # right under the input, not elsewhere
    assert abs(error_box["x"] - field_box["x"]) < 40, (field_box, error_box)

    # A good address: the frame says to check the mailbox.
    email.fill(GOOD_ADDRESS)
    submit.click()
    expect(frame.get_by_role("heading", name=CHECK_MAILBOX)).to_be_visible()
    expect(frame.locator("input[name=email]")).to_have_count(0)
    assert blocked == []

    # The server thread committed; read it afresh from this thread's session.
    db.session.commit()
    db.session.expire_all()
    process_signups()  # what the sign-up job does (no worker runs here)
    subscribers = db.session.scalars(select(Subscriber)).all()
    assert [s.email for s in subscribers] == [GOOD_ADDRESS]
    subscriptions = db.session.scalars(select(Subscription)).all()
    assert [(s.mailing_list.slug, s.status) for s in subscriptions] == [("zpravodaj", "pending")]
    events = db.session.scalars(select(ConsentEvent)).all()
    assert [(e.action, e.channel) for e in events] == [("signup", "embed")]


@pytest.mark.parametrize(
    "embed_origins",
    [[], ["https://www.socialnibydleni.example"]],
    ids=["no-origin-allowed", "only-another-origin-allowed"],
)
def test_form_does_not_render_on_a_website_not_allowed(
    app, live_server, website, page, embed_origins
):
    app.config["EMBED_ORIGINS"] = embed_origins

    # The app answers the frame's request; it is Chromium that refuses to show it
    # (frame-ancestors) and puts its own error page in the frame instead.
    with (
        page.expect_response(f"{live_server.url}/embed/subscribe") as embed,
        page.expect_event(
            "framenavigated",
            lambda f: f.parent_frame is not None and f.url.startswith("chrome-error://"),
        ),
    ):
        page.goto(website.url)
    assert embed.value.status == 200
    assert frame_ancestors(embed.value.headers) == ["'self'", *embed_origins]

    frame = page.frame_locator("iframe")
    expect(frame.locator("input[name=email]")).to_have_count(0)
    expect(frame.get_by_role("button", name=SUBMIT)).to_have_count(0)
    [child] = page.main_frame.child_frames
    assert child.url.startswith("chrome-error://")
