"""Admins found working groups in the admin, with every detail and their coordinators."""

from __future__ import annotations

from sqlalchemy import select

from service.extensions import db
from service.models import MailingList, User
from tests.conftest import csrf_token_of, log_in

DETAILS = {
    "name": "Tematická skupina krizové bydlení",
    "slug": "ostrava-krizove",
    "municipality": "Ostrava",
    "theme": "krizové bydlení",
    "department": "odbor sociálních věcí",
    "meeting_place": "Magistrát, zasedací místnost 118",
    "meeting_rhythm": "každé druhé úterý v měsíci v 9:30",
    "visibility": "invite",
    "description": "Skupina pro krizové bydlení.\nSchází se pravidelně.",
}


def test_an_admin_creates_a_group_with_all_details_and_coordinators(client, accounts):
    log_in(client, accounts.admin.email)
    listing = client.get("/admin/groups").get_data(as_text=True)
    assert "/admin/groups/new" in listing
    form = client.get("/admin/groups/new").get_data(as_text=True)
    assert accounts.coordinator.email in form
    token = csrf_token_of(client, "/admin/groups/new")
    response = client.post(
        "/admin/groups/new",
        data={**DETAILS, "csrf_token": token, "coordinators": [str(accounts.coordinator.id)]},
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/admin/groups/ostrava-krizove")
    group = db.session.scalar(select(MailingList).filter_by(slug="ostrava-krizove"))
    assert group.kind == "group"
    for name, value in DETAILS.items():
        assert getattr(group, name) == value, name
    coordinator = db.session.get(User, accounts.coordinator.id)
    assert group in coordinator.lists
    page = client.get("/admin/groups/ostrava-krizove").get_data(as_text=True)
    assert "každé druhé úterý v měsíci v 9:30" in page


def test_a_bad_or_taken_slug_is_refused_in_czech(client, accounts):
    log_in(client, accounts.admin.email)
    token = csrf_token_of(client, "/admin/groups/new")
    for slug, message in (
        ("Ostrava PSB", "jen malá písmena bez diakritiky"),
        ("ostrava-psb", "se zkratkou „ostrava-psb“ už existuje"),
        ("new", "vyhrazená"),
    ):
        response = client.post(
            "/admin/groups/new", data={**DETAILS, "slug": slug, "csrf_token": token}
        )
        assert response.status_code == 422, slug
        assert message in response.get_data(as_text=True)
    missing = client.post("/admin/groups/new", data={"csrf_token": token, "slug": "x"})
    assert missing.status_code == 422
    assert "Vyplňte název." in missing.get_data(as_text=True)
    assert db.session.scalar(select(MailingList).filter_by(slug="ostrava-krizove")) is None


def test_coordinators_and_editors_cannot_create_groups(client, accounts):
    for account in (accounts.coordinator, accounts.editor):
        log_in(client, account.email)
        assert client.get("/admin/groups/new").status_code == 403
        client.post("/admin/logout", data={"csrf_token": csrf_token_of(client, "/admin/")})
