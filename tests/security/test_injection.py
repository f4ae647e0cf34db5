"""Header injection and HTML injection through everything people type.

tests/subscriptions/test_form.py already refuses CRLF in a signed-up name,
tests/workers/test_delivery.py every kind of line break in a subject (by the
validating function), tests/issues/test_markdown.py and tests/archive raw HTML
and javascript: links in Markdown. Here: every line break (not only CRLF)
through every way a name, subject, address or group text comes in, the
headers of the mail that actually goes out, and escaping on the pages that
show what people typed.
"""

from __future__ import annotations

import io
from datetime import timedelta
from email import message_from_bytes
from email.policy import default
from email.utils import getaddresses

import pytest
from sqlalchemy import func, select

from service.accounts import create_token
from service.clock import utcnow
from service.extensions import db
from service.groups import membership
from service.models import Issue, MailingList, OutgoingMail, Subscriber, Subscription
from service.subscriptions.transfer import import_subscribers
from tests.conftest import csrf_token_of, log_in, run_jobs

# Every character some software treats as the end of a line.
LINE_BREAKS = ["\r\n", "\n", "\r", "\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1e"]
BREAK_IDS = [repr(b) for b in LINE_BREAKS]
NAME_REFUSED = "Jméno obsahuje nepovolené znaky."
INVALID_EMAIL = "Neplatný e-mail."
ADMIN = "admin@socialnibydleni.example"


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def headers_of(raw: bytes) -> list[tuple[str, str]]:
    message = message_from_bytes(raw, policy=default)
    return [(name.lower(), str(value)) for name, value in message.items()]


# --- names --------------------------------------------------------------------------


@pytest.mark.parametrize("line_break", LINE_BREAKS, ids=BREAK_IDS)
def test_signup_name_with_any_line_break_is_refused_form_and_json(client, line_break):
    name = f"Jana{line_break}Bcc: obet@seznam.cz"
    form = client.post("/subscribe", data={"email": "jana@seznam.cz", "name": name})
    assert form.status_code == 422
    assert NAME_REFUSED in form.get_data(as_text=True)
    sent = client.post("/subscribe", json={"email": "jana@seznam.cz", "name": name})
    assert sent.status_code == 422
    assert sent.json["errors"] == {"name": NAME_REFUSED}
    assert count(Subscriber) == 0
    assert count(OutgoingMail) == 0


@pytest.mark.parametrize("line_break", ["\r\n", "\u2028", "\x85"], ids=repr)
def test_preferences_name_with_a_line_break_is_refused(client, world, line_break):
    token = world.token_for("subscriptions.preferences")
    response = client.post(
        f"/preferences/{token}", data={"name": f"Jana{line_break}To: x@y.cz", "list": "zpravodaj"}
    )
    assert response.status_code == 422
    assert NAME_REFUSED in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Subscriber, world.reader.id).name == "Jana Nováková"


@pytest.mark.parametrize("line_break", ["\r\n", "\u2028", "\x85"], ids=repr)
def test_group_join_name_with_a_line_break_is_refused(client, world, line_break):
    response = client.post(
        "/groups/ostrava-psb/join",
        data={"email": "novy@ostrava.example", "name": f"Nový{line_break}Bcc: x@y.cz"},
    )
    assert response.status_code == 422
    assert NAME_REFUSED in response.get_data(as_text=True)
    assert db.session.scalar(select(Subscriber).filter_by(email="novy@ostrava.example")) is None


@pytest.mark.parametrize("line_break", ["\r\n", "\r", "\u2028", "\x85"], ids=repr)
def test_csv_import_skips_a_name_with_a_line_break(app, line_break):
    zpravodaj = db.session.scalar(select(MailingList).filter_by(slug="zpravodaj"))
    body = f'email,name\n"jana@seznam.cz","Jana{line_break}Bcc: x@y.cz"\npetr@seznam.cz,Petr\n'
    report = import_subscribers(io.StringIO(body, newline=""), zpravodaj, "test")
    db.session.commit()
    assert len(report.problems) == 1
    assert db.session.scalars(select(Subscriber.email)).all() == ["petr@seznam.cz"]


@pytest.mark.parametrize("line_break", ["\r\n", "\u2028", "\x85"], ids=repr)
def test_invitation_name_with_a_line_break_is_refused_in_czech(app, world, line_break):
    with pytest.raises(membership.MembershipError, match=NAME_REFUSED):
        membership.invite(
            world.group, "novy@ostrava.example", f"Nový{line_break}Bcc: x", "", "", "", None
        )
    db.session.rollback()
    assert count(OutgoingMail) == 0


# --- addresses -------------------------------------------------------------------------


@pytest.mark.parametrize("line_break", LINE_BREAKS, ids=BREAK_IDS)
def test_address_with_any_line_break_is_invalid(client, line_break):
    for email in (f"jana@seznam.cz{line_break}Bcc: x@y.cz", f"jana{line_break}@seznam.cz"):
        response = client.post("/subscribe", json={"email": email})
        assert response.status_code == 422, repr(email)
        assert response.json["errors"] == {"email": INVALID_EMAIL}
    assert count(Subscriber) == 0


# --- subjects, group texts, meetings ------------------------------------------------------


@pytest.fixture
def api_headers(accounts) -> dict:
    token = create_token(accounts.admin)
    db.session.commit()
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("line_break", LINE_BREAKS, ids=BREAK_IDS)
def test_issue_subject_with_any_line_break_is_refused_by_api_and_admin(
    client, accounts, api_headers, line_break
):
    subject = f"Zpravodaj{line_break}Bcc: vsichni@seznam.cz"
    response = client.post(
        "/api/v1/lists/zpravodaj/issues",
        json={"subject": subject, "body": "Text."},
        headers=api_headers,
    )
    assert response.status_code == 422
    assert response.json["errors"]["subject"] == (
        "Předmět musí být na jednom řádku a bez řídicích znaků."
    )
    log_in(client, ADMIN)
    page = client.post(
        "/admin/issues/new?list=zpravodaj",
        data={"subject": subject, "body": "Text.", "csrf_token": csrf_token_of(client, "/admin/")},
    )
    assert page.status_code == 422
    assert "Předmět musí být na jednom řádku" in page.get_data(as_text=True)
    assert count(Issue) == 0


@pytest.mark.parametrize("line_break", ["\r\n", "\r", "\u2028", "\u2029", "\x85"], ids=repr)
@pytest.mark.parametrize("field", ["name", "meeting_place", "municipality"])
def test_group_one_line_texts_with_any_line_break_are_refused(app, world, field, line_break):
    with pytest.raises(membership.MembershipError, match="nepovolené znaky"):
        membership.update_group(world.group, **{field: f"Skupina{line_break}Bcc: x@y.cz"})


@pytest.mark.parametrize("line_break", ["\u2028", "\x85"], ids=repr)
def test_group_renamed_in_the_admin_with_a_line_break_is_refused_and_invitations_still_go(
    client, app, world, accounts, outbox, line_break
):
    log_in(client, ADMIN)
    token = csrf_token_of(client, "/admin/")
    response = client.post(
        "/admin/groups/ostrava-psb/details",
        data={
            "name": f"Skupina{line_break}Bcc: x@y.cz",
            "visibility": "public",
            "csrf_token": token,
        },
    )
    assert response.status_code == 422
    assert "nepovolené znaky" in response.get_data(as_text=True)
    response = client.post(
        "/admin/groups/ostrava-psb/invite",
        data={"email": "novy@ostrava.example", "name": "Nový Člen", "csrf_token": token},
    )
    assert response.status_code in (200, 302)
    run_jobs(app)
    (mail,) = outbox.mails
    names = [name for name, _ in headers_of(mail.data)]
    assert "bcc" not in names
    assert names.count("subject") == 1


@pytest.mark.parametrize("line_break", ["\r\n", "\u2028", "\x85"], ids=repr)
def test_meeting_location_with_a_line_break_is_refused_by_the_api(
    client, accounts, api_headers, line_break
):
    response = client.post(
        "/api/v1/lists/ostrava-psb/issues",
        json={
            "subject": "Pozvánka",
            "body": "Přijďte.",
            "meeting": {
                "start": "2099-03-10T09:00",
                "end": "2099-03-10T11:00",
                "location": f"Magistrát{line_break}Bcc: x@y.cz",
            },
        },
        headers=api_headers,
    )
    assert response.status_code == 422
    assert "jednom řádku" in response.json["errors"]["meeting.location"]


# --- what actually goes out ------------------------------------------------------------

HOSTILE_STORED_NAMES = [
    "Jana\r\nBcc: obet@seznam.cz",
    "Jana\u2028Bcc: obet@seznam.cz",
    "Jana\x85Bcc: obet@seznam.cz",
    '"Podvodník" <podvod@example.cz>, obet@seznam.cz',
    "=?utf-8?q?Bcc=3A_obet=40seznam=2Ecz?=",
    "Jiří\rX-Injected: 1",
]


def test_issue_mail_to_people_with_hostile_stored_names_has_only_its_own_headers(
    app, client, accounts, api_headers, outbox
):
    """Names stored before validation existed (or imported raw) never reach a header raw."""
    zpravodaj = db.session.scalar(select(MailingList).filter_by(slug="zpravodaj"))
    earlier = utcnow() - timedelta(minutes=5)  # before the send's snapshot
    for n, name in enumerate(HOSTILE_STORED_NAMES):
        email = f"ctenar{n}@seznam.cz"
        person = Subscriber(email=email, email_key=email, ascii_email=email, name=name)
        person.subscriptions.append(
            Subscription(mailing_list=zpravodaj, status="confirmed", confirmed_at=earlier)
        )
        db.session.add(person)
    db.session.commit()
    created = client.post(
        "/api/v1/lists/zpravodaj/issues",
        json={
            "subject": "Zpravodaj 3/2026: <b>nové</b> byty",
            "body": (
                "[klikni](javascript:alert(1)) <script>alert(2)</script> "
                '<img src=x onerror="alert(3)">'
            ),
        },
        headers=api_headers,
    )
    assert created.status_code == 201
    sent = client.post(f"/api/v1/issues/{created.json['id']}/send", json={}, headers=api_headers)
    assert sent.status_code == 202
    run_jobs(app)
    assert len(outbox.mails) == len(HOSTILE_STORED_NAMES)
    expected = {
        "to",
        "date",
        "message-id",
        "list-unsubscribe",
        "from",
        "subject",
        "list-id",
        "list-unsubscribe-post",
        "mime-version",
        "content-type",
    }
    for mail in outbox.mails:
        headers = headers_of(mail.data)
        names = [name for name, _ in headers]
        assert set(names) - {"dkim-signature", "return-path", "errors-to"} == expected, names
        assert len(names) == len(set(names)), names
        to = dict(headers)["to"]
        assert [address for _, address in getaddresses([to])] == mail.rcpt_tos, to
        assert dict(headers)["subject"] == "Zpravodaj 3/2026: <b>nové</b> byty"
        html = message_from_bytes(mail.data, policy=default).get_body(("html",)).get_content()
        assert "<script" not in html
        assert 'href="javascript:' not in html
        assert "<img src=x" not in html  # shown as text, never a tag with its handler


# --- HTML escaping -------------------------------------------------------------------------

SCRIPT_NAME = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def test_names_are_escaped_on_the_admin_subscriber_pages_and_the_preferences_page(
    client, world, accounts
):
    world.reader.name = SCRIPT_NAME
    db.session.commit()
    log_in(client, ADMIN)
    pages = [
        client.get("/admin/subscribers"),
        client.get("/admin/subscribers?q=jana"),
        client.get(f"/admin/subscribers/{world.reader.id}"),
        client.get(f"/preferences/{world.token_for('subscriptions.preferences')}"),
    ]
    for page in pages:
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        assert "&lt;script&gt;" in html
        assert "<script>alert" not in html
        assert "<img src=x" not in html


def test_subjects_and_group_texts_are_escaped_on_admin_and_public_pages(client, world, accounts):
    world.sent_issue.subject = '<script>alert("s")</script>'
    world.group.meeting_place = "<img src=x onerror=alert(1)>"
    world.group.description = '<a href="javascript:alert(1)">odkaz</a>'
    db.session.commit()
    public = [client.get("/archive/zpravodaj"), client.get("/archive/zpravodaj/1")]
    public.append(client.get("/groups/ostrava-psb"))
    log_in(client, ADMIN)
    admin = [client.get("/admin/issues"), client.get("/admin/groups/ostrava-psb")]
    for page in public + admin:
        assert page.status_code == 200, page.request.path
        html = page.get_data(as_text=True)
        assert "<script>alert" not in html, page.request.path
        assert "<img src=x" not in html, page.request.path
        assert 'href="javascript:' not in html, page.request.path
