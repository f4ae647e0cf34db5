"""Members' answers: the mail's RSVP page, calendar replies (SMTP receiver and pipe),
and the coordinator's attendance (API counts, admin page, CSV, sheet, ticks).

Real parts: the delivery engine sends the invitation to the SMTP sink, the
answers come back through the pages, the real SMTP receiver on loopback and
the `zpravodaj replies process` command.
"""

from __future__ import annotations

import csv
import io
import smtplib
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from urllib.parse import urlsplit

import icalendar
import pytest
from sqlalchemy import func, select, update

from service.accounts import create_token, create_user
from service.bounces.receiver import make_controller
from service.clock import utcnow
from service.dev.processes import free_port
from service.extensions import db
from service.meetings import rules as meetings
from service.models import (
    Issue,
    MailingList,
    Meeting,
    MeetingResponse,
    Subscriber,
    Subscription,
)
from tests.conftest import PASSWORD, log_in, run_jobs
from tests.meetings.test_meetings import (
    calendars,
    event_of,
    make_invitation,
    meeting_input,
    members,  # noqa: F401  (a fixture)
    send,
    winter_thursday_10th,
)


@pytest.fixture
def invited(app, outbox, members):  # noqa: F811
    """An invitation delivered to the three members; returns {address: caught mail}."""
    send(make_invitation(winter_thursday_10th().replace(hour=9, minute=30)))
    run_jobs(app)
    mails = {mail.rcpt_tos[0]: mail for mail in outbox.mails}
    outbox.catcher.clear()
    return mails


def rsvp_link(mail, choice: str) -> str:
    text = mail.message.get_body(("plain",)).get_content()
    for line in text.splitlines():
        label, _, url = line.partition(": ")
        if label == choice and urlsplit(url).path.startswith("/rsvp/"):
            parts = urlsplit(url)
            return f"{parts.path}?{parts.query}"
    raise AssertionError(f"no {choice} link in the mail")


def answers() -> dict[str, tuple[str, str]]:
    rows = db.session.execute(
        select(Subscriber.email, MeetingResponse.partstat, MeetingResponse.note).join(
            MeetingResponse, MeetingResponse.subscriber_id == Subscriber.id
        )
    )
    return {email: (partstat, note) for email, partstat, note in rows}


def the_meeting() -> Meeting:
    db.session.expire_all()
    return db.session.scalar(select(Meeting))


# --- the RSVP page ----------------------------------------------------------------


def test_the_mail_offers_three_answers_and_the_page_changes_nothing_on_get(app, client, invited):
    mail = invited["odberatel0@example.cz"]
    html = mail.message.get_body(("html",)).get_content()
    for choice in ("prijdu", "mozna", "neprijdu"):
        assert f"?odpoved={choice}" in html
    path = rsvp_link(mail, "Nepřijdu")
    for _ in range(3):  # a scanner fetching the link, twice, then the member
        page = client.get(path)
        assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "Setkání PSB v prosinci" in body
    assert 'value="neprijdu" checked' in body
    assert answers() == {}
    assert page.headers["Cache-Control"] == "no-store"


def test_a_member_answers_changes_the_answer_and_leaves_a_note(app, client, invited):
    path = rsvp_link(invited["odberatel1@example.cz"], "Přijdu").split("?")[0]
    saved = client.post(path, data={"odpoved": "prijdu", "poznamka": ""})
    assert saved.status_code == 200
    assert "odpověď „Přijdu“ je uložena" in saved.get_data(as_text=True)
    assert answers() == {"odberatel1@example.cz": ("ACCEPTED", "")}

    note = "Přijde za nás kolegyně Nováková."
    client.post(path, data={"odpoved": "mozna", "poznamka": note})
    assert answers() == {"odberatel1@example.cz": ("TENTATIVE", note)}
    assert client.get(path).get_data(as_text=True).count('value="mozna" checked') == 1

    refused = client.post(path, data={"odpoved": "kdovi"})
    assert refused.status_code == 422
    assert "Vyberte prosím, zda přijdete." in refused.get_data(as_text=True)
    too_long = client.post(path, data={"odpoved": "prijdu", "poznamka": "x" * 501})
    assert too_long.status_code == 422
    assert answers() == {"odberatel1@example.cz": ("TENTATIVE", note)}


def test_answers_close_when_the_meeting_starts(app, client, invited):
    path = rsvp_link(invited["odberatel0@example.cz"], "Přijdu").split("?")[0]
    client.post(path, data={"odpoved": "prijdu"})
    db.session.execute(update(Meeting).values(start=utcnow() - timedelta(minutes=5)))
    db.session.commit()
    late = client.post(path, data={"odpoved": "neprijdu"})
    assert late.status_code == 409
    assert "Setkání už začalo" in late.get_data(as_text=True)
    assert answers() == {"odberatel0@example.cz": ("ACCEPTED", "")}
    assert 'name="odpoved"' not in client.get(path).get_data(as_text=True)


def test_a_forged_or_foreign_rsvp_link_records_nothing(app, client, invited):
    path = rsvp_link(invited["odberatel0@example.cz"], "Přijdu").split("?")[0]
    assert client.post(path + "x", data={"odpoved": "prijdu"}).status_code == 400
    db.session.execute(update(Subscription).values(status="unsubscribed"))
    db.session.commit()
    assert client.post(path, data={"odpoved": "prijdu"}).status_code == 403
    assert answers() == {}


# --- calendar replies ---------------------------------------------------------------


def reply_for(mail, partstat: str, *, method: str = "REPLY", sequence: int | None = None,
              organizer: str | None = None) -> tuple[str, bytes]:  # fmt: skip
    """What a calendar app mails when its user answers the invitation `mail`: (to, bytes)."""
    [invitation] = calendars(type("Box", (), {"mails": [mail]})())
    event = event_of(invitation)
    to = organizer or str(event["ORGANIZER"])[len("mailto:") :]
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//Microsoft Corporation//Outlook 16.0 MIMEDIR//EN")
    calendar.add("version", "2.0")
    calendar.add("method", method)
    answer = icalendar.Event()
    answer.add("uid", str(event["UID"]))
    answer.add("sequence", event["SEQUENCE"] if sequence is None else sequence)
    answer.add("dtstamp", utcnow())
    answer.add(
        "dtstart", event.decoded("DTSTART") + timedelta(days=1 if method == "COUNTER" else 0)
    )
    answer.add("dtend", event.decoded("DTEND") + timedelta(days=1 if method == "COUNTER" else 0))
    answer.add("organizer", event["ORGANIZER"])
    if "RECURRENCE-ID" in event:  # an answer about one date of a series
        answer.add("recurrence-id", event.decoded("RECURRENCE-ID"))
    attendee = icalendar.vCalAddress(str(event["ATTENDEE"]))
    attendee.params["PARTSTAT"] = partstat
    answer.add("attendee", attendee)
    if method == "COUNTER":
        answer.add("comment", "Ve čtvrtek máme poradu, šlo by to o den později?")
    calendar.add_component(answer)
    message = EmailMessage()
    message["From"] = mail.rcpt_tos[0]
    message["To"] = to
    message["Subject"] = f"Přijato: {mail.message['Subject']}"
    message.set_content("Přijímám.")
    message.add_alternative(
        calendar.to_ical().decode(), subtype="calendar", params={"method": method}
    )
    return to, message.as_bytes(policy=policy.SMTP)  # CRLF, as mail travels


@pytest.fixture
def receiver(app):
    port = free_port("127.0.0.1")
    controller = make_controller(app, "127.0.0.1", port)
    controller.start()
    yield port
    controller.stop()


def test_a_reply_mailed_to_the_receiver_is_recorded(app, invited, receiver):
    mail = invited["odberatel2@example.cz"]
    to, raw = reply_for(mail, "ACCEPTED")
    assert to.startswith("rsvp+m")
    with smtplib.SMTP("127.0.0.1", receiver, timeout=10) as smtp:
        smtp.sendmail("odberatel2@example.cz", [to], raw)
    assert answers() == {"odberatel2@example.cz": ("ACCEPTED", "")}
    response = db.session.scalar(select(MeetingResponse))
    assert response.channel == "calendar"


def test_a_reply_through_the_pipe_is_recorded_and_a_stale_one_ignored(app, runner, invited):
    mail = invited["odberatel0@example.cz"]
    _, raw = reply_for(mail, "DECLINED")
    result = runner.invoke(args=["replies", "process", "-"], input=raw)
    assert result.exit_code == 0, result.output
    assert "Odpověď zaznamenána: DECLINED" in result.output
    assert answers() == {"odberatel0@example.cz": ("DECLINED", "")}

    meetings.update_meeting(
        the_meeting(), meeting_input(winter_thursday_10th().replace(hour=13)), None
    )
    db.session.commit()
    _, stale = reply_for(mail, "ACCEPTED", sequence=0)
    result = runner.invoke(args=["replies", "process", "-"], input=stale)
    assert result.exit_code == 0
    assert "starší verzi" in result.output
    assert answers() == {"odberatel0@example.cz": ("DECLINED", "")}
    _, current = reply_for(mail, "ACCEPTED", sequence=1)
    runner.invoke(args=["replies", "process", "-"], input=current)
    assert answers() == {"odberatel0@example.cz": ("ACCEPTED", "")}


def test_a_forged_reply_address_or_uid_records_nothing(app, runner, invited, receiver):
    mail = invited["odberatel0@example.cz"]
    to, _ = reply_for(mail, "ACCEPTED")
    forged = to.replace(to.split("-")[1][:4], "0000")
    _, raw = reply_for(mail, "ACCEPTED", organizer=forged)
    with smtplib.SMTP("127.0.0.1", receiver, timeout=10) as smtp:
        smtp.sendmail("odberatel0@example.cz", [forged], raw)
    # Another member's signed address does not let one answer for them with a UID not theirs.
    other_to, _ = reply_for(invited["odberatel1@example.cz"], "ACCEPTED")
    result = runner.invoke(args=["replies", "process", "-"], input=raw.replace(b"rsvp+", b"x"))
    assert result.exit_code == 0 and "podepsanou adresu" in result.output
    assert answers() == {}
    junk = runner.invoke(args=["replies", "process", "-"], input=b"Subject: ahoj\r\n\r\nnic\r\n")
    assert junk.exit_code == 65
    assert other_to != to


def test_a_counter_proposal_is_passed_to_the_coordinator_politely(
    app, runner, accounts, outbox, invited
):
    db.session.execute(
        update(Subscription).values(organization="Úřad práce Ostrava", institution="urad-prace")
    )
    db.session.commit()
    _, raw = reply_for(invited["odberatel1@example.cz"], "TENTATIVE", method="COUNTER")
    result = runner.invoke(args=["replies", "process", "-"], input=raw)
    assert result.exit_code == 0 and "Návrh jiného termínu" in result.output
    run_jobs(app)
    [notice] = outbox.mails
    assert notice.rcpt_tos == ["koordinator@ostrava.example"]
    assert str(notice.message["Subject"]).startswith("Návrh jiného termínu: Setkání PSB")
    text = notice.message.get_body(("plain",)).get_content()
    assert "Čtenář 1 (Úřad práce Ostrava, Úřad práce) navrhuje" in text
    assert "Ve čtvrtek máme poradu" in text
    assert "Navržený termín: pátek" in text
    assert answers() == {}


# --- attendance for the coordinator ---------------------------------------------------


def api_get(client, token: str, path: str):
    return client.get(path, headers={"Authorization": f"Bearer {token}"})


def test_the_api_counts_the_answers(app, client, accounts, invited):
    token = create_token(accounts.coordinator)
    db.session.commit()
    assert db.session.scalar(select(func.count(MeetingResponse.id))) == 0
    client.post(
        rsvp_link(invited["odberatel0@example.cz"], "Přijdu").split("?")[0],
        data={"odpoved": "prijdu"},
    )
    client.post(
        rsvp_link(invited["odberatel1@example.cz"], "Možná").split("?")[0],
        data={"odpoved": "mozna"},
    )
    invitation = db.session.scalar(select(Issue).order_by(Issue.id))
    body = api_get(client, token, f"/api/v1/issues/{invitation.id}").get_json()
    assert body["attendance"] == {"accepted": 1, "tentative": 1, "declined": 0, "needs_action": 1}


def set_details(email: str, organization: str, institution: str) -> None:
    subscriber_id = db.session.scalar(select(Subscriber.id).filter_by(email=email))
    db.session.execute(
        update(Subscription)
        .where(Subscription.subscriber_id == subscriber_id)
        .values(organization=organization, institution=institution)
    )
    db.session.commit()


def test_the_coordinator_sees_attendance_by_institution_and_ticks_who_came(
    app, client, accounts, invited
):
    set_details("odberatel0@example.cz", '=HYPERLINK("http://zle.example")', "ospod")
    set_details("odberatel1@example.cz", "Charita Ostrava", "nno")
    set_details("odberatel2@example.cz", "Magistrát", "obec-socialni")
    client.post(
        rsvp_link(invited["odberatel0@example.cz"], "Přijdu").split("?")[0],
        data={"odpoved": "prijdu"},
    )
    client.post(
        rsvp_link(invited["odberatel1@example.cz"], "Nepřijdu").split("?")[0],
        data={"odpoved": "neprijdu", "poznamka": "nemoc"},
    )
    meeting = the_meeting()
    log_in(client, "koordinator@ostrava.example")
    invitation = db.session.scalar(select(Issue).order_by(Issue.id))
    issue_page = client.get(f"/admin/issues/{invitation.id}").get_data(as_text=True)
    assert f"/admin/meetings/{meeting.id}/attendance" in issue_page

    page = client.get(f"/admin/meetings/{meeting.id}/attendance")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'data-count="accepted">1<' in html and 'data-count="needs_action">1<' in html
    assert "OSPOD" in html and "nezisková organizace" in html
    assert (
        "Zatím nikdo nepotvrdil účast za: <strong>obecní úřad – sociální odbor, "
        "nezisková organizace</strong>" in html
    )
    assert "Ve skupině nejsou zastoupeni:" in html and "Úřad práce" in html

    csv_response = client.get(f"/admin/meetings/{meeting.id}/attendance.csv")
    rows = list(csv.DictReader(io.StringIO(csv_response.get_data(as_text=True).lstrip("\ufeff"))))
    by_email = {row["email"]: row for row in rows}
    assert by_email["odberatel0@example.cz"]["organization"].startswith("'=HYPERLINK")
    assert by_email["odberatel1@example.cz"]["answer"] == "declined"
    assert by_email["odberatel1@example.cz"]["note"] == "nemoc"
    assert by_email["odberatel2@example.cz"]["answer"] == "needs_action"

    sheet = client.get(f"/admin/meetings/{meeting.id}/attendance/sheet").get_data(as_text=True)
    assert "Prezenční listina" in sheet and "Podpis" in sheet and "Charita Ostrava" in sheet

    csrf = page.get_data(as_text=True).split('name="csrf_token" value="')[1].split('"')[0]
    early = client.post(f"/admin/meetings/{meeting.id}/attendance", data={"csrf_token": csrf})
    assert early.status_code == 409
    db.session.execute(update(Meeting).values(start=utcnow() - timedelta(hours=1)))
    db.session.commit()
    first = db.session.scalar(select(Subscriber.id).filter_by(email="odberatel0@example.cz"))
    third = db.session.scalar(select(Subscriber.id).filter_by(email="odberatel2@example.cz"))
    ticked = client.post(
        f"/admin/meetings/{meeting.id}/attendance",
        data={"csrf_token": csrf, "present": [str(first), str(third)]},
    )
    assert ticked.status_code == 302
    came = dict(
        db.session.execute(select(MeetingResponse.subscriber_id, MeetingResponse.attended)).all()
    )
    assert came[first] is True and came[third] is True and sum(came.values()) == 2


def test_a_coordinator_of_another_group_gets_404(app, client, accounts, invited):
    other = MailingList(slug="chomutov-os", name="Odborná skupina Chomutov", kind="group")
    db.session.add(other)
    db.session.flush()
    token = create_token(
        create_user("koordinator@chomutov.example", PASSWORD, "coordinator", [other])
    )
    db.session.commit()
    meeting = the_meeting()
    log_in(client, "koordinator@chomutov.example")
    for suffix in ("", ".csv", "/sheet"):
        assert client.get(f"/admin/meetings/{meeting.id}/attendance{suffix}").status_code == 404
    assert client.post(f"/admin/meetings/{meeting.id}/attendance").status_code in (400, 404)
    invitation = db.session.scalar(select(Issue).order_by(Issue.id))
    assert api_get(client, token, f"/api/v1/issues/{invitation.id}").status_code == 404
