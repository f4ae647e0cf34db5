"""Double opt-in end to end: form, confirmation mail through a real SMTP server, link."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from service import tokens
from service.bounces.verp import envelope_sender
from service.extensions import db
from service.models import ConsentEvent, ConsentText, OutgoingMail, Subscriber, Subscription
from tests.conftest import BASE_URL, link_to, links_in, process_signups, run_jobs

from .snapshots import database_snapshot


def sign_up(client, email="jana.novakova@seznam.cz", **extra):
    data = {"email": email, "list": ["zpravodaj"], "list_choice": "1", **extra}
    response = client.post(
        "/subscribe",
        data=data,
        headers={
            "User-Agent": "Mozilla/5.0 (test)",
            "Referer": "https://www.socialnibydleni.example/o-nas",
        },
        environ_base={"REMOTE_ADDR": "192.0.2.10"},
    )
    assert response.status_code == 202
    process_signups()  # the sign-up job's work, done here (tests/conftest.py)
    return response


def test_confirmation_mail_is_sent_by_a_worker(client, app, outbox):
    sign_up(client)
    assert outbox.mails == []  # the web process never talks SMTP
    run_jobs(app)
    assert len(outbox.mails) == 1
    mail = outbox.mails[0]
    assert mail.rcpt_tos == ["jana.novakova@seznam.cz"]
    # The return path is the mail's own VERP address on the sender's domain.
    mail_id = db.session.scalar(select(OutgoingMail.id))
    assert mail.mail_from == envelope_sender("m", mail_id)
    assert mail.mail_from.startswith(f"bounces+m{mail_id}-")
    assert mail.mail_from.endswith("@socialnibydleni.example")
    assert db.session.scalar(select(OutgoingMail.status)) == "sent"


def test_confirmation_mail_is_well_formed(client, app, outbox):
    sign_up(client, name="Jana Nováková")
    run_jobs(app)
    mail = outbox.mails[0]
    message = mail.message
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert message["Message-ID"].endswith("@socialnibydleni.example>")
    assert message["Date"]
    assert message["Subject"] == "Potvrďte prosím odběr: Zpravodaj sociálního bydlení"
    # Only the address: the name was typed by whoever filled in the form.
    assert str(message["To"]) == "jana.novakova@seznam.cz"
    assert message["From"].addresses[0].addr_spec == "zpravodaj@socialnibydleni.example"
    # Every line ends in CRLF, none is longer than SMTP allows.
    lines = mail.data.split(b"\r\n")
    assert all(b"\n" not in line and b"\r" not in line for line in lines)
    assert all(len(line) <= 998 for line in lines)

    text = parts[0].get_content()
    html = parts[1].get_content()
    assert "Dobrý den" in text and "Dobrý den" in html
    assert 'lang="cs"' in html
    # Same content: every link of the text part is in the HTML part too.
    text_links = links_in(mail)
    assert len(text_links) == 4  # confirm, preferences, unsubscribe, privacy notice
    for url in text_links:
        assert url in html
    assert "Odkaz platí 7 dní." in text
    assert "Odkaz platí 7 dní." in html
    assert all(url.startswith("http://zpravodaj.test/") for url in text_links)


def test_links_use_base_url_not_the_request_host(client, app, outbox):
    client.post("/subscribe", data={"email": "jana@seznam.cz"}, headers={"Host": "evil.example"})
    run_jobs(app)
    assert all(url.startswith("http://zpravodaj.test/") for url in links_in(outbox.mails[0]))


def test_confirm_link_get_changes_nothing_then_post_confirms(client, app, outbox):
    sign_up(client)
    run_jobs(app)
    confirm_path = link_to(outbox.mails[0], "/confirm/")

    before = database_snapshot()
    page = client.get(confirm_path)
    assert page.status_code == 200
    assert "Potvrdit odběr" in page.get_data(as_text=True)
    assert database_snapshot() == before

    done = client.post(
        confirm_path,
        headers={"User-Agent": "Confirming browser"},
        environ_base={"REMOTE_ADDR": "198.51.100.7"},
    )
    assert done.status_code == 200
    page = done.get_data(as_text=True)
    assert "Odběr je potvrzen" in page
    assert "/preferences/" in page and "/unsubscribe/" in page
    subscription = db.session.scalar(select(Subscription))
    assert subscription.status == "confirmed"
    assert subscription.confirmed_at is not None

    again = client.post(confirm_path)
    assert again.status_code == 200
    assert db.session.scalars(select(ConsentEvent.action)).all() == ["signup", "confirm"]


def test_consent_is_recorded_with_everything_design_asks(client, app, outbox):
    sign_up(client)
    run_jobs(app)
    client.post(
        link_to(outbox.mails[0], "/confirm/"),
        headers={"User-Agent": "Confirming browser"},
        environ_base={"REMOTE_ADDR": "198.51.100.7"},
    )
    signup_event, confirm_event = db.session.scalars(select(ConsentEvent).order_by(ConsentEvent.id))
    assert signup_event.action == "signup"
    assert signup_event.ip == "192.0.2.10"
    assert signup_event.user_agent == "Mozilla/5.0 (test)"
    assert signup_event.channel == "page"
    assert signup_event.origin == "https://www.socialnibydleni.example"
    assert signup_event.mailing_list.slug == "zpravodaj"
    assert signup_event.message_id == outbox.mails[0].message["Message-ID"]
    consent_text = signup_event.consent_text
    assert consent_text.version == 1
    assert "Odesláním formuláře souhlasíte" in consent_text.text
    assert re.fullmatch(r"[0-9a-f]{64}", consent_text.sha256)
    assert confirm_event.action == "confirm"
    assert confirm_event.ip == "198.51.100.7"
    assert confirm_event.user_agent == "Confirming browser"
    assert confirm_event.occurred_at >= signup_event.occurred_at


def test_consent_text_shown_is_the_one_recorded(client, app):
    form = client.get("/embed/subscribe").get_data(as_text=True)
    shown_hash = re.search(r'name="consent" value="([0-9a-f]{64})"', form).group(1)
    sign_up(client, form="embed")
    event = db.session.scalar(select(ConsentEvent))
    assert event.consent_text.sha256 == shown_hash
    assert event.channel == "embed"
    assert db.session.scalar(select(ConsentText.text)) in form


def test_consent_events_are_append_only(client, app):
    from service.models import AppendOnlyViolation

    sign_up(client)
    event = db.session.scalar(select(ConsentEvent))
    event.ip = "203.0.113.1"
    with pytest.raises(AppendOnlyViolation):
        db.session.commit()
    db.session.rollback()
    db.session.delete(db.session.scalar(select(ConsentEvent)))
    with pytest.raises(AppendOnlyViolation):
        db.session.commit()
    db.session.rollback()


@pytest.fixture
def link_clock(monkeypatch) -> dict[str, int]:
    """The time signed links carry and are checked against (itsdangerous), moved by hand."""
    from itsdangerous import TimestampSigner

    clock = {"now": 1_800_000_000}
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: clock["now"])
    return clock


def test_pending_address_signing_up_again_gets_a_fresh_link(client, app, outbox, link_clock):
    day = 24 * 3600
    assert app.config["CONFIRM_TOKEN_MAX_AGE_DAYS"] == 7
    sign_up(client)
    link_clock["now"] += 6 * day
    sign_up(client)
    run_jobs(app)
    assert len(outbox.mails) == 2
    first, second = (link_to(m, "/confirm/") for m in outbox.mails)
    assert first != second
    assert db.session.query(Subscription).count() == 1

    # Eight days after the first sign-up its link has expired; the fresh one still works.
    link_clock["now"] += 2 * day
    assert client.get(first).status_code == 410
    assert client.post(first).status_code == 410
    assert db.session.scalar(select(Subscription.status)) == "pending"
    assert client.post(second).status_code == 200
    assert db.session.scalar(select(Subscription.status)) == "confirmed"


def test_confirmed_address_signing_up_again_gets_a_short_note_not_a_second_subscription(
    client, app, outbox
):
    sign_up(client)
    run_jobs(app)
    client.post(link_to(outbox.mails[0], "/confirm/"))
    sign_up(client)
    run_jobs(app)
    assert len(outbox.mails) == 3  # confirmation, welcome, the note
    note = outbox.mails[2].message
    assert note["Subject"] == "Odběr už máte potvrzený"
    assert "/confirm/" not in note.get_body(("plain",)).get_content()
    assert db.session.scalars(select(Subscription.status)).all() == ["confirmed"]


def test_unsubscribed_address_can_sign_up_again_with_double_opt_in(client, app, outbox):
    sign_up(client)
    run_jobs(app)
    client.post(link_to(outbox.mails[0], "/confirm/"))
    client.post(link_to(outbox.mails[0], "/unsubscribe/"))
    sign_up(client)
    run_jobs(app)
    assert db.session.scalar(select(Subscription.status)) == "pending"
    client.post(link_to(outbox.mails[-1], "/confirm/"))
    assert db.session.scalar(select(Subscription.status)) == "confirmed"


def test_tampered_token_is_a_clear_400(client, app, outbox):
    sign_up(client)
    run_jobs(app)
    path = link_to(outbox.mails[0], "/confirm/")
    tampered = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    for response in (client.get(tampered), client.post(tampered)):
        assert response.status_code == 400
        assert "Tento odkaz není platný" in response.get_data(as_text=True)
    for garbage in ("/confirm/x", "/confirm/" + "a" * 500, "/confirm/..%2F..", "/confirm/%00"):
        assert client.get(garbage).status_code in (400, 404)


def test_token_of_another_purpose_is_refused(client, app):
    sign_up(client)
    subscriber = db.session.scalar(select(Subscriber))
    unsubscribe = tokens.unsubscribe_token(subscriber)
    assert client.post(f"/confirm/{unsubscribe}").status_code == 400
    assert db.session.scalar(select(Subscription.status)) == "pending"


def test_expired_token_offers_a_new_link(client, app, outbox):
    sign_up(client)
    run_jobs(app)
    path = link_to(outbox.mails[0], "/confirm/")
    app.config["CONFIRM_TOKEN_MAX_AGE_DAYS"] = -1  # every token is now too old
    page = client.get(path)
    assert page.status_code == 410
    body = page.get_data(as_text=True)
    assert "Platnost odkazu vypršela" in body
    assert client.post(path).status_code == 410
    assert db.session.scalar(select(Subscription.status)) == "pending"

    resend = re.search(r'action="([^"]+/resend)"', body).group(1)
    assert client.post(resend).status_code == 202
    run_jobs(app)
    assert len(outbox.mails) == 2
    app.config["CONFIRM_TOKEN_MAX_AGE_DAYS"] = 7
    assert client.post(link_to(outbox.mails[1], "/confirm/")).status_code == 200
    assert db.session.scalar(select(Subscription.status)) == "confirmed"


def test_key_rotation_keeps_old_links_working(client, app, outbox):
    sign_up(client)
    run_jobs(app)
    path = link_to(outbox.mails[0], "/confirm/")
    app.config["SECRET_KEY_FALLBACKS"] = [app.config["SECRET_KEY"]]
    app.config["SECRET_KEY"] = "a-brand-new-key"
    assert client.post(path).status_code == 200
    app.config["SECRET_KEY_FALLBACKS"] = []
    assert client.get(path).status_code == 400


def test_tokens_hold_no_address(client, app, outbox):
    sign_up(client, email="tajna.adresa@seznam.cz")
    run_jobs(app)
    import base64

    for url in links_in(outbox.mails[0]):
        payload = url.rsplit("/", 1)[1].split(".")[0]
        decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        assert b"tajna" not in decoded
        assert b"@" not in decoded


def test_idn_address_is_mailed_in_ascii(client, app, outbox):
    sign_up(client, email="petr@příklad.cz")
    run_jobs(app)
    assert outbox.mails[0].rcpt_tos == ["petr@xn--pklad-zsa96e.cz"]
    assert b"xn--pklad-zsa96e.cz" in outbox.mails[0].data
    assert db.session.scalar(select(Subscriber.email)) == "petr@příklad.cz"


def test_confirming_sends_one_welcome_mail(client, app, outbox):
    sign_up(client, name="Jana Nováková")
    run_jobs(app)
    confirm_link = link_to(outbox.mails[0], "/confirm/")
    client.post(confirm_link)
    client.post(confirm_link)  # a second click changes nothing and sends nothing
    run_jobs(app)
    assert len(outbox.mails) == 2
    welcome = outbox.mails[1].message
    assert welcome["Subject"] == "Odběr potvrzen: Zpravodaj sociálního bydlení"
    text = welcome.get_body(("plain",)).get_content()
    assert "odběr je potvrzený" in text
    assert f"{BASE_URL}/archive/zpravodaj" in text
    assert link_to(outbox.mails[1], "/preferences/")
    assert link_to(outbox.mails[1], "/unsubscribe/")
    assert db.session.scalar(select(OutgoingMail.kind).order_by(OutgoingMail.id.desc())) == (
        "welcome"
    )
