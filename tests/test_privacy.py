"""Versioned texts (service/consent.py) and the privacy notice's pages (service/privacy.py)."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from service import consent
from service.extensions import db
from service.models import ConsentEvent, ConsentText, MailingList
from tests.conftest import links_in, log_in, process_signups, run_jobs

JOIN = {
    "email": "petra@ostrava.example",
    "name": "Petra Svobodová",
    "organization": "Charita Ostrava",
    "institution": "nno",
    "function": "sociální pracovnice",
}


def shown_hash(page: str) -> str:
    return re.search(r'name="consent" value="([0-9a-f]{64})"', page).group(1)


def open_group(app) -> None:
    group = db.session.scalar(select(MailingList).filter_by(slug="ostrava-psb"))
    group.visibility = "public"
    db.session.commit()


def test_privacy_notice_is_a_real_notice_with_version_and_date(client, app):
    page = client.get("/privacy").get_data(as_text=True)
    for part in (
        "Zásady zpracování osobních údajů",
        "čl. 6 odst. 1 písm. a)",
        "Úřad pro ochranu osobních údajů",
        "30 dní po odeslání",  # PENDING_PURGE_DAYS
        "180 dní po odeslání",  # DELIVERY_DETAIL_DAYS
        "ještě 3 roky od posledního záznamu",  # CONSENT_EVIDENCE_DAYS
        "Verze 1 ze dne",
    ):
        assert part in page, part
    assert "<h1>" in page and "{{" not in page and "{%" not in page


def test_retention_settings_change_the_text_and_make_a_new_version(client, app):
    client.get("/privacy")
    app.config.update(PENDING_PURGE_DAYS=1, DELIVERY_DETAIL_DAYS=0, CONSENT_EVIDENCE_DAYS=730)
    app.config["PRIVACY_CONTROLLER"] = "Ministerstvo práce a sociálních věcí, Na Poříčním právu 1"
    page = client.get("/privacy").get_data(as_text=True)
    assert "1 den po odeslání" in page
    assert "ještě 2 roky od posledního" in page
    assert "po dobu odběru nebo členství" in page
    assert "Ministerstvo práce a sociálních věcí" in page
    assert "Verze 2 ze dne" in page
    older = client.get("/privacy/1").get_data(as_text=True)
    assert "starší znění" in older and "30 dní po odeslání" in older
    assert db.session.scalar(select(func.count()).select_from(ConsentText)) == 2


def test_unknown_version_is_a_czech_404(client, app):
    response = client.get("/privacy/7")
    assert response.status_code == 404
    assert "Stránka nebyla nalezena." in response.get_data(as_text=True)


def test_versions_are_numbered_per_kind(app, client):
    with app.test_request_context():
        texts = [consent.current_text(kind) for kind in ("consent", "group_consent", "privacy")]
    assert [(t.kind, t.version) for t in texts] == [
        ("consent", 1),
        ("group_consent", 1),
        ("privacy", 1),
    ]
    with app.test_request_context():
        assert consent.current_consent_text().id == texts[0].id  # the same text, stored once


def test_signup_records_the_consent_text_shown_and_the_privacy_notice(client, app):
    form = client.get("/subscribe").get_data(as_text=True)
    client.post("/subscribe", data={"email": "jana@seznam.cz", "consent": shown_hash(form)})
    process_signups()
    event = db.session.scalar(select(ConsentEvent).filter_by(action="signup"))
    assert event.consent_text.kind == "consent"
    assert event.consent_text.sha256 == shown_hash(form)
    assert event.privacy_text.kind == "privacy"
    assert event.privacy_text.version == 1


def test_group_join_records_the_group_consent_text_it_showed(client, app):
    open_group(app)
    page = client.get("/groups/ostrava-psb").get_data(as_text=True)
    assert "organizaci, typ instituce a funkci" in page
    assert 'href="/privacy"' in page
    client.post("/groups/ostrava-psb/join", data={**JOIN, "consent": shown_hash(page)})
    event = db.session.scalar(select(ConsentEvent).filter_by(action="join_request"))
    assert event.consent_text.kind == "group_consent"
    assert event.consent_text.sha256 == shown_hash(page)
    assert event.privacy_text.kind == "privacy"


def test_a_newsletter_hash_does_not_stand_for_group_consent(client, app):
    open_group(app)
    newsletter_hash = shown_hash(client.get("/subscribe").get_data(as_text=True))
    client.post("/groups/ostrava-psb/join", data={**JOIN, "consent": newsletter_hash})
    event = db.session.scalar(select(ConsentEvent).filter_by(action="join_request"))
    assert event.consent_text.kind == "group_consent"


def test_every_mail_links_the_privacy_notice(client, app, outbox):
    client.post("/subscribe", json={"email": "jana@seznam.cz"})
    process_signups()
    run_jobs(app)
    mail = outbox.mails[0]
    assert "http://zpravodaj.test/privacy" in links_in(mail)
    assert 'href="http://zpravodaj.test/privacy"' in mail.message.get_body(("html",)).get_content()


def test_embedded_form_links_the_privacy_notice(client, app):
    assert 'href="/privacy"' in client.get("/embed/subscribe").get_data(as_text=True)


def test_admin_sees_a_stored_text_by_id_after_signing_in(client, app, accounts):
    client.get("/privacy")
    text = db.session.scalar(select(ConsentText))
    assert client.get(f"/admin/texts/{text.id}").status_code == 302  # to the login page
    log_in(client, accounts.editor.email)
    page = client.get(f"/admin/texts/{text.id}").get_data(as_text=True)
    assert text.sha256 in page
    assert "Zásady zpracování osobních údajů, verze 1" in page
    assert client.get("/admin/texts/999").status_code == 404
