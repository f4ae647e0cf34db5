"""The admin's pages in English (?lang=en, the remembered choice, Accept-Language), with no
Czech left over, and in Czech as before."""

from __future__ import annotations

import io
import re
from datetime import datetime, timedelta

import pytest
from flask_babel import ngettext, refresh
from sqlalchemy import select

from service import stored_messages
from service.admin.dashboard import percent_figure, prague, week_starts
from service.bounces import recording
from service.clock import utcnow
from service.extensions import db
from service.models import Bounce, ConsentText, Subscriber, SubscriberImport, User
from service.subscriptions import import_jobs
from tests.admin.test_dashboard import add_event, add_person
from tests.conftest import add_confirmed_subscribers, csrf_token_of, link_to, log_in, run_jobs
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
    add_event(
        add_person("jana@example.cz", "zpravodaj", "pending"), "zpravodaj", "signup", utcnow()
    )
    log_in(client, accounts.admin.email)
    page = english(client, "/admin/")
    assert "<h1>Overview</h1>" in page and "Subscribers by status" in page
    assert "3 confirmed subscribers, 1 awaiting confirmation." in " ".join(page.split())
    assert "No sign-ups, confirmations or unsubscribes in the last 12 weeks: Novinky" in page
    assert "Sign-ups, confirmations and unsubscribes by week" in page
    monday = week_starts(utcnow())[-1]
    iso_year, iso_week, _ = monday.isocalendar()
    assert f"<title>Sign-ups, week {iso_week}/{iso_year} (" in page
    assert f">w. {iso_week}<" in page
    assert "Chart data as a table" in page
    # The admin's sign-out is not the subscriber's "Unsubscribe" (the same Czech words).
    assert ">Sign out</button>" in page and ">Unsubscribe<" not in page


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
    add_event(
        add_person("jana@example.cz", "zpravodaj", "pending"), "zpravodaj", "signup", utcnow()
    )
    log_in(client, accounts.admin.email)
    page = client.get("/admin/").get_data(as_text=True)
    assert "<h1>Přehled</h1>" in page and ">Odhlásit se</button>" in page
    assert "3 potvrzení odběratelé, 1 čeká na potvrzení." in " ".join(page.split())
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


# --- one subscriber, the import, accounts, stored texts ------------------------------


def signed_up_and_bounced(client, app, outbox) -> Subscriber:
    """Someone who signed up through the form, confirmed, then bounced (hard and soft)."""
    response = client.post(
        "/subscribe",
        data={"email": "jana.novakova@seznam.cz", "list": ["zpravodaj"], "list_choice": "1"},
        headers={"User-Agent": "Mozilla/5.0 (test)"},
        environ_base={"REMOTE_ADDR": "192.0.2.10"},
    )
    assert response.status_code == 202
    run_jobs(app)
    assert client.post(link_to(outbox.mails[0], "/confirm/")).status_code == 200
    person = db.session.scalar(select(Subscriber))
    for day, reason in ((3, "mailbox_full"), (1, "rate_limited")):
        db.session.add(
            Bounce(
                subscriber_id=person.id,
                kind="soft",
                reason=reason,
                status="4.2.2",
                diagnostic="452 4.2.2 Mailbox full",
                raw="Final-Recipient: rfc822; jana.novakova@seznam.cz\n",
                delivery_id=None,
                fingerprint=f"{day:064d}",
                received_at=utcnow() - timedelta(days=day),
            )
        )
    recording.suppress_bounced(person, "5.1.1 User unknown")
    db.session.commit()
    return person


def test_subscriber_page_in_english_and_its_flashes(client, app, accounts, outbox):
    person = signed_up_and_bounced(client, app, outbox)
    log_in(client, accounts.admin.email)
    page = english(client, f"/admin/subscribers/{person.id}")
    text = " ".join(visible_text(page).split())
    assert '<h2 id="consent-heading">Consent history</h2>' in page
    assert "Download all data (JSON)" in text and "Erase all data…" in text
    assert "The address no longer receives mail because it bounced (1 subscription)." in text
    assert "Temporary failure score: 2 days with failures over 2 days." in text
    assert "The address stops receiving mail after " in text
    assert "mailbox full" in text and "too many messages at once" in text
    assert "Signed up" in text and "Confirmed" in text and "Unsubscribed" in text
    assert "form on the page" in text  # the consent step's channel
    assert re.search(r"\d{1,2} [A-Z][a-z]{2} \d{4}, \d\d:\d\d", text)  # CLDR, Prague time
    assert "version 1" in text

    token = csrf_token_of(client, f"/admin/subscribers/{person.id}")
    url = f"/admin/subscribers/{person.id}/reactivate"
    restored = client.post(url, data={"csrf_token": token}, follow_redirects=True)
    assert "Delivery resumed (1 subscription)." in restored.get_data(as_text=True)
    assert untranslated(visible_text(restored.get_data(as_text=True)), *ADMIN_DATA) == []
    again = client.post(url, data={"csrf_token": token}, follow_redirects=True)
    assert "The address has no subscription suspended as undeliverable." in again.text


def test_subscriber_page_stays_czech(client, app, accounts, outbox):
    person = signed_up_and_bounced(client, app, outbox)
    log_in(client, accounts.editor.email)
    page = " ".join(client.get(f"/admin/subscribers/{person.id}").get_data(as_text=True).split())
    assert "Historie souhlasu" in page and "Stáhnout všechna data (JSON)" in page
    assert "Adresa je vyřazena z rozesílání jako nedoručitelná (1 odběr)." in page
    assert "Skóre dočasných chyb: 2 dny s chybou v rozpětí 2 dnů." in page
    assert "plná schránka" in page and "formulář na stránce" in page
    assert re.search(r"\d+\. \d+\. \d{4} \d\d:\d\d", page)


def test_subscriber_page_plurals_in_czech_and_english(app):
    with app.test_request_context("/admin/"):
        forms = [ngettext("%(num)d den s chybou", "%(num)d dní s chybou", n) for n in (1, 3, 5)]
        assert forms == ["1 den s chybou", "3 dny s chybou", "5 dní s chybou"]
    with app.test_request_context("/admin/?lang=en"):
        refresh()
        forms = [ngettext("%(num)d den s chybou", "%(num)d dní s chybou", n) for n in (1, 3)]
        assert forms == ["1 day with failures", "3 days with failures"]


def test_subscribers_list_pages_and_look_alike_badge_in_english(client, accounts):
    add_confirmed_subscribers("zpravodaj", 51)
    lookalike = Subscriber(
        email="jan@p\u0430ypal.cz", email_key="jan@p\u0430ypal.cz", ascii_email="", name=""
    )
    db.session.add(lookalike)
    db.session.commit()
    log_in(client, accounts.editor.email)
    page = english(client, "/admin/subscribers")
    assert 'aria-label="Pages"' in page and "Next ›" in page
    assert "caution: the domain mixes scripts" in page
    second = english(client, "/admin/subscribers?page=2")
    assert "‹ Previous" in second
    czech = client.get("/admin/subscribers?lang=cs").get_data(as_text=True)
    assert "Další ›" in czech and "pozor: doména míchá písma" in czech


IMPORT_CSV = (
    "email,name\n"
    "jana.novakova@seznam.cz,Jana Nováková\n"
    "not-an-address,Nikdo\n"
    "jana.novakova@seznam.cz,Again\n"
    "petr@centrum.cz,Petr\n"
)


def upload(client, body: bytes | None, *, source="Mailchimp, export 2026-11-01", slug="zpravodaj"):
    data = {"csrf_token": csrf_token_of(client, "/admin/"), "mailing_list": slug}
    data["consent_source"] = source
    if body is not None:
        data["file"] = (io.BytesIO(body), "people.csv")
    return client.post("/admin/subscribers/import", data=data, content_type="multipart/form-data")


def test_import_form_in_english(client, accounts):
    log_in(client, accounts.editor.email)
    page = english(client, "/admin/subscribers/import")
    assert "<h1>Import subscribers from CSV</h1>" in page
    assert '<label for="consent_source">Source of consent</label>' in page
    assert 'placeholder="e.g. Mailchimp, export of 1 Nov 2025"' in page


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (None, "Choose a CSV file to import."),
        (b"  \n\n", "The file is empty."),
        ("email\njana@example.cz\n".encode("utf-16"), "The file is not in UTF-8."),
        (b"adresa,jmeno\njana@example.cz,Jana\n", "The first line has no “email” column"),
        (b"email;name\njana@example.cz;Jana\n", "separated by semicolons; use commas."),
        (b'email,name\n"' + b"x" * 200_000 + b'"\n', "The file is not valid CSV (line 2)."),
    ],
)
def test_bad_uploads_are_refused_in_english(client, accounts, body, message):
    log_in(client, accounts.editor.email)
    client.get("/admin/?lang=en")  # the choice, remembered for the upload
    response = upload(client, body)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "The import was not carried out:" in page and message in page
    assert untranslated(visible_text(page), *ADMIN_DATA) == []


def test_a_wrong_import_form_is_refused_in_english(client, accounts):
    log_in(client, accounts.editor.email)
    client.get("/admin/?lang=en")
    no_source = upload(client, IMPORT_CSV.encode(), source="  ")
    assert no_source.status_code == 422
    assert "Say where and when people agreed to receive mail." in no_source.get_data(as_text=True)
    too_long = upload(client, IMPORT_CSV.encode(), source="x" * 501)
    assert "The source of consent is too long (500 characters at most)." in too_long.text
    no_list = upload(client, IMPORT_CSV.encode(), slug="none")
    assert no_list.status_code == 422
    assert "Choose the list to import into." in no_list.get_data(as_text=True)
    for response in (no_source, too_long, no_list):
        assert untranslated(visible_text(response.get_data(as_text=True)), *ADMIN_DATA) == []
    assert db.session.scalar(select(SubscriberImport)) is None


def test_an_import_s_progress_and_report_in_english(client, app, accounts):
    log_in(client, accounts.editor.email)
    client.get("/admin/?lang=en")
    location = upload(client, IMPORT_CSV.encode()).headers["Location"]
    queued = english(client, location)
    assert "<h1>Import into Zpravodaj sociálního bydlení</h1>" in queued
    assert "Import progress" in queued and "waiting to start" in queued
    record = db.session.scalar(select(SubscriberImport))
    progress = client.get(f"/admin/subscribers/imports/{record.id}/progress.json").get_json()
    assert progress["status_label"] == "waiting to start"
    assert progress["texts"] == {"percent": "0%", "rows": "0 of 4"}
    db.session.commit()  # the test's session served the request: end its read

    run_jobs(app)

    done = client.get(f"/admin/subscribers/imports/{record.id}/progress.json").get_json()
    assert done["texts"] == {"percent": "100%", "rows": "4 of 4"}
    assert done["status_label"] == "finished"
    report = english(client, location, "Jana Nováková")
    text = " ".join(visible_text(report).split())
    assert "2 subscribers imported" in text and "0 addresses were already subscribed" in text
    assert "2 lines skipped" in text and "Skipped lines" in text
    assert "invalid address &#39;not-an-address&#39;" in text
    assert "repeats the address from line 2" in text
    listing = english(client, "/admin/subscribers/import")
    assert "Recent imports" in listing and "finished" in listing

    again = client.get(upload_and_run(client, app, b"email\njana.novakova@seznam.cz\n"))
    assert "1 address was already subscribed" in again.get_data(as_text=True)


def upload_and_run(client, app, body: bytes) -> str:
    location = upload(client, body).headers["Location"]
    run_jobs(app)
    return location


def test_an_import_that_failed_says_why_in_english_and_in_czech(client, app, accounts):
    log_in(client, accounts.editor.email)
    location = upload(client, IMPORT_CSV.encode()).headers["Location"]
    record = db.session.scalar(select(SubscriberImport))
    record.attempts = import_jobs.MAX_ATTEMPTS + 1  # given up: it failed too often
    db.session.commit()
    run_jobs(app)
    page = english(client, location)
    assert "The import did not complete: The import could not be finished" in page
    czech = client.get(f"{location}?lang=cs").get_data(as_text=True)
    assert "Import se neprovedl celý: Import se nepodařilo dokončit" in czech
    assert "nepodařil se" in czech


def test_every_stored_import_message_reads_in_english(app):
    """Each message a worker stores in Czech (stored_messages.N_) comes back in English."""
    samples = {"address": "'x'", "line": "7", "institution": "'kostel'"}
    messages = sorted(stored_messages._PLAIN) + [m for _, m in stored_messages._PATTERNS]
    assert len(messages) >= 15
    with app.test_request_context("/admin/?lang=en"):
        for message in messages:
            stored = message % samples if "%(" in message else message
            english_text = stored_messages.shown(stored)
            assert english_text != stored and untranslated(english_text) == [], message
            if "%(" in message:
                assert any(value in english_text for value in samples.values())
    with app.test_request_context("/admin/"):
        refresh()
        assert stored_messages.shown("opakuje adresu z řádku 3") == "opakuje adresu z řádku 3"
        assert stored_messages.shown("something else") == "something else"


def test_users_page_in_english_with_its_errors_and_flashes(client, accounts):
    log_in(client, accounts.admin.email)
    page = english(client, "/admin/users")
    assert "<h1>Accounts</h1>" in page and "3 accounts" in page
    assert "group coordinator" in page and "Failed sign-ins in 24 h" in page
    assert "Create account" in page and "never" in page

    def create(**fields):
        data = {
            "email": "nova@socialnibydleni.example",
            "role": "editor",
            "password": "dlouhe-heslo-42",
            "password_again": "dlouhe-heslo-42",
            "csrf_token": csrf_token_of(client, "/admin/users"),
            **fields,
        }
        return client.post("/admin/users", data=data)

    mismatch = create(password_again="jine-dlouhe-heslo")
    lonely = create(role="coordinator")
    for response, message in (
        (mismatch, "The passwords do not match."),
        (lonely, "A coordinator must be assigned at least one group."),
        (create(password=""), "Please enter a password for the new account."),
    ):
        assert response.status_code == 422
        page = response.get_data(as_text=True)
        assert message in page, message
        assert untranslated(visible_text(page), *ADMIN_DATA) == []

    created = client.get(create().headers["Location"]).get_data(as_text=True)
    assert "The account nova@socialnibydleni.example has been created." in created
    user = db.session.scalar(select(User).filter_by(email="nova@socialnibydleni.example"))
    toggle = f"/admin/users/{user.id}/active"
    token = csrf_token_of(client, "/admin/users")
    off = client.post(toggle, data={"csrf_token": token}, follow_redirects=True)
    assert "The account nova@socialnibydleni.example is disabled." in off.text
    on = client.post(toggle, data={"csrf_token": token}, follow_redirects=True)
    assert "The account nova@socialnibydleni.example is enabled again." in on.text
    own = f"/admin/users/{accounts.admin.id}/active"
    mine = client.post(own, data={"csrf_token": token}, follow_redirects=True)
    assert "You cannot disable your own account." in mine.text
    assert untranslated(visible_text(mine.text), *ADMIN_DATA) == []


def test_users_page_stays_czech(client, accounts):
    log_in(client, accounts.admin.email)
    page = client.get("/admin/users").get_data(as_text=True)
    assert "<h1>Účty</h1>" in page and "3 účty" in page and "koordinátor skupin" in page
    token = csrf_token_of(client, "/admin/users")
    mine = client.post(
        f"/admin/users/{accounts.admin.id}/active",
        data={"csrf_token": token},
        follow_redirects=True,
    )
    assert "Vlastní účet vypnout nelze." in mine.text


def test_stored_consent_text_in_english(client, accounts):
    client.get("/privacy")
    text = db.session.scalar(select(ConsentText))
    log_in(client, accounts.editor.email)
    response = client.get(f"/admin/texts/{text.id}?lang=en")
    page = response.get_data(as_text=True)
    assert "<h1>Privacy policy, version 1</h1>" in page
    assert "The exact wording, as it was shown and stored." in page
    assert '<pre class="wrap" translate="no">' in page  # the text: data, shown as stored
    assert untranslated(visible_text(page), *ADMIN_DATA) == []
    czech = client.get(f"/admin/texts/{text.id}?lang=cs").get_data(as_text=True)
    assert "Zásady zpracování osobních údajů, verze 1" in czech
