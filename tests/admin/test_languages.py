"""The admin's pages in English (?lang=en, the remembered choice, Accept-Language), with no
Czech left over, and in Czech as before."""

from __future__ import annotations

from tests.conftest import csrf_token_of, log_in
from tests.i18n_checks import untranslated, visible_text

# Data on the admin's pages, not interface: the seeded lists and the language switch.
ADMIN_DATA = ("Pracovní skupina sociálního bydlení", "Čeština")


def english(client, path: str, *data: str, status: int = 200, **kwargs) -> str:
    """The admin page at `path` asked for in English: its text, checked for Czech leftovers."""
    separator = "&" if "?" in path else "?"
    response = client.get(f"{path}{separator}lang=en", **kwargs)
    assert response.status_code == status, response.get_data(as_text=True)[:2000]
    page = response.get_data(as_text=True)
    assert '<html lang="en">' in page
    assert untranslated(visible_text(page), *ADMIN_DATA, *data) == []
    return page


def test_login_page_in_english_and_its_errors(client, accounts):
    page = english(client, "/admin/login")
    assert "<h1>Sign in</h1>" in page and "Password" in page
    token = csrf_token_of(client, "/admin/login")
    response = client.post(
        "/admin/login",
        data={"email": "admin@socialnibydleni.example", "password": "", "csrf_token": token},
    )  # the ?lang=en choice is remembered in the cookie
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Please enter your password." in page
    assert untranslated(visible_text(page), *ADMIN_DATA) == []
    wrong = client.post(
        "/admin/login",
        data={"email": "admin@socialnibydleni.example", "password": "x" * 12, "csrf_token": token},
    )
    assert "Incorrect e-mail address or password." in wrong.get_data(as_text=True)


def test_login_page_by_accept_language(client):
    response = client.get("/admin/login", headers={"Accept-Language": "en-GB,en;q=0.8"})
    assert "<h1>Sign in</h1>" in response.get_data(as_text=True)


def test_password_page_in_english_and_its_errors(client, accounts):
    log_in(client, "admin@socialnibydleni.example")
    page = english(client, "/admin/password")
    assert "Change password" in page and "New password again" in page
    response = client.post(
        "/admin/password",
        data={
            "current": "spatne-heslo-123",
            "password": "kratke",
            "password_again": "jine",
            "csrf_token": csrf_token_of(client, "/admin/password"),
        },
    )
    page = response.get_data(as_text=True)
    assert "The passwords do not match." in page
    assert untranslated(visible_text(page), *ADMIN_DATA) == []


def test_the_admin_stays_czech_by_default(client, accounts):
    page = client.get("/admin/login").get_data(as_text=True)
    assert '<html lang="cs">' in page and "<h1>Přihlášení</h1>" in page
    log_in(client, "admin@socialnibydleni.example")
    page = client.get("/admin/password").get_data(as_text=True)
    assert "Změna hesla" in page and "Nové heslo znovu" in page
    assert "Heslo musí mít alespoň 10 znaků." in page
