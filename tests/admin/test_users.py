"""Administrators manage accounts; nobody else may."""

from __future__ import annotations

from sqlalchemy import select

from service.extensions import db
from service.models import MailingList, User
from tests.conftest import csrf_token_of, log_in


def create(client, **fields):
    data = {
        "email": "nova@socialnibydleni.example",
        "role": "editor",
        "password": "dlouhé-heslo-42",
        "password_again": "dlouhé-heslo-42",
        "csrf_token": csrf_token_of(client, "/admin/users"),
        **fields,
    }
    return client.post("/admin/users", data=data)


def test_admin_creates_an_editor_who_can_then_sign_in(app, client, accounts):
    log_in(client, "admin@socialnibydleni.example")
    assert create(client).status_code == 302
    assert "nova@socialnibydleni.example" in client.get("/admin/users").get_data(as_text=True)
    other = app.test_client()
    assert log_in(other, "nova@socialnibydleni.example", "dlouhé-heslo-42").status_code == 302


def test_coordinator_is_created_with_their_groups(client, accounts):
    log_in(client, "admin@socialnibydleni.example")
    group = db.session.scalar(select(MailingList).filter_by(slug="ostrava-psb"))
    assert create(client, role="coordinator", lists=[str(group.id)]).status_code == 302
    user = db.session.scalar(select(User).filter_by(email="nova@socialnibydleni.example"))
    assert [g.slug for g in user.lists] == ["ostrava-psb"]


def test_bad_accounts_are_refused_in_czech(client, accounts):
    log_in(client, "admin@socialnibydleni.example")
    short = create(client, password="krátké", password_again="krátké")
    assert short.status_code == 422
    assert "alespoň 10 znaků" in short.get_data(as_text=True)
    mismatch = create(client, password_again="jiné-dlouhé-heslo")
    assert mismatch.status_code == 422
    assert "Hesla se neshodují." in mismatch.get_data(as_text=True)
    lonely = create(client, role="coordinator")
    assert lonely.status_code == 422
    assert "alespoň jednu skupinu" in lonely.get_data(as_text=True)
    twice = create(client, email="redakce@socialnibydleni.example")
    assert twice.status_code == 422
    assert "už existuje" in twice.get_data(as_text=True)


def test_deactivated_account_is_signed_out_and_cannot_return(app, client, accounts):
    editor = app.test_client()
    log_in(editor, "redakce@socialnibydleni.example")
    assert editor.get("/admin/").status_code == 200
    log_in(client, "admin@socialnibydleni.example")
    token = csrf_token_of(client, "/admin/users")
    user_id = accounts.editor.id
    assert (
        client.post(f"/admin/users/{user_id}/active", data={"csrf_token": token}).status_code == 302
    )
    assert editor.get("/admin/").status_code == 302
    assert log_in(editor, "redakce@socialnibydleni.example").status_code == 401


def test_only_admins_manage_accounts(client, accounts):
    log_in(client, "redakce@socialnibydleni.example")
    assert client.get("/admin/users").status_code == 403
    token = csrf_token_of(client, "/admin/")
    response = client.post(
        "/admin/users",
        data={"email": "x@socialnibydleni.example", "role": "admin", "csrf_token": token},
    )
    assert response.status_code == 403
    assert "Účty" not in client.get("/admin/").get_data(as_text=True)


def test_a_coordinator_cannot_be_given_a_newsletter(client, accounts):
    log_in(client, "admin@socialnibydleni.example")
    newsletter = db.session.scalar(select(MailingList).filter_by(slug="zpravodaj"))
    response = create(client, role="coordinator", lists=[str(newsletter.id)])
    assert response.status_code == 422
    assert db.session.scalar(select(User).filter_by(email="nova@socialnibydleni.example")) is None


def test_huge_ids_in_admin_urls_are_404_not_500(client, accounts):
    log_in(client, "admin@socialnibydleni.example")
    token = csrf_token_of(client, "/admin/")
    for path in (
        "/admin/issues/3000000000",
        "/admin/subscribers/3000000000",
        "/admin/issues/99999999999999999999",
        "/admin/subscribers/99999999999999999999",
    ):
        assert client.get(path).status_code == 404, path
    # A page number is no id: one beyond the last shows the last, as on the subscribers' page.
    from service.admin.issues import PER_PAGE
    from service.issues import sending

    newsletter = db.session.scalar(select(MailingList).filter_by(slug="zpravodaj"))
    for n in range(PER_PAGE + 1):
        fields, _ = sending.validate_fields(f"Vydání {n}", "Text.", "")
        sending.create_issue(newsletter, fields, None)
    db.session.commit()
    response = client.get("/admin/issues?page=99999999999999999999")
    assert response.status_code == 200
    assert "stránka 2 z 2" in response.get_data(as_text=True)
    response = client.post("/admin/users/3000000000/active", data={"csrf_token": token})
    assert response.status_code == 404


def test_a_tampered_role_is_refused_in_czech(client, accounts):
    log_in(client, "admin@socialnibydleni.example")
    response = create(client, role="superuser")
    assert response.status_code == 422
    assert "Neplatná volba." in response.get_data(as_text=True)
