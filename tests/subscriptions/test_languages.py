"""Czech and English for visitors and subscribers: pages, the language stored at sign-up, mails.

A subscriber's language is the page's they signed up on; every mail to them
is in it, and their personal pages too, until they change it on the
preferences page.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from service.clock import utcnow
from service.extensions import db
from service.groups import membership
from service.models import ConsentEvent, MailingList, Subscriber, Subscription
from service.subscriptions.reminders import send_due_reminders
from tests.conftest import link_to, privacy_link, process_signups, run_jobs
from tests.i18n_checks import untranslated, visible_text
from workers.schedule import SCHEDULE

PUBLIC_PAGES = [
    "/subscribe",
    "/embed/subscribe",
    "/archive/zpravodaj",
    "/groups/",
    "/groups/ostrava-psb",
    "/privacy",
]
# Names in the privacy notice that stay Czech in English too (proper names, an address).
PROPER_NAMES = ("Úřad pro ochranu osobních údajů", "Pplk. Sochora 27, 170 00 Praha 7")


def sign_up(client, query="", **extra):
    data = {"email": "jana@seznam.cz", "list": ["zpravodaj"], "list_choice": "1", **extra}
    response = client.post(f"/subscribe{query}", data=data)
    assert response.status_code == 202
    process_signups()  # the sign-up job's work (service/subscriptions/signup.py)
    return response


def mail_texts(mail) -> tuple[str, str, str]:
    message = mail.message
    return (
        str(message["Subject"]),
        message.get_body(("plain",)).get_content(),
        message.get_body(("html",)).get_content(),
    )


@pytest.mark.parametrize("path", PUBLIC_PAGES)
def test_public_pages_in_english_hold_no_czech(client, path):
    response = client.get(f"{path}?lang=en")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert '<html lang="en">' in page
    # List and group names are data (their own language), not interface.
    left = untranslated(
        visible_text(page),
        "Novinky",
        "Čeština",
        "Pracovní skupina sociálního bydlení",
        *PROPER_NAMES,
    )
    assert not left, left


def test_the_embedded_form_takes_lang_en_and_its_answer_stays_english(client):
    page = client.get("/embed/subscribe?lang=en").get_data(as_text=True)
    assert "Subscribe" in page and 'name="lang" value="en"' in page
    answer = client.post(
        "/subscribe?lang=en", data={"email": "abc", "form": "embed", "lang": "en"}
    ).get_data(as_text=True)
    assert "Invalid e-mail address." in answer and 'class="embed"' in answer


def test_czech_requests_keep_the_exact_contract_texts(client):
    answer = client.post("/subscribe", json={"email": "abc"})
    assert answer.json["errors"] == {"email": "Neplatný e-mail."}
    english = client.post("/subscribe?lang=en", json={"email": "abc"})
    assert english.json == {
        "errors": {"email": "Invalid e-mail address."},
        "codes": {"email": "invalid_email"},
    }


def test_a_sign_up_in_english_gets_english_mails_and_pages(client, app, outbox):
    sign_up(client, "?lang=en", lang="en")
    assert db.session.scalar(select(Subscriber.language)) == "en"
    run_jobs(app)
    subject, text, html = mail_texts(outbox.mails[0])
    assert subject == "Please confirm your subscription: Zpravodaj sociálního bydlení"
    assert "The link is valid for 7 days." in text
    assert '<html lang="en">' in html
    for part in (text, visible_text(html)):
        assert not untranslated(part, "jana@seznam.cz"), untranslated(part)

    # A fresh browser (no cookie, Czech Accept-Language) still reads their pages in English.
    fresh = app.test_client()
    confirm = link_to(outbox.mails[0], "/confirm/")
    page = fresh.get(confirm, headers={"Accept-Language": "cs"}).get_data(as_text=True)
    assert "Confirm subscription" in page
    done = fresh.post(confirm).get_data(as_text=True)
    assert "Subscription confirmed" in done
    run_jobs(app)
    welcome_subject, welcome_text, _ = mail_texts(outbox.mails[1])
    assert welcome_subject == "Subscription confirmed: Zpravodaj sociálního bydlení"
    assert not untranslated(welcome_text, "jana@seznam.cz"), untranslated(welcome_text)


def test_czech_mails_stay_czech(client, app, outbox):
    sign_up(client)
    run_jobs(app)
    subject, text, _ = mail_texts(outbox.mails[0])
    assert subject == "Potvrďte prosím odběr: Zpravodaj sociálního bydlení"
    assert "Odkaz platí 7 dní." in text


def test_the_preferences_page_changes_the_language_of_mails(client, app, outbox):
    sign_up(client)
    run_jobs(app)
    client.post(link_to(outbox.mails[0], "/confirm/"))
    run_jobs(app)
    preferences = link_to(outbox.mails[1], "/preferences/")
    page = client.get(preferences).get_data(as_text=True)
    assert '<option value="en" lang="en">English</option>' in page
    saved = client.post(preferences, data={"list": "zpravodaj", "name": "", "language": "en"})
    assert saved.status_code == 200
    assert "Your settings have been saved." in saved.get_data(as_text=True)
    assert db.session.scalar(select(Subscriber.language)) == "en"
    # Every later mail in English: here the export/erase link.
    privacy_link(client, app, outbox, preferences)
    subject, text, _ = mail_texts(outbox.mails[-1])
    assert subject == "Link to export or erase your data"
    assert "valid for 1 hour" in text


def test_pages_link_to_the_other_language(client):
    page = client.get("/subscribe?lang=en").get_data(as_text=True)
    assert 'hreflang="cs"' in page  # the way back to Czech


# --- the reminder of an unconfirmed sign-up ----------------------------------


def _age_sign_up(hours: float) -> None:
    db.session.execute(update(Subscription).values(subscribed_at=utcnow() - timedelta(hours=hours)))
    db.session.commit()


def _reminders() -> list[ConsentEvent]:
    return list(db.session.scalars(select(ConsentEvent).filter_by(action="confirm_reminder")))


def test_one_reminder_after_48_hours_and_never_a_second(client, app, outbox):
    sign_up(client, "?lang=en", lang="en")
    run_jobs(app)
    _age_sign_up(47)
    assert send_due_reminders() == {}
    _age_sign_up(49)
    assert send_due_reminders() == {"confirm_reminders": 1}
    run_jobs(app)
    assert len(outbox.mails) == 2
    subject, text, _ = mail_texts(outbox.mails[1])
    assert subject == "Reminder: please confirm your subscription: Zpravodaj sociálního bydlení"
    assert "still waiting for confirmation" in text
    [event] = _reminders()
    assert event.message_id == outbox.mails[1].message["Message-ID"]
    # Scanner-safe: the link opens a page with a button; fetching it confirms nothing.
    confirm = link_to(outbox.mails[1], "/confirm/")
    assert client.get(confirm).status_code == 200
    assert db.session.scalar(select(Subscription.status)) == "pending"

    assert send_due_reminders() == {}
    _age_sign_up(60)
    assert send_due_reminders() == {}
    run_jobs(app)
    assert len(outbox.mails) == 2


def test_no_reminder_after_confirmation(client, app, outbox):
    sign_up(client)
    run_jobs(app)
    client.post(link_to(outbox.mails[0], "/confirm/"))
    _age_sign_up(49)
    assert send_due_reminders() == {}
    assert _reminders() == []


def test_no_reminder_once_the_link_expired(client, app, outbox):
    sign_up(client)
    run_jobs(app)
    _age_sign_up(24 * app.config["CONFIRM_TOKEN_MAX_AGE_DAYS"] + 1)
    assert send_due_reminders() == {}
    assert _reminders() == []


def test_the_reminder_runs_from_the_workers_schedule():
    assert "confirm-reminders" in {work.name for work in SCHEDULE}


def test_a_group_invitation_to_an_english_subscriber_is_in_english(client, app, outbox):
    sign_up(client, "?lang=en", lang="en")
    group = db.session.scalar(select(MailingList).filter_by(slug="ostrava-psb"))
    with app.test_request_context():
        membership.invite(group, "jana@seznam.cz", "", "ÚP Ostrava", "urad-prace", "", None)
    db.session.commit()
    run_jobs(app)
    subject, text, html = mail_texts(outbox.mails[-1])
    assert subject == "Invitation to the group: Pracovní skupina sociálního bydlení"
    assert "we invite you to join Pracovní skupina sociálního bydlení" in text
    for part in (text, visible_text(html)):
        left = untranslated(part, "jana@seznam.cz", "Pracovní skupina sociálního bydlení")
        assert not left, left


def test_a_czech_group_invitation_never_says_group_twice(client, app, outbox):
    group = db.session.scalar(select(MailingList).filter_by(slug="ostrava-psb"))
    with app.test_request_context():
        membership.invite(group, "jana@seznam.cz", "", "ÚP Ostrava", "urad-prace", "", None)
    db.session.commit()
    run_jobs(app)
    _, text, _ = mail_texts(outbox.mails[-1])
    assert "zveme vás do Pracovní skupiny sociálního bydlení" in text
    assert "skupiny Pracovní skupina" not in text
