"""Minutes: written after the meeting, sent as an announcement with documents, kept on the
members' page with the meeting's agenda and attendance; documents only for members."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select, update

from service import tokens
from service.clock import utcnow
from service.extensions import db
from service.issues import attachments, sending
from service.meetings import attendance
from service.models import Issue, Meeting, Subscriber, Subscription
from tests.conftest import csrf_token_of, log_in, run_jobs
from tests.meetings.test_meetings import (
    make_invitation,
    members,  # noqa: F401  (a fixture)
    send,
    winter_thursday_10th,
)

PDF = b"%PDF-1.4\nzapis\n%%EOF\n"


def member_page(client, subscriber: Subscriber) -> str:
    token = tokens.preferences_token(subscriber)
    return client.get(f"/groups/ostrava-psb/member/{token}").get_data(as_text=True)


def test_minutes_go_to_the_members_and_stay_on_their_page(app, client, accounts, outbox, members):  # noqa: F811
    send(make_invitation(winter_thursday_10th().replace(hour=9, minute=30)))
    run_jobs(app)
    outbox.catcher.clear()
    meeting = db.session.scalar(select(Meeting))
    log_in(client, accounts.coordinator.email)
    path = f"/admin/meetings/{meeting.id}/minutes"
    token = csrf_token_of(client, f"/admin/meetings/{meeting.id}/attendance")
    early = client.post(path, data={"csrf_token": token})
    assert (
        early.status_code == 302
        and db.session.scalar(select(Issue).filter_by(meeting_method=None)) is None
    )

    db.session.execute(
        update(Meeting).values(
            start=utcnow() - timedelta(hours=2), end=utcnow() - timedelta(hours=1)
        )
    )
    db.session.commit()
    meeting = db.session.scalar(select(Meeting))
    first = db.session.scalar(select(Subscriber).order_by(Subscriber.id))
    attendance.record_attendance(meeting, {first.id})
    db.session.commit()
    made = client.post(path, data={"csrf_token": token})
    assert made.status_code == 302 and made.headers["Location"].endswith("/edit")
    minutes = db.session.scalar(select(Issue).where(Issue.subject.startswith("Zápis: ")))
    assert minutes.meeting_id == meeting.id and minutes.meeting_method is None
    assert minutes.subject == "Zápis: Setkání PSB v prosinci"
    attachments.add_attachment(minutes, "zápis z jednání.pdf", PDF)
    minutes.body += "\nDohodli jsme se na společném postupu u kazuistiky.\n"
    db.session.commit()
    sending.send_now(minutes)
    db.session.commit()
    run_jobs(app)

    assert len(outbox.mails) == 3
    message = outbox.mails[0].message
    assert not [p for p in message.walk() if p.get_content_type() == "text/calendar"]
    assert [p.get_filename() for p in message.iter_attachments()] == ["zápis z jednání.pdf"]

    page = member_page(client, first)
    assert page.index("Zápis: Setkání PSB v prosinci") < page.index("Setkání PSB v prosinci</h3>")
    assert "Přítomno 1 z 3 pozvaných." in page
    assert "Podle prezenční listiny jste se setkání zúčastnili." in page
    assert "Bytový fond města" in page  # the meeting's agenda
    [link] = re.findall(r'href="(/groups/ostrava-psb/member/[^"]+/documents/\d+)"', page)
    document = client.get(link)
    assert document.status_code == 200 and document.data == PDF
    assert "attachment" in document.headers["Content-Disposition"]

    # The same page in the member's own language: English around the group's Czech text.
    first.language = "en"
    db.session.commit()
    english = member_page(client, first)
    assert "1 of 3 invited were present." in english and "Documents:" in english
    assert "Meetings in your calendar" in english and '<html lang="en">' in english
    assert "Přítomno" not in english and "Dokumenty:" not in english

    # Only a confirmed member's own signed link opens it.
    assert client.get(link.replace("/member/", "/member/x")).status_code == 400
    db.session.execute(
        update(Subscription)
        .where(Subscription.subscriber_id == first.id)
        .values(status="unsubscribed")
    )
    db.session.commit()
    assert client.get(link).status_code == 403
    second = db.session.scalars(select(Subscriber).order_by(Subscriber.id)).all()[1]
    others = link.split("/documents/")[1]
    own = f"/groups/ostrava-psb/member/{tokens.preferences_token(second)}/documents/{others}"
    assert client.get(own).status_code == 200
    assert "Podle prezenční listiny jste na setkání nebyli." in member_page(client, second)
    assert client.get(own.replace("/documents/", "/documents/9")).status_code == 404


def test_members_see_their_own_answer_to_the_next_meeting_and_no_draft(
    app,
    client,
    outbox,
    members,  # noqa: F811
):
    make_invitation(winter_thursday_10th().replace(hour=8), subject="Návrh setkání")  # a draft
    people = db.session.scalars(select(Subscriber).order_by(Subscriber.id)).all()
    assert "Další setkání zatím není naplánované." in member_page(client, people[0])

    send(make_invitation(winter_thursday_10th().replace(hour=9, minute=30)))
    run_jobs(app)
    meeting = db.session.scalars(select(Meeting).order_by(Meeting.id)).all()[-1]
    page = member_page(client, people[0])
    assert "od 9:30 do 11:30" in page and "od 8:00" not in page
    assert "Zatím jste neodpověděli, zda přijdete." in page
    [link] = re.findall(r'href="(/rsvp/[^"]+)">Odpovědět<', page)
    assert link.startswith(f"/rsvp/{meeting.id}.")
    client.post(link, data={"odpoved": "mozna", "poznamka": "Možná pošleme kolegyni."})
    page = member_page(client, people[0])
    assert "Vaše odpověď: <strong>Možná</strong> (Možná pošleme kolegyni.)." in page
    assert f'href="{link}">Změnit odpověď<' in page
    assert "Zatím jste neodpověděli" in member_page(client, people[1])
