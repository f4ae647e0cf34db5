"""Export and erasure need a fresh link mailed to the address (issue 11, finding 2).

The review forwarded a newsletter: its preferences link (in every mail, never
expiring) handed the recipient the subscriber's full JSON export and erasure.
Here that recipient tries again; the long-lived link still manages lists, but
export and erasure take only the short-lived link mailed on request.
"""

from __future__ import annotations

import time

import pytest
from itsdangerous.timed import TimestampSigner
from sqlalchemy import func, select

from service.extensions import db
from service.models import OutgoingMail, Subscriber
from service.subscriptions.actions import PRIVACY_LINKS_PER_HOUR
from tests.conftest import link_to, privacy_link, run_jobs

from .snapshots import database_snapshot
from .test_double_opt_in import sign_up

OWNER = "jana.novakova@seznam.cz"
BUTTON = "Poslat odkaz pro export a výmaz údajů"


@pytest.fixture
def forwarded(client, app, outbox) -> str:
    """The preferences path from a mail the subscriber forwarded to someone else."""
    sign_up(client, name="Jana")
    run_jobs(app)
    client.post(link_to(outbox.mails[0], "/confirm/"))
    run_jobs(app)
    return link_to(outbox.mails[-1], "/preferences/")


@pytest.fixture
def tokens_made_at(monkeypatch):
    """Sign the next tokens as if made `seconds` ago."""

    def shift(seconds: int) -> None:
        now = int(time.time())
        monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: now - seconds)

    return shift


def assert_no_data_handed_out(response) -> None:
    assert response.mimetype == "text/html"
    assert "attachment" not in response.headers.get("Content-Disposition", "")
    assert "192.0.2.10" not in response.get_data(as_text=True)  # the sign-up IP


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("action", ["export", "erase"])
def test_a_forwarded_preferences_link_neither_exports_nor_erases(client, forwarded, method, action):
    before = database_snapshot()
    response = client.open(f"{forwarded}/{action}", method=method)
    assert response.status_code == 403
    assert_no_data_handed_out(response)
    page = response.get_data(as_text=True)
    assert BUTTON in page
    assert f"{forwarded}/privacy-link" in page
    assert database_snapshot() == before
    assert db.session.scalar(select(Subscriber.email)) == OWNER


def test_a_400_day_old_preferences_link_still_manages_lists_but_exports_nothing(
    client, forwarded, tokens_made_at
):
    from service import tokens

    tokens_made_at(400 * 24 * 3600)
    old = f"/preferences/{tokens.preferences_token(db.session.scalar(select(Subscriber)))}"
    assert client.get(old).status_code == 200
    response = client.post(old + "/export")
    assert response.status_code == 403
    assert_no_data_handed_out(response)


def test_the_button_mails_a_short_lived_link_to_the_address_only(client, app, outbox, forwarded):
    page = client.get(forwarded).get_data(as_text=True)
    assert BUTTON in page
    outbox.catcher.clear()
    response = client.post(forwarded + "/privacy-link")
    assert response.status_code == 202
    assert "Zkontrolujte svou e-mailovou schránku" in response.get_data(as_text=True)
    # Queued for the worker, not sent by the web process.
    assert outbox.mails == []
    assert db.session.scalar(select(OutgoingMail.status).filter_by(kind="privacy_link")) == "queued"
    run_jobs(app)
    [mail] = outbox.mails
    assert mail.rcpt_tos == [OWNER]
    assert mail.message["Subject"] == "Odkaz pro export a výmaz vašich údajů"
    text = mail.message.get_body(("plain",)).get_content()
    assert "Odkazy platí 1 hodinu." in text
    short = link_to(mail, "/preferences/").rpartition("/")[0]
    assert short != forwarded

    # GET shows and changes nothing; POST hands out the JSON.
    before = database_snapshot()
    shown = client.get(short + "/export")
    assert shown.status_code == 200
    assert_no_data_handed_out(shown)
    assert "Stáhnout moje údaje (JSON)" in shown.get_data(as_text=True)
    assert database_snapshot() == before
    export = client.post(short + "/export")
    assert export.status_code == 200
    assert export.mimetype == "application/json"
    assert export.headers["Cache-Control"] == "no-store"
    assert export.get_json()["email"] == OWNER

    # The short link is no preferences link (its own salt).
    assert client.get(short).status_code == 400

    assert client.get(short + "/erase").status_code == 200
    assert db.session.scalar(select(func.count(Subscriber.id))) == 1
    assert client.post(short + "/erase").status_code == 200
    assert db.session.scalar(select(func.count(Subscriber.id))) == 0


def test_an_expired_link_offers_a_new_one_in_czech(client, app, outbox, forwarded, tokens_made_at):
    from service import tokens

    subscriber = db.session.scalar(select(Subscriber))
    tokens_made_at(app.config["PRIVACY_LINK_MAX_AGE"] + 1)
    expired = f"/preferences/{tokens.privacy_token(subscriber)}"
    tokens_made_at(0)
    for method, action in [("GET", "export"), ("POST", "export"), ("POST", "erase")]:
        response = client.open(f"{expired}/{action}", method=method)
        assert response.status_code == 410, (method, action)
        assert_no_data_handed_out(response)
        page = response.get_data(as_text=True)
        assert "Platnost odkazu vypršela" in page
        assert f"{expired}/privacy-link" in page
    assert db.session.scalar(select(func.count(Subscriber.id))) == 1

    fresh = privacy_link(client, app, outbox, expired)
    assert client.post(fresh + "/export").get_json()["email"] == OWNER


def test_the_lifetime_follows_the_setting(client, app, outbox, forwarded, tokens_made_at):
    app.config["PRIVACY_LINK_MAX_AGE"] = 600
    short = privacy_link(client, app, outbox, forwarded)
    assert "Odkazy platí 10 minut." in outbox.mails[-1].message.get_body(("plain",)).get_content()
    tokens_made_at(-601)  # "now" is 601 s after the link was signed
    assert client.get(short + "/export").status_code == 410


def test_the_button_cannot_flood_the_owners_mailbox(client, app, outbox, forwarded):
    outbox.catcher.clear()
    for _ in range(PRIVACY_LINKS_PER_HOUR):
        assert client.post(forwarded + "/privacy-link").status_code == 202
    refused = client.post(forwarded + "/privacy-link")
    assert refused.status_code == 429
    assert "Odkaz jsme vám už poslali" in refused.get_data(as_text=True)
    run_jobs(app)
    assert len(outbox.mails) == PRIVACY_LINKS_PER_HOUR


def test_a_forged_link_is_refused(client):
    assert client.post("/preferences/padelek/privacy-link").status_code == 400
    assert client.post("/preferences/padelek/export").status_code == 400
