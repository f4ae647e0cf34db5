"""Preferences, own-data export and erasure through the signed link."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from service.addresses import address_hash
from service.extensions import db
from service.models import (
    ConsentEvent,
    MailingList,
    OutgoingMail,
    Subscriber,
    Subscription,
    Suppression,
)
from tests.conftest import link_to, privacy_link, run_jobs

from .snapshots import database_snapshot
from .test_double_opt_in import sign_up
from .test_unsubscribe import statuses


@pytest.fixture
def confirmation(client, app, outbox):
    sign_up(client, name="Jana")
    run_jobs(app)
    mail = outbox.mails[0]
    client.post(link_to(mail, "/confirm/"))
    return mail


def test_preferences_page_shows_lists_and_changes_nothing(client, confirmation):
    path = link_to(confirmation, "/preferences/")
    before = database_snapshot()
    page = client.get(path).get_data(as_text=True)
    assert "Nastavení odběru" in page
    assert "jana.novakova@seznam.cz" in page
    assert 'value="zpravodaj" checked' in page
    assert 'value="novinky">' in page
    assert database_snapshot() == before


def test_preferences_switch_lists_and_name(client, confirmation):
    path = link_to(confirmation, "/preferences/")
    response = client.post(path, data={"list": ["novinky"], "name": "Jana Nováková"})
    assert response.status_code == 200
    assert "Nastavení jsme uložili." in response.get_data(as_text=True)
    assert statuses() == {"zpravodaj": "unsubscribed", "novinky": "confirmed"}
    assert db.session.scalar(select(Subscriber.name)) == "Jana Nováková"
    actions = db.session.scalars(select(ConsentEvent.action).order_by(ConsentEvent.id)).all()
    assert sorted(actions[-2:]) == ["preferences_add", "preferences_remove"]


def test_preferences_refuse_a_bad_name(client, confirmation):
    path = link_to(confirmation, "/preferences/")
    response = client.post(path, data={"list": ["zpravodaj"], "name": "x" * 201})
    assert response.status_code == 422
    assert "Jméno je příliš dlouhé" in response.get_data(as_text=True)


def test_export_holds_everything_about_the_person(client, app, outbox, confirmation):
    path = privacy_link(client, app, outbox, link_to(confirmation, "/preferences/")) + "/export"
    before = database_snapshot()
    page = client.get(path)
    assert "Stáhnout moje údaje (JSON)" in page.get_data(as_text=True)
    response = client.post(path)
    assert database_snapshot() == before
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert "attachment" in response.headers["Content-Disposition"]
    data = response.json
    assert data["email"] == "jana.novakova@seznam.cz"
    assert data["name"] == "Jana"
    assert data["subscriptions"][0]["list"] == "zpravodaj"
    assert data["subscriptions"][0]["status"] == "confirmed"
    assert [e["action"] for e in data["consent_events"]] == ["signup", "confirm"]
    assert data["consent_events"][0]["ip"] == "192.0.2.10"
    assert "Odesláním formuláře" in data["consent_events"][0]["consent_text"]["text"]
    assert data["mails"][0]["kind"] == "confirmation"
    assert data["mails"][0]["status"] == "sent"
    assert data["mails"][-1]["kind"] == "privacy_link"


def test_erase_get_asks_and_changes_nothing(client, app, outbox, confirmation):
    path = privacy_link(client, app, outbox, link_to(confirmation, "/preferences/")) + "/erase"
    before = database_snapshot()
    page = client.get(path)
    assert page.status_code == 200
    assert "Smazat mé údaje" in page.get_data(as_text=True)
    assert database_snapshot() == before


def test_erase_leaves_only_the_keyed_hash(client, app, outbox, confirmation):
    path = privacy_link(client, app, outbox, link_to(confirmation, "/preferences/")) + "/erase"
    response = client.post(path)
    assert response.status_code == 200
    assert "Vaše údaje jsme smazali" in response.get_data(as_text=True)
    for model in (Subscriber, Subscription, ConsentEvent, OutgoingMail):
        assert db.session.scalar(select(func.count()).select_from(model)) == 0
    suppression = db.session.scalar(select(Suppression))
    assert suppression.reason == "erased"
    assert suppression.address_hash == address_hash("jana.novakova@seznam.cz")
    assert "jana" not in suppression.address_hash
    # Every link of the old mail now says the data is gone, never a 500.
    assert client.get(link_to(confirmation, "/preferences/")).status_code == 404
    one_click = client.post(
        link_to(confirmation, "/unsubscribe/"), data={"List-Unsubscribe": "One-Click"}
    )
    assert one_click.status_code == 200
    assert client.post(path).status_code == 200


def test_erased_address_can_return_only_by_fresh_double_opt_in(client, app, outbox, confirmation):
    short = privacy_link(client, app, outbox, link_to(confirmation, "/preferences/"))
    client.post(short + "/erase")
    sign_up(client)
    run_jobs(app)
    assert db.session.scalar(select(Subscription.status)) == "pending"
    assert db.session.scalar(select(func.count(Suppression.id))) == 1
    client.post(link_to(outbox.mails[-1], "/confirm/"))
    assert db.session.scalar(select(Subscription.status)) == "confirmed"
    assert db.session.scalar(select(func.count(Suppression.id))) == 0


def test_preferences_do_not_show_groups(client, confirmation):
    page = client.get(link_to(confirmation, "/preferences/")).get_data(as_text=True)
    assert db.session.scalar(select(MailingList).filter_by(kind="group")).name not in page
