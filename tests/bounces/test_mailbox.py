"""`zpravodaj bounces poll` against a real Dovecot on loopback (tests/bounces/dovecot.py).

Bounces for a real issue (sent to the aiosmtpd sink) are put into the
private Dovecot's INBOX with IMAP APPEND; the poller reads them, records
them, and moves them to "Processed". A poller "killed" between recording
and moving (an exception where the process would die) must not count a
message twice; one killed before its commit must not lose it.
"""

from __future__ import annotations

import io
import threading

import pytest
from imapclient import IMAPClient
from sqlalchemy import func, select

from service import progress as progress_module
from service.bounces import mailbox
from service.extensions import db
from service.models import Bounce, MailboxMessage, OutgoingMail
from tests.bounces.dovecot import BINARY, PASSWORD, USER, PrivateDovecot
from tests.bounces.test_bounces import bounce_bytes, send_issue, statuses
from tests.conftest import add_confirmed_subscribers, missing_part, run_jobs
from tests.waiting import wait_until


@pytest.fixture(scope="module")
def dovecot():
    if BINARY is None:
        missing_part(
            "dovecot is not installed (Debian package `dovecot-imapd`; scripts/test "
            "installs it when run as root)"
        )
    with PrivateDovecot() as server:
        yield server


@pytest.fixture
def imap(dovecot, app):
    """A client of the private server, with INBOX and Processed emptied."""
    app.config.update(BOUNCE_IMAP_URL=dovecot.url, BOUNCE_IMAP_INTERVAL=30)
    client = IMAPClient("127.0.0.1", port=dovecot.port, ssl=False, timeout=10)
    client.login(USER, PASSWORD)
    for folder in ("INBOX", mailbox.PROCESSED_FOLDER):
        if client.folder_exists(folder):
            client.select_folder(folder)
            uids = client.search(["ALL"])
            if uids:
                client.delete_messages(uids)
                client.expunge()
    yield client
    client.logout()


def uids_in(client: IMAPClient, folder: str) -> list[int]:
    client.select_folder(folder, readonly=True)
    return client.search(["NOT", "DELETED"])


def count(model) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(model))


def test_poll_records_every_message_once_and_moves_it(app, outbox, runner, imap):
    mails = send_issue(app, outbox, count=2)
    (hard_address, hard), (soft_address, soft) = sorted(mails.items())
    for raw in (
        bounce_bytes("postfix_hard.eml", hard),
        bounce_bytes("soft_mailbox_full.eml", soft),
        bounce_bytes("autoreply.eml", soft),
        b"From: someone@example.cz\r\nSubject: hello\r\n\r\nJust mail.\r\n",
    ):
        imap.append("INBOX", raw)
    result = runner.invoke(args=["bounces", "poll", "--once"])
    assert result.exit_code == 0, result.output
    assert "Zpracováno zpráv: 4" in result.output
    assert statuses(hard_address) == {"bounced"}
    assert statuses(soft_address) == {"confirmed"}
    assert count(Bounce) == 2
    assert count(MailboxMessage) == 4
    assert uids_in(imap, "INBOX") == []
    moved = uids_in(imap, mailbox.PROCESSED_FOLDER)
    assert len(moved) == 4
    flags = imap.get_flags(moved)
    assert all(b"\\Seen" in flags[uid] for uid in moved)

    again = runner.invoke(args=["bounces", "poll", "--once"])
    assert "Zpracováno zpráv: 0" in again.output
    assert count(Bounce) == 2


class Killed(BaseException):
    """Where the process would die: not an Exception, so nothing catches it on the way."""


def test_killed_after_recording_before_moving_counts_once(app, outbox, runner, imap, monkeypatch):
    """A human reply forwarded once, though the poller died before moving it."""
    app.config["REPLY_TO_FORWARD"] = "redakce@socialnibydleni.example"
    (mail,) = send_issue(app, outbox, count=1).values()
    imap.append("INBOX", bounce_bytes("reply_human.eml", mail))

    def die(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(mailbox, "_move_done", die)
    with pytest.raises(Killed):
        mailbox.run(app.config["BOUNCE_IMAP_URL"], 30, once=True)
    monkeypatch.undo()
    assert count(MailboxMessage) == 1
    assert len(uids_in(imap, "INBOX")) == 1  # recorded, not moved

    done = mailbox.run(app.config["BOUNCE_IMAP_URL"], 30, once=True)
    assert (done.processed, done.skipped) == (0, 1)
    assert uids_in(imap, "INBOX") == []
    run_jobs(app)
    forwards = db.session.scalars(select(OutgoingMail).filter_by(kind="reply_forward")).all()
    assert len(forwards) == 1


def test_killed_before_the_commit_loses_nothing(app, outbox, runner, imap, monkeypatch):
    ((address, mail),) = send_issue(app, outbox, count=1).items()
    imap.append("INBOX", bounce_bytes("postfix_hard.eml", mail))

    def die(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(mailbox, "_note", die)
    with pytest.raises(Killed):
        mailbox.run(app.config["BOUNCE_IMAP_URL"], 30, once=True)
    monkeypatch.undo()
    db.session.rollback()  # what a dead process's transaction comes to
    assert count(Bounce) == 0 and count(MailboxMessage) == 0
    assert statuses(address) == {"confirmed"}

    done = mailbox.run(app.config["BOUNCE_IMAP_URL"], 30, once=True)
    assert done.processed == 1
    assert statuses(address) == {"bounced"}
    assert uids_in(imap, "INBOX") == []


def test_a_running_poller_reads_new_mail_as_it_arrives(app, outbox, imap):
    """With IDLE, a message appended while the poller waits is read without a restart."""
    ((address, mail),) = send_issue(app, outbox, count=1).items()
    stop = threading.Event()
    errors: list[BaseException] = []

    def poll() -> None:
        with app.app_context():
            try:
                mailbox.run(app.config["BOUNCE_IMAP_URL"], 30, stop=stop)
            except BaseException as exc:  # reported by the test, not lost in the thread
                errors.append(exc)
            finally:
                db.session.remove()

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        imap.append("INBOX", bounce_bytes("postfix_hard.eml", mail))
        wait_until(
            lambda: statuses(address) == {"bounced"}, "the poller to read the new bounce",
            abort=lambda: errors,
        )  # fmt: skip
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert not errors


@pytest.mark.parametrize(
    "url, words",
    [
        ("", "není nastaveno"),
        ("imap://u:p@mail.example.cz/INBOX", "jen na localhostu"),
        ("pop3://u:p@127.0.0.1/INBOX", "musí začínat imaps://"),
        ("imaps://mail.example.cz/INBOX", "uživatele a server"),
    ],
)
def test_bad_mailbox_urls_are_refused_in_czech(app, runner, url, words):
    app.config["BOUNCE_IMAP_URL"] = url
    result = runner.invoke(args=["bounces", "poll", "--once"])
    assert result.exit_code == 78
    assert words in result.output


def test_the_mailbox_url_is_read_whole():
    url = mailbox.parse_url("imaps://bounces%40obec.cz:tajn%C3%A9@mail.obec.cz/Bounces")
    assert (url.user, url.password, url.host, url.port, url.ssl, url.folder) == (
        "bounces@obec.cz",
        "tajné",
        "mail.obec.cz",
        993,
        True,
        "Bounces",
    )


def test_a_calendar_reply_in_the_mailbox_is_recorded_as_an_answer(app, outbox, imap):
    """Accept in a calendar app mails the ORGANIZER (rsvp+…); read from the mailbox it is
    the member's answer, as through the SMTP receiver, not a bounce nor a human reply."""
    from tests.meetings.test_answers import answers, reply_for
    from tests.meetings.test_meetings import make_invitation, send, winter_thursday_10th

    app.config["REPLY_TO_FORWARD"] = "redakce@socialnibydleni.example"
    add_confirmed_subscribers("ostrava-psb", 3)
    send(make_invitation(winter_thursday_10th().replace(hour=9, minute=30)))
    run_jobs(app)
    mail = next(m for m in outbox.mails if m.rcpt_tos == ["odberatel1@example.cz"])
    to, raw = reply_for(mail, "ACCEPTED")
    raw = b"Message-ID: <odpoved-1@example.cz>\r\nDelivered-To: " + to.encode() + b"\r\n" + raw
    imap.append("INBOX", raw)
    imap.append("INBOX", b"Delivered-To: " + to.encode() + b"\r\nSubject: hi\r\n\r\nhello\r\n")

    done = mailbox.run(app.config["BOUNCE_IMAP_URL"], 30, once=True)
    assert (done.processed, done.failed) == (2, 0)
    assert answers() == {"odberatel1@example.cz": ("ACCEPTED", "")}
    assert count(MailboxMessage) == 2 and count(Bounce) == 0
    assert uids_in(imap, "INBOX") == []
    run_jobs(app)
    assert db.session.scalars(select(OutgoingMail).filter_by(kind="reply_forward")).all() == []

    imap.append("INBOX", raw)  # the same message again (same Message-ID): nothing new
    again = mailbox.run(app.config["BOUNCE_IMAP_URL"], 30, once=True)
    assert (again.processed, again.skipped) == (0, 1)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_poll_once_shows_a_progress_bar_on_a_terminal_only(app, outbox, imap, monkeypatch):
    (mail,) = send_issue(app, outbox, count=1).values()
    imap.append("INBOX", bounce_bytes("postfix_hard.eml", mail))
    imap.append("INBOX", b"From: someone@example.cz\r\nSubject: hello\r\n\r\nJust mail.\r\n")
    terminal = Terminal()
    monkeypatch.setattr(progress_module.sys, "stderr", terminal)
    done = mailbox.run(app.config["BOUNCE_IMAP_URL"], 30, once=True, bar=True)
    assert done.processed == 2
    assert "Schránka nedoručenek" in terminal.getvalue() and "100%" in terminal.getvalue()
    # In a script (stderr no terminal) no bar: only the log lines.
    imap.append("INBOX", b"From: someone@example.cz\r\nSubject: again\r\n\r\nJust mail.\r\n")
    script = io.StringIO()
    monkeypatch.setattr(progress_module.sys, "stderr", script)
    assert mailbox.run(app.config["BOUNCE_IMAP_URL"], 30, once=True, bar=True).processed == 1
    assert "Schránka nedoručenek" not in script.getvalue()
