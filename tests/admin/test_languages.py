"""The admin's pages in English (?lang=en, the remembered choice, Accept-Language), with no
Czech left over, and in Czech as before."""

from __future__ import annotations

from datetime import datetime

from flask_babel import refresh

from service.admin.dashboard import percent_figure, prague, week_starts
from service.clock import utcnow
from tests.conftest import add_confirmed_subscribers, csrf_token_of, log_in
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


def test_dashboard_in_english(client, accounts):
    add_confirmed_subscribers("zpravodaj", 3)
    log_in(client, accounts.admin.email)
    page = english(client, "/admin/")
    assert "<h1>Overview</h1>" in page and "Subscribers by status" in page
    assert "3 confirmed subscribers, 0 awaiting confirmation." in " ".join(page.split())
    assert "Sign-ups, confirmations and unsubscribes by week" in page
    monday = week_starts(utcnow())[-1]
    iso_year, iso_week, _ = monday.isocalendar()
    assert f"<title>Sign-ups, week {iso_week}/{iso_year} (" in page
    assert f">w. {iso_week}<" in page
    assert "Chart data as a table" in page


def test_dashboard_figures_in_each_language(app):
    with app.test_request_context("/admin/?lang=en"):
        assert percent_figure(0.0012345) == "0.12%"
        assert prague(datetime(2025, 1, 15, 12, 0)) == "15 Jan 2025, 13:00"
    with app.test_request_context("/admin/"):
        refresh()  # the locale is cached per app context, which the test shares
        assert percent_figure(0.0012345) == "0,12 %"
        assert prague(datetime(2025, 1, 15, 12, 0)) == "15. 1. 2025 13:00"


def test_dashboard_stays_czech(client, accounts):
    add_confirmed_subscribers("zpravodaj", 3)
    log_in(client, accounts.admin.email)
    page = client.get("/admin/").get_data(as_text=True)
    assert "<h1>Přehled</h1>" in page
    assert "3 potvrzení odběratelé, 0 čeká na potvrzení." in " ".join(page.split())
    assert "<title>Přihlášení, týden " in page and ">t. " in page


def test_subscribers_list_in_english(client, accounts):
    add_confirmed_subscribers("zpravodaj", 3)
    log_in(client, accounts.editor.email)
    page = english(client, "/admin/subscribers?list=zpravodaj&status=nic")
    assert "<h1>Subscribers</h1>" in page and "3 subscribers found" in page
    assert "Unknown subscription status; showing all statuses." in page
    assert "Export “Zpravodaj sociálního bydlení” to CSV" in page


def test_subscriber_erase_page_in_english(client, accounts):
    (subscriber_id,) = add_confirmed_subscribers("zpravodaj", 1)
    log_in(client, accounts.admin.email)
    page = english(client, f"/admin/subscribers/{subscriber_id}/erase")
    assert "Erase all data about the subscriber" in page and "Erase permanently" in page


def test_subscribers_list_stays_czech(client, accounts):
    add_confirmed_subscribers("zpravodaj", 3)
    log_in(client, accounts.editor.email)
    page = client.get("/admin/subscribers").get_data(as_text=True)
    assert "<h1>Odběratelé</h1>" in page and "Nalezeni 3 odběratelé" in page
