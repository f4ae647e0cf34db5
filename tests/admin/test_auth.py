"""Signing in to the admin: passwords, throttling, CSRF, cookies, roles."""

from __future__ import annotations

import re

import pytest

from service.extensions import db
from tests.conftest import PASSWORD, csrf_token_of, log_in, make_config


def test_admin_pages_need_sign_in(client, accounts):
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login")


def test_sign_in_with_the_right_password_opens_the_dashboard(client, accounts):
    response = log_in(client, "REDAKCE@socialnibydleni.example")  # addresses ignore case
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    assert accounts.editor.last_login_at is not None


def test_wrong_password_is_refused_in_czech(client, accounts):
    response = log_in(client, "redakce@socialnibydleni.example", "špatné-heslo-123")
    assert response.status_code == 401
    assert "Nesprávný e-mail nebo heslo." in response.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302


def test_unknown_account_gets_the_same_answer(client, accounts):
    response = log_in(client, "nikdo@socialnibydleni.example")
    assert response.status_code == 401
    assert "Nesprávný e-mail nebo heslo." in response.get_data(as_text=True)


def test_deactivated_account_cannot_sign_in(client, accounts):
    accounts.editor.active = False
    db.session.commit()
    assert log_in(client, "redakce@socialnibydleni.example").status_code == 401


def test_sign_in_without_csrf_token_is_refused(client, accounts):
    response = client.post(
        "/admin/login", data={"email": "redakce@socialnibydleni.example", "password": PASSWORD}
    )
    assert response.status_code == 422
    assert "Formulář vypršel" in response.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302


def test_after_sign_in_only_admin_paths_are_followed(client, accounts):
    page = client.get("/admin/login?next=https://evil.example/")
    token = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page.data).group(1)
    response = client.post(
        "/admin/login?next=https://evil.example/",
        data={
            "email": "redakce@socialnibydleni.example",
            "password": PASSWORD,
            "csrf_token": token.decode(),
        },
    )
    assert response.headers["Location"] == "/admin/"


def test_sign_out_needs_a_post_with_csrf(client, accounts):
    log_in(client, "redakce@socialnibydleni.example")
    assert client.get("/admin/logout").status_code == 405
    assert client.post("/admin/logout").status_code == 400
    token = csrf_token_of(client, "/admin/")
    response = client.post("/admin/logout", data={"csrf_token": token})
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 302


def test_session_cookie_is_http_only_and_same_site(client, accounts):
    response = log_in(client, "redakce@socialnibydleni.example")
    cookies = response.headers.getlist("Set-Cookie")
    session_cookie = next(c for c in cookies if c.startswith("session="))
    assert "HttpOnly" in session_cookie
    assert "SameSite=Lax" in session_cookie


@pytest.fixture
def https_app(database_url, redis_url, outbox):
    from service import create_app

    config = make_config(database_url, redis_url, outbox.url, BASE_URL="https://zpravodaj.test")
    return create_app(config)


def test_session_cookie_is_secure_behind_https(https_app):
    assert https_app.config["SESSION_COOKIE_SECURE"] is True
    assert https_app.config["REMEMBER_COOKIE_SECURE"] is True


class TestThrottling:
    @pytest.fixture
    def app_config(self, app_config):
        app_config.update(RATE_LIMITS=True)
        return app_config

    def test_repeated_wrong_passwords_for_one_account_are_throttled(self, client, accounts):
        statuses = [
            log_in(client, "redakce@socialnibydleni.example", f"hádám-{n}-heslo").status_code
            for n in range(6)
        ]
        assert statuses == [401] * 5 + [429]
        # Now even the right password waits: the guesser cannot tell it was right.
        assert log_in(client, "Redakce@socialnibydleni.example").status_code == 429
        # Another account from the same address is not locked out yet.
        assert log_in(client, "admin@socialnibydleni.example").status_code == 302

    def test_one_address_trying_many_accounts_is_throttled(self, client, app, accounts):
        app.config["RATE_LIMIT_LOGIN_IP"] = "4 per minute"
        statuses = [
            log_in(client, f"nekdo{n}@socialnibydleni.example", "hádám-heslo-123").status_code
            for n in range(5)
        ]
        assert statuses == [401] * 4 + [429]
        assert "Příliš mnoho" in log_in(client, "admin@socialnibydleni.example").text
