"""A list's content language: set by the CLI and the admin, kept in `mailing_list.language`;
its issues' fixed parts, its archive's markup and its feed follow it."""

from __future__ import annotations

from sqlalchemy import select, update

from service.extensions import db
from service.issues.rendering import render_issue
from service.models import MailingList
from tests.archive.test_archive import make_issue
from tests.conftest import csrf_token_of, log_in


def a_list(slug: str) -> MailingList:
    db.session.expire_all()
    return db.session.scalar(select(MailingList).filter_by(slug=slug))


def test_the_cli_sets_shows_and_checks_the_language(runner, app):
    created = runner.invoke(
        args=["lists", "create", "news-en", "--name", "News", "--language", "en"]
    )
    assert created.exit_code == 0, created.output
    assert a_list("news-en").language == "en"
    default = runner.invoke(args=["lists", "create", "novinky-cz", "--name", "Novinky"])
    assert default.exit_code == 0 and a_list("novinky-cz").language == "cs"
    shown = runner.invoke(args=["lists", "show", "news-en"]).output.splitlines()
    assert shown[:2] == ["news-en\tnewsletter\tNews", "  jazyk: en"]

    changed = runner.invoke(args=["lists", "update", "novinky-cz", "--language", "en"])
    assert changed.exit_code == 0 and a_list("novinky-cz").language == "en"
    refused = runner.invoke(args=["lists", "update", "novinky-cz", "--language", "de"])
    assert refused.exit_code == 2 and "'de' is not one of 'cs', 'en'" in refused.output
    assert a_list("novinky-cz").language == "en"


def test_an_admin_founds_an_english_group_and_changes_it_back(client, accounts):
    log_in(client, accounts.admin.email)
    token = csrf_token_of(client, "/admin/groups/new")
    assert 'name="language"' in client.get("/admin/groups/new").get_data(as_text=True)
    response = client.post(
        "/admin/groups/new",
        data={
            "name": "Housing First team",
            "slug": "hf-team",
            "visibility": "public",
            "language": "en",
            "csrf_token": token,
        },
    )
    assert response.status_code == 302
    assert a_list("hf-team").language == "en"
    wrong = client.post(
        "/admin/groups/new",
        data={
            "name": "Jiná",
            "slug": "jina",
            "visibility": "public",
            "language": "xx",
            "csrf_token": token,
        },
    )
    assert wrong.status_code == 422 and a_list("jina") is None

    details = client.post(
        "/admin/groups/hf-team/details",
        data={
            "name": "Housing First team",
            "visibility": "public",
            "language": "cs",
            "csrf_token": token,
        },
    )
    assert details.status_code == 302 and a_list("hf-team").language == "cs"


def test_an_issue_is_dressed_in_its_lists_language(app):
    issue = make_issue("zpravodaj", 1, "Novinky z bydlení")
    with app.test_request_context("/?lang=en"):
        czech = render_issue(issue)  # the admin's language does not matter
    assert "Nastavení odběru" in czech.text and '<html lang="cs">' in czech.html
    db.session.execute(update(MailingList).filter_by(slug="zpravodaj").values(language="en"))
    db.session.commit()
    with app.test_request_context("/?lang=cs"):
        english = render_issue(issue)
    assert "Subscription settings: " in english.text and '<html lang="en">' in english.html
    assert "because you subscribed to “Zpravodaj sociálního bydlení”" in " ".join(
        english.text.split()
    )
    assert "Nastavení" not in english.text


def test_the_archive_marks_an_english_lists_issues_on_a_czech_page(client):
    make_issue("zpravodaj", 1, "News from housing")
    db.session.execute(update(MailingList).filter_by(slug="zpravodaj").values(language="en"))
    db.session.commit()
    page = client.get("/archive/zpravodaj/1").get_data(as_text=True)
    assert '<html lang="cs">' in page and '<h1 lang="en">News from housing</h1>' in page
    listing = client.get("/archive/zpravodaj").get_data(as_text=True)
    assert '<span lang="en">News from housing</span>' in listing
    feed = client.get("/archive/zpravodaj/feed.xml").get_data(as_text=True)
    assert 'xml:lang="en"' in feed
