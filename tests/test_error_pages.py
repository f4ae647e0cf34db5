"""No dead ends: every error page in the reader's language, the admin's inside the admin."""

from __future__ import annotations

import pytest

from tests.conftest import log_in


def test_an_editor_outside_their_rights_gets_the_admin_layout_in_czech(client, accounts):
    log_in(client, "redakce@socialnibydleni.example")
    response = client.get("/admin/groups")
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    # Before: Werkzeug's English "Forbidden" with a link to the public sign-up.
    assert "Forbidden" not in page and "You don't have the permission" not in page
    assert "K této stránce nemáte přístup." in page
    assert 'class="admin"' in page and 'aria-label="Hlavní navigace"' in page
    assert 'href="/admin/"' in page  # the way back
    assert 'href="/subscribe"' not in page


def test_a_coordinator_outside_their_groups_gets_the_admin_layout_in_english(client, accounts):
    log_in(client, "koordinator@ostrava.example")
    response = client.get("/admin/subscribers?lang=en")
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert "You do not have access to this page." in page
    assert "Back to the administration overview" in page
    assert '<html lang="en">' in page


@pytest.mark.parametrize(
    ("lang", "expected"),
    [("cs", "Stránka nebyla nalezena."), ("en", "Page not found.")],
)
def test_404_in_both_languages(client, lang, expected):
    response = client.get(f"/nikde?lang={lang}")
    assert response.status_code == 404
    assert expected in response.get_data(as_text=True)


def test_accept_language_chooses_english_and_lang_wins_over_it(client):
    english = client.get("/nikde", headers={"Accept-Language": "en-GB,en;q=0.9"})
    assert "Page not found." in english.get_data(as_text=True)
    czech = client.get("/nikde?lang=cs", headers={"Accept-Language": "en"})
    assert "Stránka nebyla nalezena." in czech.get_data(as_text=True)


def test_lang_is_remembered_for_the_next_pages(client):
    client.get("/subscribe?lang=en")
    assert '<html lang="en">' in client.get("/subscribe").get_data(as_text=True)
    client.get("/subscribe?lang=cs")
    assert '<html lang="cs">' in client.get("/subscribe").get_data(as_text=True)


def test_czech_is_the_default(client):
    page = client.get("/subscribe", headers={"Accept-Language": "de"}).get_data(as_text=True)
    assert '<html lang="cs">' in page and "Přihlásit k odběru" in page


@pytest.mark.parametrize(
    ("status", "request_args", "cs", "en"),
    [
        (405, ("delete", "/subscribe"), "Tato adresa tento druh", "does not accept this kind"),
        (404, ("get", "/admin/neni-tu"), "Stránka nebyla nalezena.", "Page not found."),
        (413, ("post", "/subscribe"), "Požadavek je příliš velký.", "The request is too large."),
    ],
)
def test_error_pages_are_translated(client, status, request_args, cs, en):
    method, path = request_args
    extra = {"data": {"email": "x" * (2 * 1024 * 1024)}} if status == 413 else {}
    for lang, text in (("cs", cs), ("en", en)):
        response = getattr(client, method)(f"{path}?lang={lang}", **extra)
        assert response.status_code == status
        assert text in response.get_data(as_text=True)


def test_json_errors_carry_a_stable_code(client):
    response = client.get("/nikde", headers={"Accept": "application/json"})
    assert response.json == {
        "errors": {"request": "Stránka nebyla nalezena."},
        "codes": {"request": "not_found"},
    }
