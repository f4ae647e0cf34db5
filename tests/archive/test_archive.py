"""The public archive: list of published issues, one issue, and the Atom feed."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import date, datetime

import pytest
from sqlalchemy import select

from service.archive.dates import czech_date, local_date
from service.extensions import db
from service.models import Issue, MailingList
from tests.conftest import BASE_URL

ATOM = "{http://www.w3.org/2005/Atom}"


def make_issue(
    slug: str,
    number: int | None,
    subject: str,
    *,
    status: str = "sent",
    started_at: datetime | None = None,
    body: str = "Text čísla.",
    preheader: str = "",
) -> Issue:
    """An issue row as the delivery engine leaves it (no deliveries needed here)."""
    mailing_list = db.session.scalar(select(MailingList).filter_by(slug=slug))
    issue = Issue(
        list_id=mailing_list.id,
        number=number,
        subject=subject,
        preheader=preheader,
        body=body,
        status=status,
        started_at=started_at or (datetime(2026, 1, 1, 8) if number else None),
    )
    db.session.add(issue)
    db.session.commit()
    return issue


def issue_links(page: str, slug: str) -> list[str]:
    """The issue numbers linked from a page, in page order."""
    return re.findall(rf'href="/archive/{slug}/(\d+)"', page)


def parse_feed(response) -> ET.Element:
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/atom+xml; charset=utf-8"
    root = ET.fromstring(response.data)
    assert root.tag == f"{ATOM}feed"
    return root


# --- the list -----------------------------------------------------------------


def test_archive_lists_published_issues_of_that_list_newest_first(client):
    make_issue("zpravodaj", 1, "Lednové číslo", started_at=datetime(2026, 1, 10, 9))
    make_issue("zpravodaj", 2, "Únorové číslo", started_at=datetime(2026, 2, 10, 9))
    make_issue("zpravodaj", 3, "Březnové číslo", status="sending")
    make_issue("zpravodaj", 4, "Dubnové číslo", status="paused")
    make_issue("novinky", 1, "Novinka z jiného seznamu")

    response = client.get("/archive/zpravodaj")

    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert issue_links(page, "zpravodaj") == ["4", "3", "2", "1"]
    assert page.index("Dubnové číslo") < page.index("Lednové číslo")
    assert "Novinka z jiného seznamu" not in page
    assert "10. února 2026" in page
    assert "Zpravodaj sociálního bydlení" in page


def test_drafts_scheduled_and_cancelled_issues_are_not_in_the_archive(client):
    make_issue("zpravodaj", 1, "Odeslané číslo")
    make_issue("zpravodaj", None, "Rozepsaný koncept", status="draft")
    make_issue("zpravodaj", None, "Naplánované číslo", status="scheduled")
    make_issue("zpravodaj", None, "Zrušené před odesláním", status="cancelled")
    make_issue("zpravodaj", 2, "Zrušené během odesílání", status="cancelled")

    page = client.get("/archive/zpravodaj").get_data(as_text=True)
    feed = client.get("/archive/zpravodaj/feed.xml").get_data(as_text=True)

    assert issue_links(page, "zpravodaj") == ["1"]
    for hidden in ("Rozepsaný", "Naplánované", "Zrušené"):
        assert hidden not in page
        assert hidden not in feed
    assert client.get("/archive/zpravodaj/2").status_code == 404


def test_archive_page_shows_description_and_links_to_feed_and_subscription(client):
    mailing_list = db.session.scalar(select(MailingList).filter_by(slug="zpravodaj"))
    mailing_list.description = "Měsíční přehled novinek & dobré praxe."
    db.session.commit()

    page = client.get("/archive/zpravodaj").get_data(as_text=True)

    assert "Měsíční přehled novinek &amp; dobré praxe." in page
    assert re.search(
        r'<link rel="alternate" type="application/atom\+xml"[^>]*'
        r'href="/archive/zpravodaj/feed.xml"',
        page,
    )
    assert 'href="/subscribe?list=zpravodaj"' in page
    assert "Zatím jsme nevydali žádné číslo." in page


def test_archive_pages_may_be_cached_publicly(client):
    make_issue("zpravodaj", 1, "Číslo")
    for path in ("/archive/zpravodaj", "/archive/zpravodaj/1", "/archive/zpravodaj/feed.xml"):
        response = client.get(path)
        assert response.headers["Cache-Control"] == "public, max-age=300"
        assert "Set-Cookie" not in response.headers
        again = client.get(path, headers={"If-None-Match": response.headers["ETag"]})
        assert again.status_code == 304


# --- one issue ----------------------------------------------------------------


def test_issue_page_renders_markdown_and_neutralises_script(client):
    make_issue(
        "zpravodaj",
        1,
        "Bezpečné číslo",
        body=(
            "## Novinky\n\nPřečtěte si **metodiku** na [webu](https://www.socialnibydleni.example/)."
            '\n\n<script>alert("xss")</script>\n\n'
            "[klikni](javascript:alert(1)) <img src=x onerror=alert(1)>"
        ),
    )

    response = client.get("/archive/zpravodaj/1")

    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "<h2>Novinky</h2>" in page
    assert "<strong>metodiku</strong>" in page
    assert 'href="https://www.socialnibydleni.example/"' in page
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "javascript:" not in page.replace("[klikni](javascript:alert(1))", "")
    assert "<img src=x" not in page
    assert not re.search(r"<[^>]+\sonerror=", page)


def test_issue_page_has_no_personal_links(client):
    make_issue("zpravodaj", 1, "Číslo bez osobních odkazů", body="Dobrý den, čtenáři.")

    page = client.get("/archive/zpravodaj/1").get_data(as_text=True)

    assert "Dobrý den, čtenáři." in page
    assert "/unsubscribe/" not in page
    assert "/preferences/" not in page
    assert "@@ZPRAVODAJ" not in page


def test_issue_page_links_to_neighbours_skipping_unpublished_numbers(client):
    make_issue("zpravodaj", 1, "První")
    make_issue("zpravodaj", 2, "Zrušené", status="cancelled")
    make_issue("zpravodaj", 3, "Třetí", started_at=datetime(2026, 12, 10, 9))
    make_issue("zpravodaj", 4, "Čtvrté")

    page = client.get("/archive/zpravodaj/3").get_data(as_text=True)

    assert "<h1>Třetí</h1>" in page
    assert "10. prosince 2026" in page
    assert 'rel="prev" href="/archive/zpravodaj/1"' in page
    assert 'rel="next" href="/archive/zpravodaj/4"' in page
    assert 'href="/archive/zpravodaj"' in page
    assert 'href="/subscribe?list=zpravodaj"' in page

    first = client.get("/archive/zpravodaj/1").get_data(as_text=True)
    assert 'rel="prev"' not in first
    assert 'rel="next" href="/archive/zpravodaj/3"' in first


@pytest.mark.parametrize("number", ["9", "0", "2147483648", "99999999999999999999"])
def test_unknown_issue_number_is_a_czech_404(client, number):
    make_issue("zpravodaj", 1, "Číslo")

    response = client.get(f"/archive/zpravodaj/{number}")

    assert response.status_code == 404
    assert "Stránka nebyla nalezena." in response.get_data(as_text=True)


# --- not public ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["", "/1", "/feed.xml"])
@pytest.mark.parametrize("slug", ["ostrava-psb", "neexistuje"])
def test_group_lists_and_unknown_lists_are_not_found(client, slug, path):
    make_issue("ostrava-psb", 1, "Pozvánka na jednání skupiny")

    response = client.get(f"/archive/{slug}{path}")

    assert response.status_code == 404
    page = response.get_data(as_text=True)
    assert "Stránka nebyla nalezena." in page
    assert "Pozvánka" not in page


# --- the feed -----------------------------------------------------------------


def test_feed_is_atom_with_latest_twenty_issues_linked_on_base_url(client):
    for number in range(1, 24):
        make_issue("zpravodaj", number, f"Číslo {number}", started_at=datetime(2026, 1, number, 8))

    # The request's host must not leak into the feed: links come from BASE_URL.
    root = parse_feed(client.get("/archive/zpravodaj/feed.xml", base_url="http://evil.example"))

    assert root.findtext(f"{ATOM}title") == "Zpravodaj sociálního bydlení"
    assert root.findtext(f"{ATOM}id") == f"{BASE_URL}/archive/zpravodaj/feed.xml"
    assert root.findtext(f"{ATOM}updated") == "2026-01-23T08:00:00Z"
    assert root.findtext(f"{ATOM}author/{ATOM}name")
    links = {link.get("rel"): link.get("href") for link in root.findall(f"{ATOM}link")}
    assert links == {
        "self": f"{BASE_URL}/archive/zpravodaj/feed.xml",
        "alternate": f"{BASE_URL}/archive/zpravodaj",
    }
    entries = root.findall(f"{ATOM}entry")
    assert len(entries) == 20
    assert [entry.findtext(f"{ATOM}title") for entry in entries[:2]] == ["Číslo 23", "Číslo 22"]
    newest = entries[0]
    url = f"{BASE_URL}/archive/zpravodaj/23"
    assert newest.findtext(f"{ATOM}id") == url
    assert newest.find(f"{ATOM}link").get("href") == url
    assert newest.findtext(f"{ATOM}published") == "2026-01-23T08:00:00Z"
    assert newest.findtext(f"{ATOM}updated") == "2026-01-23T08:00:00Z"
    assert b"evil.example" not in client.get("/archive/zpravodaj/feed.xml").data


def test_feed_escapes_subjects_and_carries_sanitised_html_content(client):
    make_issue(
        "zpravodaj",
        1,
        "Nájem & kauce: když <nájemník> neplatí",
        preheader="Co dělat, když 1 < 2 & nájem chybí",
        body="**Tučně** a <script>alert(1)</script>",
    )

    response = client.get("/archive/zpravodaj/feed.xml")
    root = parse_feed(response)

    assert b"&amp; kauce: kdy\xc5\xbe &lt;n\xc3\xa1jemn\xc3\xadk&gt;" in response.data
    entry = root.find(f"{ATOM}entry")
    assert entry.findtext(f"{ATOM}title") == "Nájem & kauce: když <nájemník> neplatí"
    assert entry.findtext(f"{ATOM}summary") == "Co dělat, když 1 < 2 & nájem chybí"
    content = entry.find(f"{ATOM}content")
    assert content.get("type") == "html"
    assert "<strong>Tučně</strong>" in content.text
    assert "<script>" not in content.text


def test_feed_without_issues_is_still_valid_and_has_no_summary_for_empty_preheader(client):
    root = parse_feed(client.get("/archive/novinky/feed.xml"))
    assert root.findall(f"{ATOM}entry") == []
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", root.findtext(f"{ATOM}updated"))

    make_issue("novinky", 1, "Bez perexu")
    entry = parse_feed(client.get("/archive/novinky/feed.xml")).find(f"{ATOM}entry")
    assert entry.find(f"{ATOM}summary") is None


def test_feed_drops_characters_xml_cannot_carry(client):
    # (NUL is left out: PostgreSQL refuses to store it in the first place.)
    make_issue("zpravodaj", 1, "Zvonek\x07 a escape\x1b", body="Svislý\x0b tabulátor\t.")

    root = parse_feed(client.get("/archive/zpravodaj/feed.xml"))

    entry = root.find(f"{ATOM}entry")
    assert entry.findtext(f"{ATOM}title") == "Zvonek a escape"
    assert "Svislý tabulátor\t." in entry.findtext(f"{ATOM}content")


# --- Czech dates --------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "text"),
    [
        (date(2026, 12, 10), "10. prosince 2026"),
        (date(2026, 1, 1), "1. ledna 2026"),
        (date(2026, 2, 28), "28. února 2026"),
        (date(2026, 5, 8), "8. května 2026"),
        (date(2026, 9, 30), "30. září 2026"),
    ],
)
def test_dates_are_written_in_czech_with_the_genitive_month(day, text):
    assert czech_date(day) == text


def test_issue_date_is_the_day_in_prague_not_in_utc(client):
    # 23:30 UTC on 9 December is already 10 December in Prague (UTC+1 in winter).
    assert local_date(datetime(2026, 12, 9, 23, 30), "Europe/Prague") == date(2026, 12, 10)
    make_issue("zpravodaj", 1, "Pozdě večer", started_at=datetime(2026, 12, 9, 23, 30))

    page = client.get("/archive/zpravodaj").get_data(as_text=True)

    assert '<time class="archive-date" datetime="2026-12-10">10. prosince 2026</time>' in page


@pytest.mark.parametrize("path", ["/archive/%00", "/archive/%00/1", "/archive/%00/feed.xml"])
def test_nul_in_an_archive_url_is_400_not_500(client, path):
    # Refused by the input guard before any view or query runs.
    assert client.get(path).status_code == 400
