"""The admin's working-group pages: scope by role, invitations, requests, coordinators."""

from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import select

from service import suppression
from service.addresses import parse_address_for_app
from service.extensions import db
from service.models import MailingList, Subscriber, Subscription, User
from service.subscriptions import actions
from tests.conftest import csrf_token_of, link_to, log_in, run_jobs

GROUP = "/admin/groups/ostrava-psb"


@pytest.fixture
def chomutov(app) -> MailingList:
    group = MailingList(
        slug="chomutov-eps",
        name="Expertní skupina Chomutov",
        kind="group",
        municipality="Chomutov",
    )
    db.session.add(group)
    db.session.commit()
    return group


def requested(email: str, slug: str = "ostrava-psb") -> int:
    group = db.session.scalar(select(MailingList).filter_by(slug=slug))
    subscriber = actions.get_or_create_subscriber(parse_address_for_app(email), "Petr Svoboda")
    subscription = Subscription(
        mailing_list=group, status="requested", organization="Charita", institution="nno"
    )
    subscriber.subscriptions.append(subscription)
    db.session.commit()
    return subscription.id


def status_of(subscription_id: int) -> str:
    db.session.expire_all()
    return db.session.get(Subscription, subscription_id).status


def test_coordinator_sees_only_own_groups(client, accounts, chomutov):
    log_in(client, "koordinator@ostrava.example")
    page = client.get("/admin/groups")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Pracovní skupina sociálního bydlení" in text
    assert "Expertní skupina Chomutov" not in text
    assert "1 skupina" in text
    assert 'href="/admin/groups"' in text  # "Skupiny" in the navigation


def test_coordinator_gets_403_on_another_groups_page_and_actions(
    client, accounts, chomutov, outbox
):
    request_id = requested("petr@chomutov.example", "chomutov-eps")
    log_in(client, "koordinator@ostrava.example")
    assert client.get("/admin/groups/chomutov-eps").status_code == 403
    token = csrf_token_of(client, GROUP)
    base = "/admin/groups/chomutov-eps"
    for path, data in (
        (f"{base}/invite", {"email": "x@chomutov.example"}),
        (f"{base}/details", {"name": "Převzato", "visibility": "public"}),
        (f"{base}/members/{request_id}/approve", {}),
        (f"{base}/members/{request_id}/remove", {}),
        (f"{base}/invite-csv", {"file": (io.BytesIO(b"email\nx@chomutov.example\n"), "a.csv")}),
        (f"{base}/coordinators", {"user_id": str(accounts.coordinator.id)}),
    ):
        response = client.post(path, data={**data, "csrf_token": token})
        assert response.status_code == 403, path
    assert status_of(request_id) == "requested"
    assert db.session.scalar(select(MailingList).filter_by(slug="chomutov-eps")).name == (
        "Expertní skupina Chomutov"
    )
    assert db.session.scalar(select(Subscriber).filter_by(email_key="x@chomutov.example")) is None


def test_coordinator_cannot_reach_another_groups_member_through_own_group(
    client, accounts, chomutov
):
    request_id = requested("petr@chomutov.example", "chomutov-eps")
    log_in(client, "koordinator@ostrava.example")
    token = csrf_token_of(client, GROUP)
    response = client.post(f"{GROUP}/members/{request_id}/approve", data={"csrf_token": token})
    assert response.status_code == 404
    assert status_of(request_id) == "requested"


def test_editors_get_403_and_no_navigation_entry(client, accounts):
    log_in(client, "redakce@socialnibydleni.example")
    assert client.get("/admin/groups").status_code == 403
    assert client.get(GROUP).status_code == 403
    assert 'href="/admin/groups"' not in client.get("/admin/").get_data(as_text=True)


def test_newsletters_and_unknown_slugs_are_404(client, accounts):
    log_in(client, "admin@socialnibydleni.example")
    assert client.get("/admin/groups/zpravodaj").status_code == 404
    assert client.get("/admin/groups/neni-tu").status_code == 404
    assert client.get("/admin/groups/Špatně").status_code == 404


def test_posts_need_a_csrf_token(client, accounts):
    log_in(client, "koordinator@ostrava.example")
    response = client.post(f"{GROUP}/invite", data={"email": "jana@ostrava.example"})
    assert response.status_code == 400
    assert db.session.scalar(select(Subscriber)) is None


def test_coordinator_invites_a_member_who_gets_the_link(app, client, accounts, outbox):
    log_in(client, "koordinator@ostrava.example")
    token = csrf_token_of(client, GROUP)
    response = client.post(
        f"{GROUP}/invite",
        data={
            "csrf_token": token,
            "name": "Jana Nováková",
            "email": "jana.novakova@ostrava.example",
            "organization": "Magistrát města Ostravy",
            "institution": "ospod",
            "function": "sociální pracovnice",
        },
    )
    assert response.status_code == 302
    page = client.get(GROUP).get_data(as_text=True)
    assert "Pozvánka pro jana.novakova@ostrava.example je na cestě." in page
    assert "jana.novakova@ostrava.example" in page
    assert "OSPOD" in page
    assert "pozván(a), čeká na přijetí" in page
    run_jobs(app)
    [mail] = outbox.mails
    assert link_to(mail, "/groups/invitation/")
    assert "Pracovní skupina sociálního bydlení" in mail.message["Subject"]


def test_invite_errors_are_shown_in_czech(client, accounts, outbox):
    suppression.suppress("vymazana@ostrava.example", "erased")
    db.session.commit()
    log_in(client, "koordinator@ostrava.example")
    token = csrf_token_of(client, GROUP)
    bad = client.post(f"{GROUP}/invite", data={"csrf_token": token, "email": "nic"})
    assert bad.status_code == 422
    assert "Neplatný e-mail." in bad.get_data(as_text=True)
    suppressed = client.post(
        f"{GROUP}/invite", data={"csrf_token": token, "email": "vymazana@ostrava.example"}
    )
    assert suppressed.status_code == 422
    assert "byla vymazána nebo je nedoručitelná" in suppressed.get_data(as_text=True)
    odd = client.post(
        f"{GROUP}/invite",
        data={"csrf_token": token, "email": "a@ostrava.example", "institution": "kosmonaut"},
    )
    assert odd.status_code == 422
    assert "Neznámý typ instituce." in odd.get_data(as_text=True)
    assert db.session.scalar(select(Subscription)) is None


def test_csv_invitation_reports_skipped_lines(app, client, accounts, outbox):
    log_in(client, "koordinator@ostrava.example")
    token = csrf_token_of(client, GROUP)
    csv_bytes = (
        "email,name,institution\n"
        "jana@ostrava.example,Jana,OSPOD\n"
        "spatne,Nikdo,\n"
        "petr@ostrava.example,Petr,kosmonaut\n"
        "eva@ostrava.example,Eva,škola\n"
    ).encode()
    response = client.post(
        f"{GROUP}/invite-csv",
        data={"csrf_token": token, "file": (io.BytesIO(csv_bytes), "pozvani.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "Odeslány 2 pozvánky, 2 řádky přeskočeny." in text
    assert "<td>3</td><td>neplatná adresa &#39;spatne&#39;</td>" in text
    assert "<td>4</td><td>neznámý typ instituce &#39;kosmonaut&#39;</td>" in text
    run_jobs(app)
    assert sorted(m.message["To"] for m in outbox.mails) == [
        "eva@ostrava.example",
        "jana@ostrava.example",
    ]
    empty = client.post(
        f"{GROUP}/invite-csv",
        data={"csrf_token": token, "file": (io.BytesIO(b"jmeno\nx\n"), "a.csv")},
        content_type="multipart/form-data",
    )
    assert empty.status_code == 422
    assert "chybí sloupec „email“" in empty.get_data(as_text=True)


def test_approve_and_decline_from_the_group_page(app, client, accounts, outbox):
    first = requested("petr@ostrava.example")
    second = requested("karel@ostrava.example")
    log_in(client, "koordinator@ostrava.example")
    page = client.get(GROUP).get_data(as_text=True)
    assert "2 žádosti čekají na rozhodnutí" in page
    assert f"/admin/groups/ostrava-psb/members/{first}/approve" in page
    token = csrf_token_of(client, GROUP)
    approved = client.post(f"{GROUP}/members/{first}/approve", data={"csrf_token": token})
    assert approved.status_code == 302
    client.post(f"{GROUP}/members/{second}/decline", data={"csrf_token": token})
    again = client.post(
        f"{GROUP}/members/{second}/decline", data={"csrf_token": token}, follow_redirects=True
    )
    assert "Nic se nezměnilo" in again.get_data(as_text=True)
    wrong = client.post(
        f"{GROUP}/members/{second}/approve", data={"csrf_token": token}, follow_redirects=True
    )
    assert "Tuto žádost o členství už nelze schválit." in wrong.get_data(as_text=True)
    assert (status_of(first), status_of(second)) == ("confirmed", "declined")
    run_jobs(app)
    subjects = {m.message["To"]: m.message["Subject"] for m in outbox.mails}
    assert subjects == {
        "petr@ostrava.example": "Jste členem skupiny: Pracovní skupina sociálního bydlení",
        "karel@ostrava.example": "Žádost o členství: Pracovní skupina sociálního bydlení",
    }
    page = client.get(GROUP).get_data(as_text=True)
    assert "Žádná žádost nečeká na rozhodnutí." in page
    assert "1 člen ·" in page
    assert "nezisková organizace" in page


def test_remove_a_member(client, accounts, outbox):
    member = requested("petr@ostrava.example")
    db.session.get(Subscription, member).status = "confirmed"
    db.session.commit()
    log_in(client, "koordinator@ostrava.example")
    token = csrf_token_of(client, GROUP)
    response = client.post(
        f"{GROUP}/members/{member}/remove", data={"csrf_token": token}, follow_redirects=True
    )
    assert "Petr Svoboda (petr@ostrava.example) už ve skupině není." in response.get_data(
        as_text=True
    )
    assert status_of(member) == "unsubscribed"
    assert (
        client.post(f"{GROUP}/members/{member}/delete", data={"csrf_token": token}).status_code
        == 404
    )


def test_coordinator_edits_group_details(client, accounts):
    log_in(client, "koordinator@ostrava.example")
    token = csrf_token_of(client, GROUP)
    response = client.post(
        f"{GROUP}/details",
        data={
            "csrf_token": token,
            "name": "Pracovní skupina sociálního bydlení",
            "municipality": "Ostrava",
            "theme": "sociální bydlení",
            "department": "Odbor sociálních věcí a zdravotnictví",
            "meeting_place": "Nová radnice, Prokešovo nám. 8",
            "meeting_rhythm": "každý druhý čtvrtek v měsíci",
            "visibility": "invite",
            "description": "Naplňuje akční plán.\nDruhý řádek.",
        },
    )
    assert response.status_code == 302
    db.session.expire_all()
    group = db.session.scalar(select(MailingList).filter_by(slug="ostrava-psb"))
    assert (group.municipality, group.visibility) == ("Ostrava", "invite")
    assert group.description == "Naplňuje akční plán.\nDruhý řádek."
    page = client.get(GROUP).get_data(as_text=True)
    assert "každý druhý čtvrtek v měsíci" in page
    assert "jen na pozvání" in page
    bad = client.post(
        f"{GROUP}/details",
        data={"csrf_token": token, "name": "", "visibility": "tajná", "municipality": "O" * 121},
    )
    assert bad.status_code == 422
    text = bad.get_data(as_text=True)
    assert "Vyplňte název." in text
    assert "Neplatná volba" in text
    db.session.expire_all()
    assert db.session.scalar(select(MailingList).filter_by(slug="ostrava-psb")).municipality == (
        "Ostrava"
    )


def test_admin_assigns_and_unassigns_coordinators(client, accounts, chomutov):
    log_in(client, "admin@socialnibydleni.example")
    page = client.get("/admin/groups/chomutov-eps").get_data(as_text=True)
    assert "Skupina zatím nemá koordinátora." in page
    assert f'<option value="{accounts.coordinator.id}">koordinator@ostrava.example</option>' in page
    token = csrf_token_of(client, "/admin/groups")
    client.post(
        "/admin/groups/chomutov-eps/coordinators",
        data={"csrf_token": token, "user_id": str(accounts.coordinator.id), "action": "add"},
    )
    db.session.expire_all()
    coordinator = db.session.get(User, accounts.coordinator.id)
    assert sorted(g.slug for g in coordinator.lists) == ["chomutov-eps", "ostrava-psb"]
    editor = client.post(
        "/admin/groups/chomutov-eps/coordinators",
        data={"csrf_token": token, "user_id": str(accounts.editor.id)},
        follow_redirects=True,
    )
    assert "Vyberte účet koordinátora." in editor.get_data(as_text=True)
    client.post(
        "/admin/groups/chomutov-eps/coordinators",
        data={"csrf_token": token, "user_id": str(accounts.coordinator.id), "action": "remove"},
    )
    db.session.expire_all()
    assert [g.slug for g in db.session.get(User, accounts.coordinator.id).lists] == ["ostrava-psb"]
    listing = client.get("/admin/groups").get_data(as_text=True)
    assert "2 skupiny" in listing


def test_coordinators_cannot_assign_coordinators(client, accounts):
    log_in(client, "koordinator@ostrava.example")
    page = client.get(GROUP).get_data(as_text=True)
    assert "Přidat koordinátora" not in page
    token = csrf_token_of(client, GROUP)
    response = client.post(
        f"{GROUP}/coordinators", data={"csrf_token": token, "user_id": str(accounts.coordinator.id)}
    )
    assert response.status_code == 403


def test_group_pages_have_no_inline_styles_or_scripts(client, accounts):
    requested("petr@ostrava.example")
    log_in(client, "admin@socialnibydleni.example")
    for path in ("/admin/groups", GROUP):
        text = client.get(path).get_data(as_text=True)
        assert not re.search(r"\sstyle=|<script(?![^>]*\ssrc=)", text), path
