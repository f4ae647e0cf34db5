"""The admin on a phone (390 × 844) in a real Chromium: every admin page fits the width
(nothing to scroll sideways) and no word is broken in the middle.

A word here is a run of letters (Czech or English text); addresses, links, hashes
and numbers may break where they must. The computed styles that break words are
checked too: `word-break: break-all` only on elements holding no words, and
`overflow-wrap: anywhere` (or `word-break: break-word`) never splitting one.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from service.consent import current_consent_text
from service.extensions import db
from service.models import Issue, Meeting, Subscriber, SubscriberImport
from tests.browser.conftest import TIMEOUT_MS, sign_in
from tests.conftest import add_confirmed_subscribers, run_jobs, send_issue_now

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

PHONE = {"width": 390, "height": 844}
LONG_ADDRESS = "jana.novakova-dvorakova@ministerstvo-pro-mistni-rozvoj-ceske-republiky.example.cz"
LONG_SUBJECT = (
    "Zpravodaj sociálního bydlení 12/2026: Nejdůležitější novinky z pracovních skupin "
    "a metodika kontaktních míst pro bydlení"
)

# What a page does wrong on a narrow screen, as found in the browser.
PROBLEMS = r"""() => {
  const problems = [];
  const width = window.innerWidth;
  if (document.scrollingElement.scrollWidth > width) {
    // The innermost elements reaching past the edge (not their containers).
    const past = el => el.getBoundingClientRect().right > width + 0.5;
    const wide = [...document.querySelectorAll("body *")]
      .filter(el => past(el) && ![...el.children].some(past))
      .slice(0, 5)
      .map(el => el.tagName.toLowerCase() + "." + [...el.classList].join("."));
    problems.push("scrolls sideways: " + document.scrollingElement.scrollWidth + " > " + width
      + " " + wide.join(" "));
  }
  const word = /^\p{L}{2,}$/u;
  const words = text => text.split(/[^\p{L}]+/u).filter(w => word.test(w));
  // `word-break: break-all` splits whatever word a line ends in: only addresses, links
  // and codes may have it. (`overflow-wrap: anywhere`, and `word-break: break-word`
  // which means the same, split a word only where it cannot fit: in a table cell they
  // let the column shrink below its words. The check of every word below finds that.)
  for (const el of document.querySelectorAll("body *")) {
    const style = getComputedStyle(el);
    if (style.wordBreak !== "break-all") continue;
    const own = [...el.childNodes].filter(n => n.nodeType === Node.TEXT_NODE)
      .map(n => n.textContent).join(" ");
    const text = own.split(/\s+/).filter(t => t && !/[@/:.\d_=]/.test(t) && words(t).length);
    if (text.length) {
      problems.push("word-break: " + style.wordBreak + " on text: "
        + el.tagName.toLowerCase() + "." + [...el.classList].join(".") + " "
        + text.slice(0, 3).join(" "));
    }
  }
  // Every word on one line: a word whose letters land on two lines was broken.
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const range = document.createRange();
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const parent = node.parentElement;
    if (!parent || parent.closest("script, style, [hidden], .visually-hidden, svg")) continue;
    if (!parent.getClientRects().length) continue;  // not shown (a closed <details>…)
    const pattern = /[^\s]+/gu;
    let token;
    while ((token = pattern.exec(node.textContent))) {
      if (/[@/:.\d_=]/.test(token[0])) continue;  // an address, a link, a number
      for (const piece of token[0].matchAll(/\p{L}{2,}/gu)) {
        range.setStart(node, token.index + piece.index);
        range.setEnd(node, token.index + piece.index + piece[0].length);
        const tops = new Set([...range.getClientRects()].filter(r => r.width > 0)
          .map(r => Math.round(r.top)));
        if (tops.size > 1) {
          const style = getComputedStyle(parent);
          problems.push("word broken over lines: " + piece[0] + " in "
            + parent.tagName.toLowerCase() + "." + [...parent.classList].join(".")
            + " (word-break: " + style.wordBreak + ", overflow-wrap: " + style.overflowWrap
            + ")");
        }
      }
    }
  }
  return problems;
}"""


@pytest.fixture
def admin_content(app, accounts, outbox):
    """Something on every admin page: people with long addresses, issues sent and drafted,
    a meeting of the group, a stored consent text. Returns the pages' paths."""
    from tests.meetings.test_meetings import make_invitation, send, winter_thursday_10th

    add_confirmed_subscribers("zpravodaj", 5)
    add_confirmed_subscribers("ostrava-psb", 3, start=5)
    sent = send_issue_now(app, subject=LONG_SUBJECT)
    invitation = make_invitation(winter_thursday_10th() + timedelta(hours=9))
    send(invitation)
    run_jobs(app)
    from service.issues import sending
    from service.models import MailingList

    newsletter = db.session.scalar(select(MailingList).filter_by(slug="zpravodaj"))
    fields, errors = sending.validate_fields(LONG_SUBJECT, "Dobrý den,\n\nkoncept.\n", "")
    assert not errors
    draft = sending.create_issue(newsletter, fields, None)
    db.session.commit()
    meeting = db.session.get(Meeting, invitation.meeting_id)
    person = db.session.scalar(select(Subscriber).order_by(Subscriber.id))
    with app.test_request_context():
        text = current_consent_text()  # the stored text a sign-up refers to
    assert sent.id and draft.id and meeting and person and text
    return [
        "/admin/",
        "/admin/subscribers",
        f"/admin/subscribers/{person.id}",
        f"/admin/subscribers/{person.id}/erase",
        "/admin/subscribers/import",
        "/admin/issues",
        "/admin/issues/new",
        f"/admin/issues/{draft.id}",
        f"/admin/issues/{draft.id}/edit",
        f"/admin/issues/{draft.id}/preview",
        f"/admin/issues/{sent.id}",
        f"/admin/issues/{invitation.id}",
        f"/admin/meetings/{meeting.id}/attendance",
        f"/admin/meetings/{meeting.id}/attendance/sheet",
        "/admin/groups",
        "/admin/groups/new",
        "/admin/groups/ostrava-psb",
        "/admin/users",
        "/admin/password",
        f"/admin/texts/{text.id}",
        "/admin/nikde",
    ]


@pytest.fixture
def phone(browser):
    context = browser.new_context(locale="cs-CZ", viewport=PHONE)
    context.set_default_timeout(TIMEOUT_MS)
    yield context.new_page()
    context.close()


# Layout and word breaking come from templates and CSS, not from the database: SQLite only.
@pytest.mark.one_database
@pytest.mark.parametrize("lang", ["cs", "en"])
def test_every_admin_page_fits_a_phone_without_breaking_words(
    app, live_server, admin_content, phone, tmp_path, lang
):
    page = phone
    page.goto(f"{live_server.url}/admin/login?lang={lang}")
    assert page.evaluate(PROBLEMS) == [], "login"
    sign_in(page, live_server.url, "admin@socialnibydleni.example", "cs")
    page.goto(f"{live_server.url}/admin/?lang={lang}")  # remembered for the pages that follow

    # An import, for its report page: uploaded here, imported by the job.
    csv_file = tmp_path / "lide.csv"
    csv_file.write_text(f"email,name\n{LONG_ADDRESS},Jana Nováková\nnic-tu-neni,Nikdo\n")
    page.goto(f"{live_server.url}/admin/subscribers/import?lang=cs")
    page.get_by_label("Soubor CSV").set_input_files(str(csv_file))
    page.get_by_label("Seznam").select_option("zpravodaj")
    page.get_by_label("Zdroj souhlasu").fill("Mailchimp, export 2026-11")
    page.get_by_role("button", name="Importovat").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Import")
    run_jobs(app)
    # The page reloads itself once the import is done: wait for the report it shows, or
    # that reload would interrupt the next page's navigation.
    expect(page.locator("#report-heading")).to_be_visible()
    db.session.expire_all()
    imported = db.session.scalar(select(SubscriberImport).order_by(SubscriberImport.id.desc()))
    person = db.session.scalar(select(Subscriber).filter_by(email=LONG_ADDRESS))
    assert person is not None  # with a consent history, from the import
    also = [
        f"/admin/subscribers/imports/{imported.id}",
        f"/admin/subscribers/{person.id}",
        "/admin/subscribers?q=ministerstvo",
    ]

    found = {}
    for path in [*admin_content, *also]:
        page.goto(f"{live_server.url}{path}{'&' if '?' in path else '?'}lang={lang}")
        # What is folded away must fit too.
        page.evaluate("() => document.querySelectorAll('details').forEach(d => { d.open = true; })")
        problems = page.evaluate(PROBLEMS)
        if problems:
            found[path] = problems
    assert found == {}, json.dumps(found, indent=1, ensure_ascii=False)
    assert db.session.scalar(select(Issue.id).filter_by(subject=LONG_SUBJECT)) is not None
