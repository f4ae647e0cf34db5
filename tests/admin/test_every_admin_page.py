"""Every admin page an admin can reach by following links, in English and in Czech: no
dead end (no 404 or 500 behind a link), and in English no Czech interface text left.

The crawl starts at the dashboard with data behind every kind of page (subscribers with
bounces and a look-alike domain, a sent issue and a draft, a group with a pending join
request and a meeting with answers) and follows every link to /admin/... it finds, so a
page added later is checked without being listed here.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
from sqlalchemy import select

from service.clock import utcnow
from service.extensions import db
from service.models import Bounce, MailingList, Subscriber, Subscription
from tests.conftest import add_confirmed_subscribers, log_in, run_jobs, send_issue_now
from tests.i18n_checks import untranslated
from tests.meetings.test_meetings import make_invitation, send, winter_thursday_10th

# Data, not interface: what the seeded lists, people, issues and meetings are called.
DATA = (
    "Pracovní skupina sociálního bydlení",
    "Zpravodaj sociálního bydlení",
    "Novinky",
    "Čeština",
    "Setkání PSB v prosinci",
    "Magistrát města Ostravy, zasedací místnost 118",
    "Zpravodaj 12/2026",
    "Koncept na leden",
    "Petra Svobodová",
    "Charita Ostrava",
    "sociální pracovnice",
    "Sociální bydlení v ČR",
)
# Links that end a session or answer with a file rather than a page.
NOT_PAGES = re.compile(r"/logout|\.csv$|/export|\.ics$|/attachments/|/download")
MOST_PAGES = 400


class _VisibleText(HTMLParser):
    """The text a reader sees and the links, leaving out elements marked as content in
    another language (`lang="cs"` around an issue written in Czech) or as not to be
    translated (`translate="no"`: a stored consent text, shown as people saw it)."""

    VOID = frozenset({"br", "img", "input", "meta", "link", "hr", "col", "source", "wbr"})

    def __init__(self, language: str) -> None:
        super().__init__(convert_charrefs=True)
        self.language = language
        self.stack: list[bool] = []  # per open element: inside foreign content?
        self.parts: list[str] = []
        self.links: list[str] = []

    def _foreign(self) -> bool:
        return bool(self.stack) and self.stack[-1]

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        foreign = (
            self._foreign()
            or (tag != "html" and values.get("lang") not in (None, self.language))
            or values.get("translate") == "no"  # evidence shown as stored
        )
        if tag == "a" and values.get("href"):
            self.links.append(values["href"])
        if not foreign:
            for name in ("aria-label", "title", "alt", "placeholder"):
                if values.get(name):
                    self.parts.append(values[name])
            if tag in ("input", "button") and values.get("type") in ("submit", "button"):
                self.parts.append(values.get("value") or "")
        if tag not in self.VOID:
            self.stack.append(foreign or tag in ("script", "style", "template"))

    def handle_endtag(self, tag):
        if tag not in self.VOID and self.stack:
            self.stack.pop()

    def handle_data(self, data):
        if not self._foreign():
            self.parts.append(data)


def read(html: str, language: str) -> tuple[str, list[str]]:
    parser = _VisibleText(language)
    parser.feed(html)
    return "\n".join(parser.parts), parser.links


@pytest.fixture
def everything(app, client, outbox, accounts):
    """Data behind every kind of admin page."""
    add_confirmed_subscribers("zpravodaj", 3)
    members = add_confirmed_subscribers("ostrava-psb", 3, start=10)
    # A look-alike domain (Cyrillic "а") and a bounce with a reason.
    look = Subscriber(
        email="jana@exаmple.cz", email_key="jana@exаmple.cz", ascii_email="jana@xn--exmple-4nf.cz"
    )
    db.session.add(look)
    db.session.flush()
    zpravodaj = db.session.scalar(select(MailingList).filter_by(slug="zpravodaj"))
    db.session.add(Subscription(subscriber_id=look.id, list_id=zpravodaj.id, status="confirmed"))
    db.session.add(
        Bounce(
            subscriber_id=members[0],
            received_at=utcnow(),
            kind="soft",
            reason="mailbox_full",
            status="4.2.2",
            diagnostic="552 mailbox full",
            fingerprint="0" * 64,
        )
    )
    db.session.commit()
    send_issue_now(app)
    from service.issues import sending

    fields, errors = sending.validate_fields("Koncept na leden", "Dobrý den,\n\nkoncept.\n", "")
    assert not errors
    sending.create_issue(zpravodaj, fields, None)
    db.session.commit()
    send(make_invitation(winter_thursday_10th().replace(hour=9, minute=30)))
    run_jobs(app)
    # A join request waiting for the coordinator.
    group = db.session.scalar(select(MailingList).filter_by(slug="ostrava-psb"))
    group.visibility = "public"
    db.session.commit()
    client.post(
        "/groups/ostrava-psb/join",
        data={
            "email": "petra@ostrava.example",
            "name": "Petra Svobodová",
            "organization": "Charita Ostrava",
            "institution": "nno",
            "function": "sociální pracovnice",
        },
    )
    run_jobs(app)
    for mail in outbox.mails:
        for line in mail.message.get_body(("plain",)).get_content().splitlines():
            if "/groups/join/" in line:
                client.post(urlsplit(line.strip()).path)
    run_jobs(app)
    log_in(client, "admin@socialnibydleni.example")
    return client


def crawl(client, language: str, start: list[str], follow: Callable[[str], bool]) -> dict[str, str]:
    """GET every page reachable from `start` through links whose path `follow` accepts:
    path → its visible text. Every one must answer 200 in `language`."""
    seen: dict[str, str] = {}
    queue = deque(start)
    queued = set(queue)
    while queue and len(seen) < MOST_PAGES:
        url = queue.popleft()
        response = client.get(url)
        assert response.status_code == 200, f"{url} answered {response.status_code}"
        if response.mimetype != "text/html":
            continue
        html = response.get_data(as_text=True)
        assert f'<html lang="{language}">' in html, url
        text, links = read(html, language)
        seen[url] = text
        for link in links:
            parts = urlsplit(urljoin(url, link))
            if parts.netloc not in ("", "localhost", "zpravodaj.test") or "lang=" in parts.query:
                continue  # elsewhere, or the language switch (which leads to the other crawl)
            if NOT_PAGES.search(parts.path) or not follow(parts.path):
                continue
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            if path not in queued:
                queued.add(path)
                queue.append(path)
    return seen


def crawl_admin(client, language: str) -> dict[str, str]:
    """Every admin page reachable from the dashboard."""
    return crawl(client, language, [f"/admin/?lang={language}"], lambda p: p.startswith("/admin"))


def public(path: str) -> bool:
    return not path.startswith(("/admin", "/dev")) and not path.endswith((".xml", ".js", ".css"))


def test_every_admin_page_in_english_has_no_czech_left(everything):
    pages = crawl_admin(everything, "en")
    assert len(pages) >= 15, sorted(pages)
    leftovers = {url: found for url, text in pages.items() if (found := untranslated(text, *DATA))}
    assert leftovers == {}, "\n".join(f"{u}: {v[:4]}" for u, v in leftovers.items())


def test_every_admin_page_in_czech_answers(everything):
    pages = crawl_admin(everything, "cs")
    assert len(pages) >= 15, sorted(pages)
    assert any("Odběratelé" in text for text in pages.values())


PUBLIC_DATA = (
    *DATA,
    "Úřad pro ochranu osobních údajů",
    "Ostrava",
    "Sociální bydlení",
    "Magistrát města Ostravy, Prokešovo nám. 8",
)


def test_every_public_page_in_english_has_no_czech_left(app, outbox, accounts):
    """The visitor's side, from the sign-up form, the archive and the groups' pages."""
    client = app.test_client()
    send_issue_now(app)
    group = db.session.scalar(select(MailingList).filter_by(slug="ostrava-psb"))
    group.visibility = "public"
    group.municipality = "Ostrava"
    group.theme = "Sociální bydlení"
    group.meeting_place = "Magistrát města Ostravy, Prokešovo nám. 8"
    db.session.commit()
    start = ["/subscribe?lang=en", "/archive/zpravodaj", "/groups/", "/privacy"]
    seen = crawl(client, "en", start, public)
    assert len(seen) >= 5, sorted(seen)
    leftovers = {
        url: found for url, text in seen.items() if (found := untranslated(text, *PUBLIC_DATA))
    }
    assert leftovers == {}, "\n".join(f"{u}: {v[:4]}" for u, v in leftovers.items())
