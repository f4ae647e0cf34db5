"""Admin sessions end when they should: a copied cookie is replayed as an attacker would."""

from __future__ import annotations

import pytest
from itsdangerous.timed import TimestampSigner

from service.extensions import db
from tests.conftest import PASSWORD, csrf_token_of, log_in

EDITOR = "redakce@socialnibydleni.example"
NEW_PASSWORD = "nové-heslo-4567"


def copied_session_cookie(client) -> str:
    """The session cookie's value, as someone reading the victim's browser would take it."""
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def replay(app, cookie: str):
    """A fresh browser (the attacker's) that presents only the copied cookie."""
    attacker = app.test_client()
    attacker.set_cookie("session", cookie, domain="localhost")
    return attacker.get("/admin/")


def test_a_copied_cookie_works_while_the_session_lives(app, client, accounts):
    log_in(client, EDITOR)
    assert replay(app, copied_session_cookie(client)).status_code == 200


def test_a_copied_cookie_stops_working_after_sign_out(app, client, accounts):
    log_in(client, EDITOR)
    stolen = copied_session_cookie(client)
    client.post("/admin/logout", data={"csrf_token": csrf_token_of(client, "/admin/")})
    response = replay(app, stolen)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login")


def test_signing_out_ends_the_sessions_on_other_browsers_too(app, client, accounts):
    log_in(client, EDITOR)
    laptop = app.test_client()
    log_in(laptop, EDITOR)
    laptop.post("/admin/logout", data={"csrf_token": csrf_token_of(laptop, "/admin/")})
    assert client.get("/admin/").status_code == 302


def test_a_password_change_ends_every_other_session(app, client, accounts):
    log_in(client, EDITOR)
    stolen = copied_session_cookie(client)
    response = client.post(
        "/admin/password",
        data={
            "csrf_token": csrf_token_of(client, "/admin/password"),
            "current": PASSWORD,
            "password": NEW_PASSWORD,
            "password_again": NEW_PASSWORD,
        },
    )
    assert response.status_code == 302
    assert replay(app, stolen).status_code == 302
    # The browser that changed it stays signed in, and the new password works.
    assert client.get("/admin/").status_code == 200
    assert log_in(app.test_client(), EDITOR, NEW_PASSWORD).status_code == 302


def test_a_password_change_needs_the_current_password(app, client, accounts):
    log_in(client, EDITOR)
    response = client.post(
        "/admin/password",
        data={
            "csrf_token": csrf_token_of(client, "/admin/password"),
            "current": "hádám-heslo-123",
            "password": NEW_PASSWORD,
            "password_again": NEW_PASSWORD,
        },
    )
    assert response.status_code == 422
    assert "Současné heslo nesouhlasí." in response.text
    assert log_in(app.test_client(), EDITOR, NEW_PASSWORD).status_code == 401


def test_disabling_an_account_ends_its_sessions_for_good(app, client, accounts):
    log_in(client, EDITOR)
    stolen = copied_session_cookie(client)
    admin = app.test_client()
    log_in(admin, "admin@socialnibydleni.example")
    toggle = f"/admin/users/{accounts.editor.id}/active"
    token = csrf_token_of(admin, "/admin/users")
    assert admin.post(toggle, data={"csrf_token": token}).status_code == 302
    assert replay(app, stolen).status_code == 302
    # Enabled again, the account needs a new sign-in: the old cookie stays dead.
    assert admin.post(toggle, data={"csrf_token": token}).status_code == 302
    db.session.expire_all()
    assert accounts.editor.active
    assert replay(app, stolen).status_code == 302


def test_a_session_from_before_generations_is_refused(app, client, accounts):
    with client.session_transaction() as session:
        session["_user_id"] = str(accounts.editor.id)  # the old format: id only
        session["_fresh"] = True
    assert client.get("/admin/").status_code == 302


class SigningClock:
    """The clock itsdangerous stamps and checks the session cookie with."""

    def __init__(self, monkeypatch) -> None:
        self.now = 1_800_000_000
        monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda signer: self.now)

    def advance(self, *, hours: float) -> None:
        self.now += int(hours * 3600)


@pytest.fixture
def signing_clock(monkeypatch) -> SigningClock:
    return SigningClock(monkeypatch)


def test_an_idle_session_expires_after_admin_session_hours(app, client, accounts, signing_clock):
    assert app.config["ADMIN_SESSION_HOURS"] == 8
    log_in(client, EDITOR)
    stolen = copied_session_cookie(client)
    signing_clock.advance(hours=7)
    assert client.get("/admin/").status_code == 200  # in use: renewed
    signing_clock.advance(hours=7)
    assert client.get("/admin/").status_code == 200
    # The copy was last used 14 hours ago; the browser in use 7 hours ago.
    assert replay(app, stolen).status_code == 302
    signing_clock.advance(hours=8.02)
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login")
