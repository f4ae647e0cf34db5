"""Ways into a working group: a join request from the public page, and an accepted invitation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from service import tokens
from service.clock import utcnow
from service.czech import group_genitive
from service.extensions import db
from service.models import ConsentEvent, MailingList, OutgoingMail, Subscriber, Subscription
from tests.conftest import link_to, links_in, run_jobs
from tests.i18n_checks import untranslated, visible_text
from tests.subscriptions.snapshots import database_snapshot

GROUP = "ostrava-psb"
APPLICANT = "petra.svobodova@ostrava.example"


@pytest.fixture
def public_group(app) -> MailingList:
    group = db.session.scalar(select(MailingList).filter_by(slug=GROUP))
    group.municipality = "Ostrava"
    group.theme = "Sociální bydlení"
    group.department = "Odbor sociálních věcí a zdravotnictví"
    group.meeting_place = "Magistrát města Ostravy, Prokešovo nám. 8"
    group.meeting_rhythm = "každý druhý čtvrtek v měsíci"
    group.visibility = "public"
    db.session.commit()
    return group


def ask_to_join(client, slug=GROUP, **fields):
    data = {
        "email": APPLICANT,
        "name": "Petra Svobodová",
        "organization": "Charita Ostrava",
        "institution": "poskytovatel",
        "function": "sociální pracovnice",
        **fields,
    }
    return client.post(
        f"/groups/{slug}/join",
        data=data,
        headers={"User-Agent": "Mozilla/5.0 (test)"},
        environ_base={"REMOTE_ADDR": "192.0.2.20"},
    )


def membership(email: str = APPLICANT, slug: str = GROUP) -> Subscription | None:
    db.session.expire_all()
    return db.session.scalar(
        select(Subscription)
        .join(Subscriber)
        .join(MailingList)
        .where(Subscriber.email_key == email, MailingList.slug == slug)
    )


# --- join request ------------------------------------------------------------------------


def test_join_request_end_to_end_reaches_the_coordinator(
    client, app, outbox, accounts, public_group
):
    response = ask_to_join(client)
    assert response.status_code == 202
    assert "Zkontrolujte svou e-mailovou schránku" in response.get_data(as_text=True)
    pending = membership()
    assert pending.status == "pending"
    assert (pending.organization, pending.institution, pending.function) == (
        "Charita Ostrava",
        "poskytovatel",
        "sociální pracovnice",
    )
    event = db.session.scalar(select(ConsentEvent).filter_by(action="join_request"))
    assert event.channel == "page"
    assert event.ip == "192.0.2.20"
    assert event.consent_text is not None
    assert event.mailing_list.slug == GROUP

    run_jobs(app)
    assert len(outbox.mails) == 1
    mail = outbox.mails[0]
    assert mail.rcpt_tos == [APPLICANT]
    assert "Potvrďte prosím žádost o členství" in mail.message["Subject"]
    assert event.message_id == mail.message["Message-ID"]
    path = link_to(mail, "/groups/join/")

    before = database_snapshot()
    page = client.get(path)
    assert page.status_code == 200
    assert "Potvrdit žádost" in page.get_data(as_text=True)
    assert database_snapshot() == before  # GET changes nothing

    confirmed = client.post(path)
    assert confirmed.status_code == 200
    assert "Žádost je potvrzená" in confirmed.get_data(as_text=True)
    assert membership().status == "requested"
    assert db.session.scalar(select(ConsentEvent).filter_by(action="join_confirm")) is not None

    run_jobs(app)
    assert len(outbox.mails) == 2
    notice = outbox.mails[1]
    assert notice.rcpt_tos == ["koordinator@ostrava.example"]
    assert "Nová žádost o členství" in notice.message["Subject"]
    text = notice.message.get_body(("plain",)).get_content()
    assert APPLICANT in text
    assert "Charita Ostrava" in text
    assert "poskytovatel sociálních služeb" in text
    assert f"http://zpravodaj.test/admin/groups/{GROUP}" in links_in(notice)

    # Repeating the POST is harmless: no second notice, still requested.
    again = client.post(path)
    assert again.status_code == 200
    run_jobs(app)
    assert len(outbox.mails) == 2
    assert membership().status == "requested"


def test_join_confirm_link_of_the_subscription_flow_confirms_nothing(
    client, app, outbox, public_group
):
    """The join link is a confirm token; /confirm/ must not let it skip the coordinator."""
    ask_to_join(client)
    run_jobs(app)
    token = link_to(outbox.mails[0], "/groups/join/").rsplit("/", 1)[1]
    response = client.post(f"/confirm/{token}")
    assert response.status_code == 200
    assert membership().status == "pending"


def test_without_coordinators_the_admins_are_notified(client, app, outbox, accounts, public_group):
    accounts.coordinator.active = False
    db.session.commit()
    ask_to_join(client)
    run_jobs(app)
    client.post(link_to(outbox.mails[0], "/groups/join/"))
    run_jobs(app)
    assert outbox.mails[1].rcpt_tos == ["admin@socialnibydleni.example"]


def test_coordinators_notice_follows_the_groups_language(
    client, app, outbox, accounts, public_group
):
    """The notice to coordinators is in the group's language, every line of it (it was
    Czech only), and in Czech names the group without saying "group" twice."""
    public_group.language = "en"
    db.session.commit()
    ask_to_join(client)
    run_jobs(app)
    client.post(link_to(outbox.mails[0], "/groups/join/"))
    run_jobs(app)
    notice = outbox.mails[1]
    assert notice.message["Subject"] == f"New membership request: {public_group.name}"
    text = notice.message.get_body(("plain",)).get_content()
    html = notice.message.get_body(("html",)).get_content()
    assert f"A new applicant asks to join {public_group.name}." in text
    assert "Institution type: social service provider" in text
    assert "You receive this e-mail as a coordinator of" in text
    data = (public_group.name, "Charita Ostrava", "Petra Svobodová", "sociální pracovnice")
    assert untranslated(visible_text(html), *data) == []
    assert untranslated(text, *data) == []


def test_coordinators_notice_in_czech_declines_the_groups_name(
    client, app, outbox, accounts, public_group
):
    ask_to_join(client)
    run_jobs(app)
    client.post(link_to(outbox.mails[0], "/groups/join/"))
    run_jobs(app)
    text = outbox.mails[1].message.get_body(("plain",)).get_content()
    assert f"o členství v {group_genitive(public_group.name)} žádá nový zájemce" in text
    assert "skupině Pracovní skupina" not in text and "skupiny Pracovní skupina" not in text


def test_invalid_address_is_flagged_in_czech(client, public_group):
    response = ask_to_join(client, email="petra@")
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Neplatný e-mail." in page
    assert 'value="Charita Ostrava"' in page  # the form keeps what was typed
    assert membership() is None


def test_join_request_requires_organisation_and_institution(client, public_group):
    response = ask_to_join(client, organization="", institution="")
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Uveďte prosím organizaci, kterou zastupujete." in page
    assert "Vyberte prosím typ instituce." in page
    response = ask_to_join(client, institution="mafie")
    assert response.status_code == 422
    assert "Neznámý typ instituce." in response.get_data(as_text=True)


def test_known_and_unknown_addresses_get_the_same_answer(client, app, outbox, public_group):
    ask_to_join(client)
    run_jobs(app)
    client.post(link_to(outbox.mails[0], "/groups/join/"))
    member = membership()
    member.status = "confirmed"
    db.session.commit()

    known = ask_to_join(client, organization="Někdo jiný")
    unknown = ask_to_join(client, email="novy.clen@ostrava.example")
    assert known.status_code == unknown.status_code == 202
    assert known.get_data(as_text=True) == unknown.get_data(as_text=True)
    # A stranger's form never changes a member's state or details.
    assert membership().status == "confirmed"
    assert membership().organization == "Charita Ostrava"


def test_honeypot_answers_as_accepted_and_stores_nothing(client, app, outbox, public_group):
    response = ask_to_join(client, website="http://spam.example")
    assert response.status_code == 202
    assert membership() is None
    run_jobs(app)
    assert outbox.mails == []


def test_join_mails_are_capped_per_address(client, app, outbox, public_group):
    for _ in range(5):
        assert ask_to_join(client).status_code == 202
    kinds = db.session.scalars(select(OutgoingMail.kind)).all()
    assert kinds == ["join_confirmation"] * app.config["CONFIRMATION_MAILS_PER_HOUR"]


def test_invite_only_group_takes_no_join_request(client, public_group):
    public_group.visibility = "invite"
    db.session.commit()
    assert ask_to_join(client).status_code == 404
    assert membership() is None


def test_expired_join_link_sends_back_to_the_group_page(client, app, outbox, public_group):
    ask_to_join(client)
    run_jobs(app)
    path = link_to(outbox.mails[0], "/groups/join/")
    app.config["CONFIRM_TOKEN_MAX_AGE_DAYS"] = -1
    response = client.get(path)
    assert response.status_code == 410
    assert "Platnost odkazu vypršela" in response.get_data(as_text=True)
    assert client.post(path).status_code == 410
    assert membership().status == "pending"


# --- invitation ----------------------------------------------------------------------------


@pytest.fixture
def invited(app) -> Subscription:
    group = db.session.scalar(select(MailingList).filter_by(slug=GROUP))
    group.visibility = "invite"
    subscriber = Subscriber(
        email="jan.dvorak@ospod.example",
        email_key="jan.dvorak@ospod.example",
        ascii_email="jan.dvorak@ospod.example",
        name="Jan Dvořák",
    )
    subscription = Subscription(
        mailing_list=group, status="pending", organization="OSPOD Ostrava", institution="ospod"
    )
    subscriber.subscriptions.append(subscription)
    db.session.add(subscriber)
    db.session.commit()
    return subscription


def invitation_path(subscription: Subscription) -> str:
    token = tokens.dump("invite", {"s": subscription.subscriber.public_key, "l": GROUP})
    return f"/groups/invitation/{token}"


def status_of(subscription: Subscription) -> str:
    db.session.expire_all()
    return db.session.get(Subscription, subscription.id).status


def test_invitation_get_shows_the_group_and_changes_nothing(client, invited):
    path = invitation_path(invited)
    before = database_snapshot()
    response = client.get(path)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Přijmout pozvání" in page
    assert "Pracovní skupina sociálního bydlení" in page
    assert database_snapshot() == before


def test_invitation_post_confirms_and_repeating_is_harmless(client, invited):
    path = invitation_path(invited)
    response = client.post(
        path,
        headers={"User-Agent": "Mozilla/5.0 (test)"},
        environ_base={"REMOTE_ADDR": "192.0.2.30"},
    )
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Vítejte ve skupině" in page
    assert "/preferences/" in page
    assert f"/groups/{GROUP}/member/" in page
    assert status_of(invited) == "confirmed"
    row = db.session.get(Subscription, invited.id)
    assert row.confirmed_at is not None
    event = db.session.scalar(select(ConsentEvent).filter_by(action="accept_invitation"))
    assert (event.channel, event.ip, event.user_agent) == (
        "link",
        "192.0.2.30",
        "Mozilla/5.0 (test)",
    )

    again = client.post(path)
    assert again.status_code == 200
    assert status_of(invited) == "confirmed"
    events = db.session.scalars(select(ConsentEvent).filter_by(action="accept_invitation")).all()
    assert len(events) == 1
    assert "Pozvání jste už přijali" in client.get(path).get_data(as_text=True)


@pytest.mark.parametrize("status", ["unsubscribed", "declined"])
def test_old_invitation_does_not_bring_back_an_ended_membership(client, invited, status):
    invited.status = status
    db.session.commit()
    path = invitation_path(invited)
    page = client.get(path)
    assert page.status_code == 200
    assert "Přijmout pozvání" not in page.get_data(as_text=True)
    response = client.post(path)
    assert response.status_code == 409
    assert "už neplatí" in response.get_data(as_text=True)
    assert status_of(invited) == status


def test_tampered_invitation_is_refused(client, invited):
    path = invitation_path(invited)
    tampered = path[:-3] + ("aaa" if not path.endswith("aaa") else "bbb")
    assert client.get(tampered).status_code == 400
    response = client.post(tampered)
    assert response.status_code == 400
    assert "Tento odkaz není platný" in response.get_data(as_text=True)
    assert status_of(invited) == "pending"


def test_other_purposes_are_not_invitations(client, invited):
    token = tokens.dump("confirm", {"s": invited.subscriber.public_key, "l": GROUP})
    assert client.post(f"/groups/invitation/{token}").status_code == 400
    assert status_of(invited) == "pending"


def test_invitation_of_an_unknown_subscriber_is_gone(client, invited):
    token = tokens.dump("invite", {"s": "nikdo-takovy", "l": GROUP})
    response = client.get(f"/groups/invitation/{token}")
    assert response.status_code == 404
    assert "Odběr už neexistuje" in response.get_data(as_text=True)
    assert client.post(f"/groups/invitation/{token}").status_code == 404


def test_expired_invitation_asks_the_coordinator(client, app, invited):
    path = invitation_path(invited)
    app.config["INVITE_TOKEN_MAX_AGE_DAYS"] = 30
    assert client.get(path).status_code == 200
    app.config["INVITE_TOKEN_MAX_AGE_DAYS"] = -1  # every link is older than that
    response = client.post(path)
    assert response.status_code == 410
    assert "Platnost pozvánky vypršela" in response.get_data(as_text=True)
    assert status_of(invited) == "pending"


def test_purged_group_reads_as_gone(client, invited):
    token = tokens.dump("invite", {"s": invited.subscriber.public_key, "l": "zpravodaj"})
    assert client.get(f"/groups/invitation/{token}").status_code == 404


def test_confirmed_at_is_recent(client, invited):
    client.post(invitation_path(invited))
    db.session.expire_all()
    row = db.session.get(Subscription, invited.id)
    assert utcnow() - row.confirmed_at < timedelta(minutes=1)


class TestRateLimits:
    @pytest.fixture
    def app_config(self, app_config):
        app_config.update(
            RATE_LIMITS=True,
            RATE_LIMIT_SUBSCRIBE_IP="4 per minute",
            RATE_LIMIT_SUBSCRIBE_ADDRESS="2 per hour",
        )
        return app_config

    def test_per_address_limit_answers_429_in_czech(self, client, public_group):
        for _ in range(2):
            assert ask_to_join(client).status_code == 202
        limited = ask_to_join(client, email=APPLICANT.upper())
        assert limited.status_code == 429
        assert "Příliš mnoho pokusů" in limited.get_data(as_text=True)
        assert "Retry-After" in limited.headers
        # The limit's key in Redis is a keyed hash, not the address.
        from service.jobs import redis_connection

        keys = [key.decode() for key in redis_connection().scan_iter("*join-address*")]
        assert keys
        assert not any(APPLICANT.split("@")[0].casefold() in key.casefold() for key in keys)

    def test_per_ip_limit(self, client, public_group):
        statuses = [
            ask_to_join(client, email=f"clovek{i}@ostrava.example").status_code for i in range(5)
        ]
        assert statuses == [202, 202, 202, 202, 429]

    def test_reading_the_page_is_not_limited(self, client, public_group):
        for _ in range(10):
            assert client.get(f"/groups/{GROUP}").status_code == 200
