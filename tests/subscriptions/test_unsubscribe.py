"""Leaving: the link in every mail, and RFC 8058 one-click from the mail client."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from service import tokens
from service.extensions import db
from service.models import ConsentEvent, MailingList, Subscriber, Subscription
from tests.conftest import link_to, run_jobs

from .snapshots import database_snapshot
from .test_double_opt_in import sign_up


@pytest.fixture
def confirmed(client, app, outbox):
    """A subscriber confirmed on both newsletters; returns the confirmation mail."""
    sign_up(client, list=["zpravodaj", "novinky"])
    run_jobs(app)
    client.post(link_to(outbox.mails[0], "/confirm/"))
    return outbox.mails[0]


def statuses() -> dict[str, str]:
    rows = db.session.execute(
        select(MailingList.slug, Subscription.status).join(Subscription.mailing_list)
    )
    return dict(rows.all())


def test_get_shows_a_button_and_changes_nothing(client, confirmed):
    path = link_to(confirmed, "/unsubscribe/")
    before = database_snapshot()
    page = client.get(path)
    assert page.status_code == 200
    assert "Odhlásit se" in page.get_data(as_text=True)
    assert database_snapshot() == before


def test_post_unsubscribes_at_once(client, confirmed):
    response = client.post(link_to(confirmed, "/unsubscribe/"))
    assert response.status_code == 200
    assert "Jste odhlášeni" in response.get_data(as_text=True)
    assert statuses() == {"zpravodaj": "unsubscribed", "novinky": "unsubscribed"}
    event = db.session.scalars(select(ConsentEvent).filter_by(action="unsubscribe")).first()
    assert event.channel == "link"


def test_list_token_leaves_only_that_list(client, app, confirmed):
    subscriber = db.session.scalar(select(Subscriber))
    token = tokens.unsubscribe_token(subscriber, "novinky")
    assert "Novinky" in client.get(f"/unsubscribe/{token}").get_data(as_text=True)
    client.post(f"/unsubscribe/{token}")
    assert statuses() == {"zpravodaj": "confirmed", "novinky": "unsubscribed"}


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_unsubscribe_rfc_8058(app, confirmed, encoding):
    path = link_to(confirmed, "/unsubscribe/")
    client = app.test_client(use_cookies=False)
    if encoding == "urlencoded":
        response = client.post(
            path,
            data="List-Unsubscribe=One-Click",
            content_type="application/x-www-form-urlencoded",
        )
    else:
        response = client.post(
            path, data={"List-Unsubscribe": "One-Click"}, content_type="multipart/form-data"
        )
    assert response.status_code == 200
    assert "Location" not in response.headers
    assert "Set-Cookie" not in response.headers
    assert statuses() == {"zpravodaj": "unsubscribed", "novinky": "unsubscribed"}
    channels = db.session.scalars(select(ConsentEvent.channel).filter_by(action="unsubscribe"))
    assert set(channels) == {"one-click"}


def test_unsubscribing_twice_is_harmless(client, confirmed):
    path = link_to(confirmed, "/unsubscribe/")
    assert client.post(path).status_code == 200
    assert client.post(path).status_code == 200
    assert db.session.query(ConsentEvent).filter_by(action="unsubscribe").count() == 2  # 2 lists


def test_tampered_unsubscribe_token_is_400(client, confirmed):
    assert client.post("/unsubscribe/not-a-token").status_code == 400
    assert client.get("/unsubscribe/not-a-token").status_code == 400
    assert statuses() == {"zpravodaj": "confirmed", "novinky": "confirmed"}
