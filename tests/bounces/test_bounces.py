"""Bounces end to end: an issue goes out, a bounce comes back through the CLI.

Real parts throughout: the delivery engine sends to the aiosmtpd sink, the
VERP return path is read off the captured envelope, the DSN samples (Postfix,
Exchange, Gmail-like, qmail, a soft 4.2.2, a policy 5.7.1, a mangled one and
an auto-reply) are filled in with it and fed to `zpravodaj bounces process`.
"""

from __future__ import annotations

import csv
import io
import smtplib
from datetime import timedelta
from pathlib import Path
from string import Template

import pytest
from sqlalchemy import func, select

from service.bounces import inbox, recording, verp
from service.bounces.parsing import parse
from service.bounces.receiver import make_controller
from service.clock import utcnow
from service.dev.mail_catcher import free_port
from service.extensions import db
from service.models import (
    Bounce,
    Delivery,
    MailingList,
    OutgoingMail,
    Subscriber,
    Subscription,
    Suppression,
)
from tests.conftest import add_confirmed_subscribers, link_to, run_jobs, send_issue_now

SAMPLES = Path(__file__).parent / "samples"
HARD_SAMPLES = ["postfix_hard.eml", "exchange_hard.eml", "gmail_hard.eml", "qmail_hard.eml"]


def send_issue(app, outbox, count: int = 3, slug: str = "zpravodaj"):
    """An issue to `count` new confirmed subscribers; returns {address: captured mail}."""
    if count:
        known = db.session.scalar(select(func.count(Subscriber.id)))
        add_confirmed_subscribers(slug, count, start=known)
    send_issue_now(app, slug)
    return {mail.rcpt_tos[0]: mail for mail in outbox.mails}


def bounce_bytes(sample: str, mail) -> bytes:
    text = (SAMPLES / sample).read_text(encoding="utf-8")
    filled = Template(text).substitute(
        verp=mail.mail_from, recipient=mail.rcpt_tos[0], message_id=mail.message["Message-ID"]
    )
    return filled.replace("\n", "\r\n").encode("utf-8")


def process(runner, tmp_path, raw: bytes):
    path = tmp_path / "bounce.eml"
    path.write_bytes(raw)
    return runner.invoke(args=["bounces", "process", str(path)])


def statuses(address: str) -> set[str]:
    db.session.expire_all()
    subscriber = db.session.scalar(select(Subscriber).filter_by(email_key=address))
    return {s.status for s in subscriber.subscriptions}


def suppressed(address: str) -> bool:
    from service.suppression import is_suppressed

    return is_suppressed(address)


# --- VERP ------------------------------------------------------------------


def test_every_delivery_has_its_own_verp_return_path(app, outbox):
    mails = send_issue(app, outbox, count=3)
    senders = {mail.mail_from for mail in mails.values()}
    assert len(senders) == 3
    for address, mail in mails.items():
        token = verp.parse_token(mail.mail_from)
        assert token.kind == "delivery"
        delivery = db.session.get(Delivery, token.row_id)
        assert delivery.subscriber.email == address
        assert mail.mail_from.startswith("bounces+d")
        assert mail.mail_from.endswith("@socialnibydleni.example")


def test_verp_tokens_cannot_be_forged(app):
    address = verp.envelope_sender("d", 42)
    assert verp.parse_token(address) == verp.VerpToken("delivery", 42)
    assert verp.parse_token(address.upper()) == verp.VerpToken("delivery", 42)  # lowercased MTAs
    assert verp.parse_token(address.replace("+d42-", "+d43-")) is None
    mac = address.split("-", 1)[1].split("@")[0]
    assert verp.parse_token(address.replace(mac, "0" * 12)) is None
    assert verp.parse_token("bounces@socialnibydleni.example") is None


def test_verp_tokens_survive_a_secret_key_rotation(app):
    address = verp.envelope_sender("m", 7)
    app.config["SECRET_KEY_FALLBACKS"] = [app.config["SECRET_KEY"]]
    app.config["SECRET_KEY"] = "a-new-secret"
    assert verp.parse_token(address) == verp.VerpToken("outgoing_mail", 7)


def test_bounce_address_is_configurable(app):
    app.config["BOUNCE_ADDRESS"] = "vratky@bounce.socialnibydleni.example"
    address = verp.envelope_sender("d", 5)
    assert address.startswith("vratky+d5-")
    assert address.endswith("@bounce.socialnibydleni.example")


# --- hard bounces ----------------------------------------------------------


@pytest.mark.parametrize("sample", HARD_SAMPLES)
def test_hard_bounce_suppresses_the_address_at_once(app, outbox, runner, tmp_path, sample):
    mails = send_issue(app, outbox, count=3)
    address, mail = sorted(mails.items())[1]
    result = process(runner, tmp_path, bounce_bytes(sample, mail))
    assert result.exit_code == 0, result.output
    assert "trvalá chyba" in result.output
    assert "vyřazena" in result.output

    assert statuses(address) == {"bounced"}
    assert suppressed(address)
    bounce = db.session.scalar(select(Bounce))
    assert bounce.kind == "hard"
    assert bounce.status.startswith("5.1.")
    assert bounce.delivery_id == verp.parse_token(mail.mail_from).row_id
    others = set(mails) - {address}
    for other in others:
        assert statuses(other) == {"confirmed"}


def test_bounced_address_is_skipped_exported_and_not_imported(app, outbox, runner, tmp_path):
    mails = send_issue(app, outbox, count=3)
    address, mail = sorted(mails.items())[0]
    process(runner, tmp_path, bounce_bytes("postfix_hard.eml", mail))

    # The export says bounced.
    exported = runner.invoke(args=["subscribers", "export", "--list", "zpravodaj"])
    rows = {row["email"]: row for row in csv.DictReader(io.StringIO(exported.output))}
    assert rows[address]["status"] == "bounced"

    # The next issue does not go to it.
    outbox.mails.clear()
    next_mails = send_issue(app, outbox, count=0)
    assert address not in next_mails
    assert len(next_mails) == 2

    # An import cannot bring it back.
    path = tmp_path / "import.csv"
    path.write_text(f"email,name\n{address},Znovu\n", encoding="utf-8")
    imported = runner.invoke(
        args=["subscribers", "import", str(path), "--list", "novinky", "--consent-source", "x"]
    )
    assert imported.exit_code == 0, imported.output
    # A bounce suppresses the address everywhere, not only on the list it bounced from.
    assert imported.output.splitlines() == [
        "řádek 2: adresa byla vymazána nebo je nedoručitelná; neimportováno",
        "importováno 0, už přihlášeno 0, přeskočeno 1",
    ]
    subscriber = db.session.scalar(select(Subscriber).filter_by(email_key=address))
    assert {s.mailing_list.slug for s in subscriber.subscriptions} == {"zpravodaj"}


def test_a_persons_own_export_holds_their_bounces(app, outbox, runner, tmp_path):
    from service.subscriptions.actions import export

    mails = send_issue(app, outbox, count=1)
    ((address, mail),) = mails.items()
    process(runner, tmp_path, bounce_bytes("postfix_hard.eml", mail))
    subscriber = db.session.scalar(select(Subscriber).filter_by(email_key=address))
    (bounce,) = export(subscriber)["bounces"]
    assert bounce["kind"] == "hard"
    assert bounce["status"].startswith("5.1.")
    assert bounce["diagnostic"]
    assert bounce["received_at"]
    assert bounce["reason"] == "address" and "Final-Recipient" in bounce["report"]


def test_a_bounced_address_cannot_add_a_list_on_its_preferences_page(
    app, outbox, client, runner, tmp_path
):
    """Only an administrator's reactivation (or a fresh double opt-in) brings it back."""
    mails = send_issue(app, outbox, count=1)
    ((address, mail),) = mails.items()
    process(runner, tmp_path, bounce_bytes("postfix_hard.eml", mail))
    response = client.post(
        link_to(mail, "/preferences/"), data={"list": ["zpravodaj", "novinky"], "name": "Čtenář"}
    )
    assert response.status_code == 200
    assert "vracejí jako nedoručitelné" in response.text
    assert statuses(address) == {"bounced"}


def test_the_same_bounce_twice_counts_once(app, outbox, runner, tmp_path):
    mails = send_issue(app, outbox, count=1)
    (mail,) = mails.values()
    raw = bounce_bytes("soft_mailbox_full.eml", mail)
    first = process(runner, tmp_path, raw)
    second = process(runner, tmp_path, raw)
    assert first.exit_code == second.exit_code == 0
    assert "už byla zaznamenána" in second.output
    assert db.session.scalar(select(func.count(Bounce.id))) == 1


def test_a_report_without_verp_suppresses_nobody(app, outbox, runner, tmp_path, receiver):
    """Anybody can write a DSN naming a subscriber's (public) address; only our VERP
    token proves the report is about a mail we sent, so without one nothing happens."""
    mails = send_issue(app, outbox, count=2)
    address, mail = sorted(mails.items())[0]
    raw = bounce_bytes("postfix_hard.eml", mail).replace(
        mail.mail_from.encode(), b"bounces@socialnibydleni.example"
    )
    result = process(runner, tmp_path, raw)
    assert result.exit_code == 0, result.output
    assert "nezaznamenáno" in result.output
    assert "VERP" in result.output
    # The same forgery through the SMTP receiver.
    with smtplib.SMTP("127.0.0.1", receiver, timeout=30) as smtp:
        smtp.sendmail("", ["bounces@socialnibydleni.example"], raw)
    assert statuses(address) == {"confirmed"}
    assert not suppressed(address)
    assert db.session.scalar(select(func.count(Bounce.id))) == 0


def test_a_bounced_confirmation_mail_is_recorded(app, outbox, client, runner, tmp_path):
    client.post("/subscribe", data={"email": "neexistuje@example.cz", "list": "zpravodaj"})
    run_jobs(app)
    (mail,) = outbox.mails
    assert verp.parse_token(mail.mail_from).kind == "outgoing_mail"
    result = process(runner, tmp_path, bounce_bytes("gmail_hard.eml", mail))
    assert result.exit_code == 0, result.output
    assert statuses("neexistuje@example.cz") == {"bounced"}
    assert db.session.scalar(select(Bounce.outgoing_mail_id)) is not None

    # Through the public form it comes back only by a fresh double opt-in.
    outbox.mails.clear()
    client.post("/subscribe", data={"email": "neexistuje@example.cz", "list": "zpravodaj"})
    run_jobs(app)
    (confirmation,) = outbox.mails
    assert statuses("neexistuje@example.cz") == {"pending"}
    assert suppressed("neexistuje@example.cz")
    client.post(link_to(confirmation, "/confirm/"))
    assert statuses("neexistuje@example.cz") == {"confirmed"}
    assert not suppressed("neexistuje@example.cz")


# --- soft bounces ----------------------------------------------------------


def soft_bounce_on(app, runner, tmp_path, mail, when, monkeypatch, sample="soft_mailbox_full.eml"):
    monkeypatch.setattr(recording, "utcnow", lambda: when)
    raw = bounce_bytes(sample, mail) + f"\r\nX-Test-Day: {when.isoformat()}\r\n".encode()
    # A different message each day (a real MTA writes a new report each time).
    raw = f"X-Test-Day: {when.isoformat()}\r\n".encode() + raw
    return process(runner, tmp_path, raw)


def test_soft_bounces_suppress_after_the_limit_spread_over_the_days(
    app, outbox, runner, tmp_path, monkeypatch
):
    app.config.update(BOUNCE_SOFT_LIMIT=3, BOUNCE_SOFT_DAYS=4)
    mails = send_issue(app, outbox, count=1)
    ((address, mail),) = mails.items()
    # Days are UTC days: start in the morning, so that two hours later is still the same
    # day whatever the time the test runs (from 22:00 UTC on they fell on two days).
    start = (utcnow() + timedelta(days=1)).replace(hour=8, minute=0, second=0, microsecond=0)
    # Two bounces on the first day are one bad day.
    for hours in (0, 2):
        result = soft_bounce_on(
            app, runner, tmp_path, mail, start + timedelta(hours=hours), monkeypatch
        )
        assert "dočasná chyba (4.2.2)" in result.output
    assert "dní s chybou: 1" in result.output
    soft_bounce_on(app, runner, tmp_path, mail, start + timedelta(days=2), monkeypatch)
    assert statuses(address) == {"confirmed"}
    result = soft_bounce_on(app, runner, tmp_path, mail, start + timedelta(days=4), monkeypatch)
    assert "dní s chybou: 3" in result.output
    assert "vyřazena" in result.output
    assert statuses(address) == {"bounced"}
    assert suppressed(address)
    bounce = db.session.scalars(select(Bounce)).first()
    assert bounce.reason == "mailbox_full"
    assert "Mailbox full" in bounce.raw


def test_soft_bounces_within_too_few_days_do_not_suppress(
    app, outbox, runner, tmp_path, monkeypatch
):
    """Five bad days are not enough when they all fall within the last few days."""
    app.config.update(BOUNCE_SOFT_LIMIT=3, BOUNCE_SOFT_DAYS=7)
    mails = send_issue(app, outbox, count=1)
    ((address, mail),) = mails.items()
    start = utcnow()
    for days in (0, 1, 2, 3):
        soft_bounce_on(app, runner, tmp_path, mail, start + timedelta(days=days), monkeypatch)
    assert statuses(address) == {"confirmed"}
    soft_bounce_on(app, runner, tmp_path, mail, start + timedelta(days=7), monkeypatch)
    assert statuses(address) == {"bounced"}


def test_an_accepted_delivery_resets_the_score(app, outbox, runner, tmp_path, monkeypatch):
    app.config.update(BOUNCE_SOFT_LIMIT=2, BOUNCE_SOFT_DAYS=1)
    ((address, first),) = send_issue(app, outbox, count=1).items()
    process(runner, tmp_path, bounce_bytes("soft_mailbox_full.eml", first))
    subscriber = db.session.scalar(select(Subscriber).filter_by(email_key=address))
    assert recording.soft_score(subscriber) == 1
    send_issue(app, outbox, count=0)  # accepted, and nothing comes back
    assert recording.soft_score(subscriber) == 0
    third = send_issue(app, outbox, count=0)[address]
    result = soft_bounce_on(app, runner, tmp_path, third, utcnow() + timedelta(days=3), monkeypatch)
    assert "dní s chybou: 1" in result.output
    assert statuses(address) == {"confirmed"}


def test_a_block_of_one_issue_by_many_domains_suppresses_nobody(app, outbox, runner, tmp_path):
    """Three providers refusing the same issue as spam: the problem is us."""
    app.config.update(BOUNCE_SOFT_LIMIT=2, BOUNCE_SOFT_DAYS=0)
    mailing_list = db.session.scalar(select(MailingList).filter_by(slug="zpravodaj"))
    for domain in ("seznam.example", "centrum.example", "post.example"):
        email = f"jana@{domain}"
        person = Subscriber(email=email, email_key=email, ascii_email=email)
        db.session.add(person)
        db.session.flush()
        db.session.add(
            Subscription(
                subscriber_id=person.id,
                list_id=mailing_list.id,
                status="confirmed",
                confirmed_at=utcnow(),
            )
        )
    db.session.commit()
    mails = send_issue(app, outbox, count=0)
    assert len(mails) == 3
    for mail in mails.values():
        assert process(runner, tmp_path, bounce_bytes("policy_reject.eml", mail)).exit_code == 0
    assert all(statuses(a) == {"confirmed"} for a in mails)
    assert all(not suppressed(a) for a in mails)
    bounces = db.session.scalars(select(Bounce)).all()
    assert len(bounces) == 3 and all(b.about_us for b in bounces)
    assert {recording.soft_score(b.subscriber) for b in bounces} == {0}
    issue_id = db.session.get(Delivery, bounces[0].delivery_id).issue_id
    assert recording.blocked_domains(issue_id) == [
        "centrum.example",
        "post.example",
        "seznam.example",
    ]


def test_a_report_with_nul_bytes_is_stored_on_every_database(app, outbox, runner, tmp_path):
    """PostgreSQL text cannot hold NUL; a broken report must still be recorded."""
    mails = send_issue(app, outbox, count=1)
    ((address, mail),) = mails.items()
    raw = bounce_bytes("postfix_hard.eml", mail) + b"\r\n" + b"x" * 5000 + b"\0garbage\r\n"
    assert process(runner, tmp_path, raw).exit_code == 0
    bounce = db.session.scalar(select(Bounce))
    assert "\0" not in bounce.raw and "garbage" in bounce.raw
    assert statuses(address) == {"bounced"}


def test_policy_rejections_are_soft(app, outbox, runner, tmp_path):
    """A spam filter refusing us (5.7.1) says nothing against the address."""
    mails = send_issue(app, outbox, count=1)
    ((address, mail),) = mails.items()
    result = process(runner, tmp_path, bounce_bytes("policy_reject.eml", mail))
    assert "dočasná chyba (5.7.1)" in result.output
    assert statuses(address) == {"confirmed"}


def test_a_mangled_bounce_to_a_verp_address_counts_as_soft(app, outbox, runner, tmp_path):
    mails = send_issue(app, outbox, count=1)
    ((address, mail),) = mails.items()
    result = process(runner, tmp_path, bounce_bytes("mangled.eml", mail))
    assert result.exit_code == 0, result.output
    bounce = db.session.scalar(select(Bounce))
    assert bounce.kind == "soft"
    assert bounce.subscriber.email == address


def test_auto_replies_are_ignored(app, outbox, runner, tmp_path):
    mails = send_issue(app, outbox, count=1)
    (mail,) = mails.values()
    result = process(runner, tmp_path, bounce_bytes("autoreply.eml", mail))
    assert result.exit_code == 0
    assert "Automatická odpověď" in result.output
    assert db.session.scalar(select(func.count(Bounce.id))) == 0


# --- reactivation -----------------------------------------------------------


def test_reactivation_restores_confirmed_and_forgets_old_bounces(
    app, outbox, runner, tmp_path, monkeypatch
):
    app.config.update(BOUNCE_SOFT_LIMIT=2, BOUNCE_SOFT_DAYS=7)
    mails = send_issue(app, outbox, count=1)
    ((address, mail),) = mails.items()
    process(runner, tmp_path, bounce_bytes("postfix_hard.eml", mail))
    subscriber = db.session.scalar(select(Subscriber).filter_by(email_key=address))
    assert recording.reactivate(subscriber) == 1
    db.session.commit()
    assert statuses(address) == {"confirmed"}
    assert not suppressed(address)
    assert recording.soft_score(subscriber) == 0


def test_reactivation_never_confirms_what_was_never_confirmed(
    app, outbox, client, runner, tmp_path
):
    client.post("/subscribe", data={"email": "nikdy@example.cz", "list": "zpravodaj"})
    run_jobs(app)
    process(runner, tmp_path, bounce_bytes("postfix_hard.eml", outbox.mails[0]))
    subscriber = db.session.scalar(select(Subscriber).filter_by(email_key="nikdy@example.cz"))
    recording.reactivate(subscriber)
    db.session.commit()
    assert statuses("nikdy@example.cz") == {"pending"}


# --- garbage ------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   \r\n",
        b"\x00\x01\x02binary\xff\xfe",
        b"just some words, no headers at all\n",
        b"From: someone@example.cz\r\nSubject: hello\r\n\r\nNot a bounce.\r\n",
        # A charset whose codec raises instead of replacing.
        b"From: MAILER-DAEMON@example.cz\r\nSubject: Undelivered\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=idna\r\n\r\n" + b"a" * 100 + b".b\r\n",
        # MIME nested three thousand deep.
        b"From: MAILER-DAEMON@example.cz\r\nSubject: Undelivered\r\nMIME-Version: 1.0\r\n"
        + "".join(
            f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n' for i in range(3000)
        ).encode(),
    ],
    ids=["empty", "blank", "binary", "prose", "ordinary-mail", "idna-charset", "deep-mime"],
)
def test_garbage_gets_a_clear_message_and_a_non_zero_exit(app, runner, tmp_path, raw):
    result = process(runner, tmp_path, raw)
    assert result.exit_code == 65
    assert "Není to zpráva o nedoručení" in result.output
    assert "Traceback" not in result.output
    assert db.session.scalar(select(func.count(Bounce.id))) == 0


def test_receiver_on_a_port_in_use_says_so_without_a_traceback(app, runner):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(args=["bounces", "serve", "--port", str(port)])
    assert result.exit_code == 1
    assert f"Nelze naslouchat na 127.0.0.1:{port}" in result.output
    assert not isinstance(result.exception, OSError | RuntimeError)


def test_process_reads_stdin(app, outbox, runner):
    mails = send_issue(app, outbox, count=1)
    ((address, mail),) = mails.items()
    result = runner.invoke(
        args=["bounces", "process", "-"], input=bounce_bytes("postfix_hard.eml", mail)
    )
    assert result.exit_code == 0, result.output
    assert statuses(address) == {"bounced"}


def test_unknown_recipient_without_verp_records_nothing(app, runner, tmp_path):
    raw = (SAMPLES / "postfix_hard.eml").read_text()
    raw = Template(raw).substitute(
        verp="bounces@socialnibydleni.example", recipient="cizi@example.cz", message_id="<x@y>"
    )
    result = process(runner, tmp_path, raw.encode())
    assert result.exit_code == 0
    assert "nezaznamenáno" in result.output
    assert db.session.scalar(select(func.count(Suppression.id))) == 0


def test_parser_reads_status_and_diagnostic_of_each_sample(app, outbox):
    mails = send_issue(app, outbox, count=1)
    (mail,) = mails.values()
    expected = {
        "postfix_hard.eml": ("hard", "5.1.1"),
        "exchange_hard.eml": ("hard", "5.1.10"),
        "gmail_hard.eml": ("hard", "5.1.1"),
        "qmail_hard.eml": ("hard", "5.1.1"),
        "soft_mailbox_full.eml": ("soft", "4.2.2"),
        "policy_reject.eml": ("soft", "5.7.1"),
    }
    for sample, (kind, status) in expected.items():
        report = parse(bounce_bytes(sample, mail))
        assert report.verp is not None, sample
        (failure,) = report.failures
        assert (failure.kind, failure.status) == (kind, status), sample
        assert failure.address == mail.rcpt_tos[0], sample


# --- the SMTP receiver --------------------------------------------------------


@pytest.fixture
def receiver(app):
    port = free_port("127.0.0.1")
    controller = make_controller(app, "127.0.0.1", port)
    controller.start()
    yield port
    controller.stop()


def test_receiver_records_bounces_sent_to_verp_addresses(app, outbox, receiver):
    mails = send_issue(app, outbox, count=2)
    address, mail = sorted(mails.items())[0]
    with smtplib.SMTP("127.0.0.1", receiver, timeout=10) as smtp:
        smtp.sendmail("", [mail.mail_from], bounce_bytes("exchange_hard.eml", mail))
    assert statuses(address) == {"bounced"}


def test_receiver_refuses_other_recipients_and_drops_non_bounces(app, receiver):
    with smtplib.SMTP("127.0.0.1", receiver, timeout=10) as smtp:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.sendmail("x@example.cz", ["reditel@socialnibydleni.example"], b"Subject: x\r\n")
        smtp.sendmail(
            "spam@example.cz",
            ["bounces@socialnibydleni.example"],
            b"From: spam@example.cz\r\nSubject: levne\r\n\r\nkupte\r\n",
        )
    assert db.session.scalar(select(func.count(Bounce.id))) == 0


def test_receiver_asks_to_retry_when_the_database_fails(app, outbox, receiver, monkeypatch):
    mails = send_issue(app, outbox, count=1)
    (mail,) = mails.values()

    def broken(*args, **kwargs):
        raise RuntimeError("database down")

    monkeypatch.setattr(inbox, "record_report", broken)
    with (
        smtplib.SMTP("127.0.0.1", receiver, timeout=10) as smtp,
        pytest.raises(smtplib.SMTPDataError) as refused,
    ):
        smtp.sendmail("", [mail.mail_from], bounce_bytes("postfix_hard.eml", mail))
    assert refused.value.smtp_code == 451


def test_outgoing_mail_to_a_bounced_address_is_not_sent_except_confirmation(app, outbox):
    """Every send skips suppressed addresses; only a fresh opt-in's confirmation goes out."""
    add_confirmed_subscribers("zpravodaj", 1)
    subscriber = db.session.scalar(select(Subscriber))
    recording.suppress_bounced(subscriber)
    db.session.commit()
    from service.subscriptions import emails

    emails.send_already_subscribed(subscriber, [db.session.scalar(select(MailingList))])
    db.session.commit()
    run_jobs(app)
    assert outbox.mails == []
    mail = db.session.scalar(select(OutgoingMail))
    assert mail.status == "failed"
    assert "vyřazena" in mail.last_error
    assert db.session.scalar(select(Subscription.status)) == "bounced"


def test_process_asks_the_mta_to_retry_when_the_database_is_down(
    app, outbox, runner, tmp_path, monkeypatch
):
    """Exit 75 (EX_TEMPFAIL): a pipe transport keeps the bounce and delivers it again later."""
    from sqlalchemy.exc import OperationalError

    mails = send_issue(app, outbox, count=1)
    (mail,) = mails.values()

    def unreachable(*args, **kwargs):
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))

    monkeypatch.setattr(inbox, "record_report", unreachable)
    result = process(runner, tmp_path, bounce_bytes("postfix_hard.eml", mail))
    assert result.exit_code == 75
    assert "Databáze není dostupná" in result.output
    monkeypatch.undo()
    again = process(runner, tmp_path, bounce_bytes("postfix_hard.eml", mail))
    assert again.exit_code == 0
    assert statuses(mail.rcpt_tos[0]) == {"bounced"}


def test_the_issue_report_lists_its_bounces(app, outbox, runner, tmp_path, client, accounts):
    from tests.conftest import log_in

    mails = send_issue(app, outbox, count=2)
    address, mail = sorted(mails.items())[0]
    process(runner, tmp_path, bounce_bytes("exchange_hard.eml", mail))
    delivery = db.session.get(Delivery, verp.parse_token(mail.mail_from).row_id)
    log_in(client, accounts.editor.email)
    page = client.get(f"/admin/issues/{delivery.issue_id}").get_data(as_text=True)
    assert "Vrácené e-maily" in page
    assert address in page
    assert "5.1.10" in page
    assert "RESOLVER.ADR.RecipientNotFound" in page


# --- spam complaints (ARF feedback reports) ---------------------------------------
