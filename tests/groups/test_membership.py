"""Group membership in the domain: invitations, CSV invitations, join requests, removal."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from service import suppression
from service.extensions import db
from service.groups import membership
from service.groups.membership import MembershipError
from service.models import ConsentEvent, MailingList, Subscriber, Subscription
from service.subscriptions import actions
from tests.conftest import link_to, run_jobs


def ostrava() -> MailingList:
    return db.session.scalar(select(MailingList).filter_by(slug="ostrava-psb"))


def subscription_of(email: str, group: MailingList) -> Subscription | None:
    db.session.expire_all()
    return db.session.scalar(
        select(Subscription)
        .join(Subscriber)
        .where(Subscriber.email_key == email.casefold(), Subscription.list_id == group.id)
    )


def invite(email="jana.novakova@ostrava.example", **overrides):
    values = dict(
        name="Jana Nováková",
        organization="Magistrát města Ostravy",
        institution="obec-socialni",
        function="vedoucí oddělení",
        invited_by=None,
    )
    values.update(overrides)
    return membership.invite(ostrava(), email, **values)


def request_to_join(email: str) -> Subscription:
    """A visitor who asked to join and confirmed the address (the public side's result)."""
    subscriber = actions.get_or_create_subscriber(_address(email), "Petr Svoboda")
    subscription = Subscription(mailing_list=ostrava(), status="requested")
    subscriber.subscriptions.append(subscription)
    db.session.commit()
    return subscription


def _address(email: str):
    from service.addresses import parse_address_for_app

    return parse_address_for_app(email)


def test_invitation_mail_carries_a_signed_accept_link(app, outbox, accounts):
    subscription = invite(invited_by=accounts.coordinator)
    db.session.commit()
    run_jobs(app)
    assert (subscription.status, subscription.institution) == ("pending", "obec-socialni")
    assert subscription.organization == "Magistrát města Ostravy"
    assert subscription.function == "vedoucí oddělení"
    [mail] = outbox.mails
    assert mail.message["To"] == "jana.novakova@ostrava.example"
    assert mail.message["Subject"] == "Pozvánka do skupiny: Pracovní skupina sociálního bydlení"
    path = link_to(mail, "/groups/invitation/")
    token = path.rsplit("/", 1)[1]
    from service import tokens

    assert tokens.load("invite", token) == {
        "s": subscription.subscriber.public_key,
        "l": "ostrava-psb",
    }
    html = mail.message.get_body(("html",)).get_content()
    assert path in html
    event = db.session.scalar(select(ConsentEvent).filter_by(action="invite"))
    assert (event.channel, event.detail) == ("admin", "koordinator@ostrava.example")
    assert event.message_id == mail.message["Message-ID"]


def test_a_confirmed_member_is_not_invited_again(app, outbox):
    subscription = invite()
    subscription.status = "confirmed"
    db.session.commit()
    with pytest.raises(MembershipError, match="už je členem"):
        invite()


def test_a_pending_invitation_is_renewed_at_most_three_times_a_day(app, outbox):
    for _ in range(3):
        invite()
        db.session.commit()
    with pytest.raises(MembershipError, match="3 pozvánky"):
        invite()
    assert db.session.query(Subscription).count() == 1


def test_suppressed_addresses_are_not_invited(app, outbox):
    suppression.suppress("vymazana@ostrava.example", "erased")
    db.session.commit()
    with pytest.raises(MembershipError, match="vymazána nebo je nedoručitelná"):
        invite("Vymazana@ostrava.example")
    assert db.session.query(Subscriber).count() == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"email": "not-an-address"}, "Neplatný e-mail"),
        ({"institution": "mimozemšťan"}, "Neznámý typ instituce"),
        ({"organization": "x" * 201}, "Organizace: příliš dlouhý text"),
        ({"function": "a\nb"}, "Funkce: text obsahuje nepovolené znaky"),
        ({"name": "x" * 201}, "Jméno je příliš dlouhé"),
    ],
)
def test_invalid_invitations_are_refused_in_czech(app, outbox, overrides, message):
    overrides = dict(overrides)  # parametrize shares the dict between databases
    email = overrides.pop("email", "jana.novakova@ostrava.example")
    with pytest.raises(MembershipError, match=message):
        invite(email, **overrides)


CSV = """email,name,organization,institution,function
jana.novakova@ostrava.example,Jana Nováková,Magistrát města Ostravy,obec-socialni,vedoucí
petr@charita-ostrava.example,Petr Dvořák,Charita Ostrava,nezisková organizace,sociální pracovník
not-an-address,Nikdo,,,
jana.novakova@ostrava.example,Dvojnice,,,
karel@ostrava.example,Karel,,kosmonaut,
vymazany@ostrava.example,Vymazaný,,,
eva@up.example,Eva,Úřad práce Ostrava,ÚŘAD PRÁCE,
"""


def test_csv_invitation_reports_bad_rows_by_line_and_invites_the_rest(app, outbox):
    suppression.suppress("vymazany@ostrava.example", "erased")
    db.session.commit()
    report = membership.invite_csv(ostrava(), io.StringIO(CSV), invited_by=None)
    db.session.commit()
    run_jobs(app)
    assert report.invited == 3
    assert report.problems == [
        (4, "neplatná adresa 'not-an-address'"),
        (5, "opakuje adresu z řádku 2"),
        (6, "neznámý typ instituce 'kosmonaut'"),
        (
            7,
            "Adresa vymazany@ostrava.example byla vymazána nebo je nedoručitelná; "
            "pozvánku nelze poslat.",
        ),
    ]
    assert sorted(m.message["To"] for m in outbox.mails) == [
        "eva@up.example",
        "jana.novakova@ostrava.example",
        "petr@charita-ostrava.example",
    ]
    assert subscription_of("petr@charita-ostrava.example", ostrava()).institution == "nno"
    assert subscription_of("eva@up.example", ostrava()).institution == "urad-prace"
    assert subscription_of("karel@ostrava.example", ostrava()) is None
    assert (
        db.session.scalar(select(Subscriber).filter_by(email_key="karel@ostrava.example")) is None
    )


def test_csv_without_an_email_column_is_refused(app):
    with pytest.raises(MembershipError, match="chybí sloupec „email“"):
        membership.invite_csv(ostrava(), io.StringIO("adresa;jméno\nx@y.cz;X\n"), None)


def test_approving_a_request_confirms_and_tells_the_person(app, outbox, accounts):
    subscription = request_to_join("petr@ostrava.example")
    assert membership.approve(ostrava(), subscription, accounts.coordinator) is True
    db.session.commit()
    assert subscription.status == "confirmed"
    assert subscription.confirmed_at is not None
    assert membership.approve(ostrava(), subscription, accounts.coordinator) is False  # harmless
    db.session.commit()
    run_jobs(app)
    [mail] = outbox.mails
    assert mail.message["Subject"] == "Jste členem skupiny: Pracovní skupina sociálního bydlení"
    assert "schválil" in mail.message.get_body(("plain",)).get_content()
    assert [e.action for e in db.session.scalars(select(ConsentEvent))] == ["approve"]
    with pytest.raises(MembershipError, match="nelze zamítnout"):
        membership.decline(ostrava(), subscription, accounts.coordinator)


def test_declining_a_request_tells_the_person(app, outbox, accounts):
    subscription = request_to_join("petr@ostrava.example")
    assert membership.decline(ostrava(), subscription, accounts.coordinator) is True
    assert membership.decline(ostrava(), subscription, accounts.coordinator) is False
    db.session.commit()
    run_jobs(app)
    assert subscription.status == "declined"
    [mail] = outbox.mails
    assert mail.message["Subject"] == "Žádost o členství: Pracovní skupina sociálního bydlení"
    assert "nepřijal" in mail.message.get_body(("plain",)).get_content()
    with pytest.raises(MembershipError, match="nelze schválit"):
        membership.approve(ostrava(), subscription, accounts.coordinator)


def test_a_pending_invitation_cannot_be_approved(app, outbox):
    subscription = invite()
    with pytest.raises(MembershipError):
        membership.approve(ostrava(), subscription, None)


def test_remove_unsubscribes_and_records_it(app, outbox, accounts):
    subscription = request_to_join("petr@ostrava.example")
    membership.approve(ostrava(), subscription, None)
    assert membership.remove(ostrava(), subscription, accounts.admin) is True
    assert membership.remove(ostrava(), subscription, accounts.admin) is False
    db.session.commit()
    assert subscription.status == "unsubscribed"
    assert subscription.unsubscribed_at is not None
    removed = db.session.scalar(select(ConsentEvent).filter_by(action="remove"))
    assert (removed.channel, removed.detail) == ("admin", "admin@socialnibydleni.example")


def test_a_member_of_another_list_is_refused(app, outbox):
    subscription = request_to_join("petr@ostrava.example")
    other = MailingList(slug="chomutov-eps", name="Expertní skupina Chomutov", kind="group")
    db.session.add(other)
    db.session.commit()
    with pytest.raises(MembershipError, match="nepatří"):
        membership.remove(other, subscription, None)


def test_update_details_validates_institution(app, outbox):
    subscription = invite()
    membership.update_details(subscription, " Charita ", "nno", "ředitelka")
    assert (subscription.organization, subscription.institution, subscription.function) == (
        "Charita",
        "nno",
        "ředitelka",
    )
    membership.update_details(subscription, "", "", "")
    assert subscription.institution == ""
    with pytest.raises(MembershipError, match="Neznámý typ instituce"):
        membership.update_details(subscription, "", "nezisková organizace", "")


def test_an_invited_person_accepts_through_the_link(app, client, outbox):
    invite()
    db.session.commit()
    run_jobs(app)
    path = link_to(outbox.mails[0], "/groups/invitation/")
    assert client.get(path).status_code == 200
    assert subscription_of("jana.novakova@ostrava.example", ostrava()).status == "pending"
    assert client.post(path).status_code == 200
    member = subscription_of("jana.novakova@ostrava.example", ostrava())
    assert member.status == "confirmed"
    assert member.institution == "obec-socialni"  # the details the coordinator entered stay
