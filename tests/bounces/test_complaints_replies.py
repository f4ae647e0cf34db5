"""Complaints (ARF) and human replies reaching the bounce address, end to end.

An issue goes out to the aiosmtpd sink; the complaint and the reply are
written around the captured mail (its VERP return path, its Message-ID)
and fed to `zpravodaj bounces process`. A forwarded reply leaves through
the outgoing mail queue and a worker, back into the sink.
"""

from __future__ import annotations

import email

from sqlalchemy import select

from service.bounces import complaints
from service.extensions import db
from service.models import (
    Bounce,
    Complaint,
    ConsentEvent,
    MailingList,
    Subscriber,
    Subscription,
)
from service.subscriptions.actions import export
from tests.bounces.test_bounces import bounce_bytes, process, send_issue, statuses
from tests.conftest import log_in, run_jobs


def test_a_complaint_unsubscribes_and_is_no_bounce(app, outbox, runner, tmp_path):
    mails = send_issue(app, outbox, count=2)
    (address, mail), (other, _) = sorted(mails.items())
    result = process(runner, tmp_path, bounce_bytes("arf_complaint.eml", mail))
    assert result.exit_code == 0, result.output
    assert "Stížnost (hlášení ARF)" in result.output and "zpravodaj" in result.output
    assert statuses(address) == {"unsubscribed"}
    assert statuses(other) == {"confirmed"}
    assert db.session.scalars(select(Bounce)).all() == []
    (complaint,) = db.session.scalars(select(Complaint)).all()
    person = db.session.scalar(select(Subscriber).filter_by(email_key=address))
    assert complaint.subscriber_id == person.id and complaint.issue_id is not None
    assert complaint.feedback_type == "abuse"
    steps = db.session.scalars(
        select(ConsentEvent.action).filter_by(subscriber_id=person.id).order_by(ConsentEvent.id)
    ).all()
    assert steps[-1] == "complaint"
    assert [c["feedback_type"] for c in export(person)["complaints"]] == ["abuse"]
    # The same report read again counts once.
    again = process(runner, tmp_path, bounce_bytes("arf_complaint.eml", mail))
    assert "už byla zaznamenána" in again.output
    assert len(db.session.scalars(select(Complaint)).all()) == 1


def test_a_complaint_leaves_other_newsletters_but_not_working_groups(app, outbox, runner, tmp_path):
    """ "Suppress marketing": every newsletter goes; a working group is no marketing."""
    db.session.add(MailingList(slug="akce", name="Akce", kind="newsletter"))
    db.session.add(MailingList(slug="skupina", name="Skupina", kind="group"))
    db.session.commit()
    mails = send_issue(app, outbox, count=1)
    ((address, mail),) = mails.items()
    person = db.session.scalar(select(Subscriber).filter_by(email_key=address))
    for slug in ("akce", "skupina"):
        mailing_list = db.session.scalar(select(MailingList).filter_by(slug=slug))
        db.session.add(
            Subscription(subscriber_id=person.id, list_id=mailing_list.id, status="confirmed")
        )
    db.session.commit()
    process(runner, tmp_path, bounce_bytes("arf_complaint.eml", mail))
    db.session.expire_all()
    by_list = {s.mailing_list.slug: s.status for s in person.subscriptions}
    assert by_list == {"zpravodaj": "unsubscribed", "akce": "unsubscribed", "skupina": "confirmed"}


def test_a_complaint_without_our_verp_unsubscribes_nobody(app, outbox, runner, tmp_path):
    mails = send_issue(app, outbox, count=1)
    ((address, mail),) = mails.items()
    forged = bounce_bytes("arf_complaint.eml", mail).replace(
        mail.mail_from.encode(), b"bounces@socialnibydleni.example"
    )
    result = process(runner, tmp_path, forged)
    assert "nezaznamenána" in result.output
    assert statuses(address) == {"confirmed"}
    assert db.session.scalars(select(Complaint)).all() == []


def test_complaint_rate_on_the_issue_report_and_dashboard(
    app, outbox, runner, tmp_path, client, accounts
):
    mails = send_issue(app, outbox, count=4)
    process(runner, tmp_path, bounce_bytes("arf_complaint.eml", next(iter(mails.values()))))
    rate = complaints.recent_rate()
    assert (rate.complaints, rate.delivered) == (1, 4)
    assert rate.level == "bad"  # 25 % is far over Gmail's 0.3 %
    log_in(client, accounts.editor.email)
    issue_id = db.session.scalar(select(Complaint.issue_id))
    page = client.get(f"/admin/issues/{issue_id}").get_data(as_text=True)
    assert 'data-complaint-rate="0.25"' in page
    assert "1 stížnost na 4 doručené" in page
    assert "Gmail 0,1 %" in page and "Gmail 0,3 %" in page
    dashboard = client.get("/admin/").get_data(as_text=True)
    assert 'data-complaint-rate="0.25"' in dashboard
    assert "za posledních 30 dní" in dashboard


def test_a_human_reply_is_forwarded_through_the_outgoing_queue(app, outbox, runner, tmp_path):
    app.config["REPLY_TO_FORWARD"] = "redakce@socialnibydleni.example"
    mails = send_issue(app, outbox, count=1)
    ((address, mail),) = mails.items()
    before = len(outbox.mails)
    result = process(runner, tmp_path, bounce_bytes("reply_human.eml", mail))
    assert "přeposlána" in result.output
    run_jobs(app)
    (forward,) = outbox.mails[before:]
    assert forward.rcpt_tos == ["redakce@socialnibydleni.example"]
    message = email.message_from_bytes(forward.data)
    assert message["Reply-To"] == address
    assert message["Auto-Submitted"] == "auto-forwarded"
    attached = next(p for p in message.walk() if p.get_content_type() == "message/rfc822")
    inner = attached.get_payload(0)
    assert "Přijdu na setkání" in inner.get_payload(decode=True).decode("utf-8")
    assert statuses(address) == {"confirmed"}
    assert db.session.scalars(select(Bounce)).all() == []


def test_auto_replies_and_unset_forwarding_send_nothing(app, outbox, runner, tmp_path):
    mails = send_issue(app, outbox, count=1)
    (mail,) = mails.values()
    before = len(outbox.mails)
    app.config["REPLY_TO_FORWARD"] = "redakce@socialnibydleni.example"
    process(runner, tmp_path, bounce_bytes("autoreply.eml", mail))
    app.config["REPLY_TO_FORWARD"] = ""
    result = process(runner, tmp_path, bounce_bytes("reply_human.eml", mail))
    assert "REPLY_TO_FORWARD není nastaveno" in result.output
    run_jobs(app)
    assert len(outbox.mails) == before
