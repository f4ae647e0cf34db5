"""CSRF on every admin POST (found in the URL map), none on the public forms; sign-in throttling.

Each admin POST endpoint is posted with realistic form data by a signed-in
admin, once without a token, once with a forged one and once with the token of
another session: each time 400 with the Czech message and nothing changed in
the database. A control post with the right token shows the data was real.
"""

from __future__ import annotations

import io
import re

import pytest
from flask import url_for
from sqlalchemy import inspect, select, text

from service.extensions import db
from service.http_guards import CSRF_MESSAGE as CSRF_LAZY
from service.models import ConsentEvent, OutgoingMail, Subscription
from tests.conftest import PASSWORD, csrf_token_of, log_in
from tests.security.conftest import get_rules, is_admin_page

CSRF_MESSAGE = str(CSRF_LAZY)  # Czech: the default language
ADMIN = "admin@socialnibydleni.example"


def form_for(endpoint: str, world, accounts) -> tuple[dict, dict]:
    """(URL values, form data) a real admin form would post to `endpoint`."""
    csv = "email,name\nnovy@ostrava.example,Nový Člen\n".encode()
    forms = {
        "admin.group_coordinators": (
            {},
            {"user_id": str(accounts.coordinator.id), "action": "remove"},
        ),
        "admin.group_details": ({}, {"name": "Přejmenovaná skupina", "visibility": "invite"}),
        "admin.group_invite": ({}, {"email": "novy@ostrava.example", "name": "Nový Člen"}),
        "admin.group_invite_csv": ({}, {"file": (io.BytesIO(csv), "clenove.csv")}),
        "admin.group_member": ({"action": "remove"}, {}),
        "admin.issue_action": ({"action": "duplicate"}, {}),
        "admin.issue_attachment_add": ({}, {"file": (io.BytesIO(b"%PDF-1.4"), "program.pdf")}),
        "admin.issue_attachment_remove": ({}, {}),
        "admin.issue_edit": ({}, {"subject": "Podvržený předmět", "body": "Podvrh."}),
        "admin.issue_new": ({}, {"list": "zpravodaj", "subject": "Podvrh", "body": "Podvrh."}),
        "admin.meeting_cancel": ({}, {"issue": str(world.invitation.id), "confirm": "1"}),
        "admin.meeting_update": (
            {},
            {
                "issue": str(world.invitation.id),
                "meeting_start": "2099-01-10T09:00",
                "meeting_end": "2099-01-10T11:00",
                "meeting_location": "Jinde",
            },
        ),
        "admin.subscribers_import": (
            {},
            {
                "file": (io.BytesIO(b"email\npodvrh@seznam.cz\n"), "import.csv"),
                "mailing_list": "zpravodaj",
                "consent_source": "podvrh",
            },
        ),
        "admin.users": (
            {},
            {
                "email": "utocnik@example.cz",
                "role": "admin",
                "password": PASSWORD,
                "password_again": PASSWORD,
            },
        ),
        "admin.user_toggle_active": ({"user_id": accounts.editor.id}, {}),
        "admin.logout": ({}, {}),
    }
    return forms.get(endpoint, ({}, {}))


def admin_posts(app, world, accounts) -> list[tuple[str, str, dict]]:
    """(endpoint, URL, form data) of every admin POST but the sign-in form."""
    posts = []
    with app.test_request_context():
        for rule in get_rules(app, "POST", "/admin/"):
            if not is_admin_page(rule):
                continue  # the sign-in form: its own check, tested in tests/admin/test_auth.py
            url_values, data = form_for(rule.endpoint, world, accounts)
            values = world.values_for(rule.endpoint, set(rule.arguments))
            values.update(url_values)
            values = {k: v if v is not None else "x" for k, v in values.items()}
            posts.append((rule.endpoint, url_for(rule.endpoint, **values), data))
    return posts


def database_state() -> dict[str, list]:
    """Every row of every table, to compare before and after."""
    state = {}
    db.session.expire_all()
    for table in sorted(inspect(db.engine).get_table_names()):
        if table == "alembic_version":
            continue
        rows = db.session.execute(text(f'SELECT * FROM "{table}"')).all()
        state[table] = sorted(repr(tuple(row)) for row in rows)
    return state


def fresh(data: dict) -> dict:
    """A copy of form data with unread file objects (a post consumes them)."""
    copied = {}
    for key, value in data.items():
        if isinstance(value, tuple):
            stream, name = value
            stream.seek(0)
            copied[key] = (io.BytesIO(stream.read()), name)
        else:
            copied[key] = value
    return copied


@pytest.mark.parametrize("forgery", ["missing", "forged", "other session"])
def test_every_admin_post_refuses_a_missing_or_wrong_csrf_token(app, world, accounts, forgery):
    client = app.test_client()
    log_in(client, ADMIN)
    other = app.test_client()
    log_in(other, "redakce@socialnibydleni.example")
    tokens = {
        "missing": None,
        "forged": "IjAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMCI.aaaaaa.bbbbbb",
        "other session": csrf_token_of(other, "/admin/"),
    }
    posts = admin_posts(app, world, accounts)
    assert len(posts) >= 15
    before = database_state()
    for endpoint, url, data in posts:
        form = fresh(data)
        if tokens[forgery] is not None:
            form["csrf_token"] = tokens[forgery]
        response = client.post(url, data=form)
        assert response.status_code == 400, (endpoint, response.status_code)
        assert CSRF_MESSAGE in response.get_data(as_text=True), endpoint
        # Scripts (the live progress page) get the same refusal as JSON.
        response = client.post(url, data=fresh(data), headers={"Accept": "application/json"})
        assert response.status_code == 400, endpoint
        assert response.get_json()["errors"] == {"request": CSRF_MESSAGE}, endpoint
    assert database_state() == before
    assert client.get("/admin/").status_code == 200  # still signed in: logout refused too


def test_the_same_posts_with_the_right_token_do_act(app, world, accounts):
    """The control: the refused data above was real, the token alone made the difference."""
    client = app.test_client()
    log_in(client, ADMIN)
    token = csrf_token_of(client, "/admin/")
    acted = {}
    for endpoint, url, data in admin_posts(app, world, accounts):
        if endpoint == "admin.logout":
            continue
        before = database_state()
        response = client.post(url, data={**fresh(data), "csrf_token": token})
        assert response.status_code < 500, endpoint
        assert CSRF_MESSAGE not in response.get_data(as_text=True), endpoint
        acted[endpoint] = database_state() != before
    changed = {endpoint for endpoint, did in acted.items() if did}
    assert {
        "admin.group_details",
        "admin.group_invite",
        "admin.group_member",
        "admin.issue_action",
        "admin.issue_new",
        "admin.users",
        "admin.user_toggle_active",
    } <= changed


def test_public_forms_and_one_click_unsubscribe_need_no_token(app, world, client):
    response = client.post("/subscribe", data={"email": "nova@seznam.cz", "list": "novinky"})
    assert response.status_code == 202
    with app.test_request_context():
        path = url_for(
            "subscriptions.unsubscribe_post", token=world.token_for("subscriptions.unsubscribe")
        )
    # RFC 8058: a mail provider posts without cookies, token or referrer.
    stranger = app.test_client(use_cookies=False)
    response = stranger.post(
        path, data={"List-Unsubscribe": "One-Click"}, content_type="multipart/form-data"
    )
    assert response.status_code == 200
    status = db.session.scalar(
        select(Subscription.status).filter_by(subscriber_id=world.reader.id, list_id=1)
    )
    assert status == "unsubscribed"
    assert db.session.scalar(select(ConsentEvent.channel).filter_by(action="unsubscribe")) == (
        "one-click"
    )


def test_no_public_post_is_refused_for_a_missing_csrf_token(app, world):
    """Every POST outside /admin and the API works from a cookie-less client."""
    client = app.test_client(use_cookies=False)
    with app.test_request_context():
        for rule in get_rules(app, "POST"):
            if rule.rule.startswith(("/admin/", "/api/")):
                continue
            values = world.values_for(rule.endpoint, set(rule.arguments))
            response = client.post(url_for(rule.endpoint, **values), data={"email": "x@seznam.cz"})
            assert response.status_code < 500, rule.endpoint
            assert CSRF_MESSAGE not in response.get_data(as_text=True), rule.endpoint


# --- sign-in throttling ------------------------------------------------------------


def _sign_in(client, email: str, password: str, ip: str) -> int:
    page = client.get("/admin/login", environ_overrides={"REMOTE_ADDR": ip})
    token = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page.data).group(1)
    response = client.post(
        "/admin/login",
        data={"email": email, "password": password, "csrf_token": token.decode()},
        environ_overrides={"REMOTE_ADDR": ip},
    )
    return response.status_code


class TestSignInThrottling:
    """Per IP (many accounts from one address) and per account and IP; never per account
    alone, which let anyone lock the owner out (issue 11, finding 5)."""

    @pytest.fixture
    def app_config(self, app_config):
        return {
            **app_config,
            "RATE_LIMITS": True,
            "RATE_LIMIT_LOGIN_IP": "4 per minute",
            "RATE_LIMIT_LOGIN_ACCOUNT": "3 per minute",
        }

    def test_sign_in_is_throttled_per_ip_across_accounts(self, app, accounts):
        client = app.test_client()
        emails = [f"nikdo{n}@socialnibydleni.example" for n in range(5)]
        statuses = [_sign_in(client, e, "hádám-heslo", "192.0.2.10") for e in emails]
        assert statuses == [401] * 4 + [429]
        # The right password from that address waits too; from another address it works.
        assert _sign_in(client, ADMIN, PASSWORD, "192.0.2.10") == 429
        assert _sign_in(app.test_client(), ADMIN, PASSWORD, "192.0.2.11") == 302

    def test_guesses_for_one_account_from_many_ips_do_not_lock_the_owner_out(self, app, accounts):
        client = app.test_client()
        statuses = [
            _sign_in(client, "redakce@socialnibydleni.example", "hádám-heslo", f"192.0.2.{n}")
            for n in range(20, 24)
        ]
        assert statuses == [401] * 4  # each address has its own budget for the account
        assert _sign_in(client, "REDAKCE@socialnibydleni.example", PASSWORD, "192.0.2.99") == 302

    def test_one_ip_guessing_one_account_is_throttled(self, app, accounts):
        client = app.test_client()
        statuses = [
            _sign_in(client, "redakce@socialnibydleni.example", "hádám-heslo", "192.0.2.30")
            for _ in range(4)
        ]
        assert statuses == [401] * 3 + [429]

    def test_throttled_sign_in_answers_in_czech(self, app, accounts):
        client = app.test_client()
        for n in range(3):
            _sign_in(client, ADMIN, f"špatně-{n}", "192.0.2.50")
        page = client.get("/admin/login", environ_overrides={"REMOTE_ADDR": "192.0.2.50"})
        token = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page.data).group(1)
        response = client.post(
            "/admin/login",
            data={"email": ADMIN, "password": "x", "csrf_token": token.decode()},
            environ_overrides={"REMOTE_ADDR": "192.0.2.50"},
        )
        assert response.status_code == 429
        assert "Příliš mnoho pokusů" in response.get_data(as_text=True)
        assert "Retry-After" in response.headers
        assert db.session.scalar(select(OutgoingMail.id)) is None
