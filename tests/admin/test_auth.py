"""Signing in to the admin: passwords, throttling, CSRF, cookies, roles."""

from __future__ import annotations

import re
from typing import ClassVar

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


def test_sign_out_clears_a_remember_me_cookie(client, accounts):
    """Flask-Login's hook after each request runs only when it has work
    (web_extensions.LoginManager): signing out still deletes a remember-me cookie."""
    log_in(client, "redakce@socialnibydleni.example")
    client.set_cookie("remember_token", "1|left-from-an-older-sign-in")
    token = csrf_token_of(client, "/admin/")
    response = client.post("/admin/logout", data={"csrf_token": token})
    assert response.status_code == 302
    cleared = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("remember_token=")]
    assert cleared and "Expires=Thu, 01 Jan 1970" in cleared[0], cleared
    # A public page with no remember-me work sets no cookie of Flask-Login's.
    page = client.get("/subscribe")
    assert not [c for c in page.headers.getlist("Set-Cookie") if c.startswith("remember_token=")]


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
    """Guessing is slowed per client address and per account and address, never locking
    the owner out from elsewhere (issue 11, finding 5)."""

    ATTACKER: ClassVar[dict[str, str]] = {"REMOTE_ADDR": "203.0.113.66"}
    OWNER: ClassVar[dict[str, str]] = {"REMOTE_ADDR": "198.51.100.7"}

    @pytest.fixture
    def app_config(self, app_config):
        app_config.update(RATE_LIMITS=True)
        return app_config

    def guess(self, app, environ, email="redakce@socialnibydleni.example", times=1):
        client = app.test_client()
        client.environ_base.update(environ)
        return [log_in(client, email, f"hádám-{n}-heslo") for n in range(times)]

    def test_an_attacker_elsewhere_cannot_lock_the_owner_out(self, app, accounts):
        answers = self.guess(app, self.ATTACKER, times=12)
        assert answers[0].status_code == 401
        assert answers[-1].status_code == 429
        owner = app.test_client()
        owner.environ_base.update(self.OWNER)
        assert log_in(owner, "Redakce@socialnibydleni.example").status_code == 302
        assert owner.get("/admin/").status_code == 200

    def test_one_client_that_keeps_failing_waits_longer_and_longer(self, app, accounts):
        answers = self.guess(app, self.ATTACKER, times=5)
        assert [a.status_code for a in answers] == [401, 401, 401, 401, 429]
        refused = answers[-1]
        assert "Příliš mnoho neúspěšných pokusů o přihlášení" in refused.text
        assert re.search(r"Zkuste to prosím znovu za [12] s\.", refused.text)
        # Even the right password waits: the guesser cannot tell it was right.
        client = app.test_client()
        client.environ_base.update(self.ATTACKER)
        assert log_in(client, "redakce@socialnibydleni.example").status_code == 429
        # The same client may still sign in to another account.
        assert log_in(client, "admin@socialnibydleni.example").status_code == 302

    def test_the_delay_doubles_with_each_failure(self):
        from service.admin.throttling import MAX_DELAY_SECONDS, delay_after

        assert [delay_after(n) for n in range(1, 8)] == [0, 0, 0, 2, 4, 8, 16]
        assert delay_after(100) == MAX_DELAY_SECONDS

    def test_a_success_starts_the_count_again(self, app, accounts):
        self.guess(app, self.OWNER, times=3)
        owner = app.test_client()
        owner.environ_base.update(self.OWNER)
        assert log_in(owner, "redakce@socialnibydleni.example").status_code == 302
        # Without the reset the second of these would wait (the fifth failure in a row).
        answers = self.guess(app, self.OWNER, times=2)
        assert [a.status_code for a in answers] == [401, 401]

    def test_failed_sign_ins_are_logged_without_the_password(self, app, accounts, caplog):
        self.guess(app, self.ATTACKER, times=1)
        self.guess(app, self.ATTACKER, email="nikdo@socialnibydleni.example")
        logged = caplog.text
        assert f"admin sign-in failed for account {accounts.editor.id}" in logged
        assert "203.0.113.66" in logged
        assert "unknown account" in logged
        assert "hádám-0-heslo" not in logged
        assert "nikdo@" not in logged

    def test_failed_sign_ins_of_the_last_day_show_in_the_account_list(self, app, accounts):
        self.guess(app, self.ATTACKER, times=3)
        self.guess(app, self.OWNER, times=1)
        admin = app.test_client()
        log_in(admin, "admin@socialnibydleni.example")
        page = admin.get("/admin/users").text
        assert "Neúspěšná přihlášení za 24 h" in page
        row = re.search(r"<tr>\s*<td>redakce@socialnibydleni.example</td>.*?</tr>", page, re.S)
        assert re.search(r'class="failed-sign-ins"><strong>4</strong>', row.group(0))

    def test_one_address_trying_many_accounts_is_throttled(self, client, app, accounts):
        app.config["RATE_LIMIT_LOGIN_IP"] = "4 per minute"
        statuses = [
            log_in(client, f"nekdo{n}@socialnibydleni.example", "hádám-heslo-123").status_code
            for n in range(5)
        ]
        assert statuses == [401] * 4 + [429]
        assert "Příliš mnoho" in log_in(client, "admin@socialnibydleni.example").text

    def test_one_address_and_account_is_limited_per_minute_as_well(self, app, accounts):
        app.config["RATE_LIMIT_LOGIN_ACCOUNT"] = "2 per minute"
        statuses = [a.status_code for a in self.guess(app, self.ATTACKER, times=3)]
        assert statuses == [401, 401, 429]
        owner = app.test_client()
        owner.environ_base.update(self.OWNER)
        assert log_in(owner, "redakce@socialnibydleni.example").status_code == 302
