"""`zpravodaj bounces poll`: bounces read from an IMAP mailbox, each exactly once.

Many operators receive bounces in a mailbox rather than on a port. The
poller reads BOUNCE_IMAP_URL (`imaps://user:password@host[:port]/INBOX`),
handles every message there like the pipe does (`inbox.process_message`;
a calendar app's answer to a meeting's `rsvp+…` address, as the SMTP
receiver does, by `meetings.replies.process_reply`),
and then moves it to the "Processed" folder (or, without MOVE, copies it
there and expunges it), flagged \\Seen.

Exactly once, even when killed halfway: a message is *recorded first*,
and in the same database transaction its (mailbox, UIDVALIDITY, UID) and
Message-ID go into `mailbox_message`. Only after that commit is it moved.
A poller killed between the two finds the message still in the inbox next
time, sees it in `mailbox_message`, and only moves it; one killed before
the commit left nothing, and the message is read again. A mailbox rebuilt
with new UIDs (UIDVALIDITY changed) is caught by the Message-ID.

It waits with IMAP IDLE when the server has it (new mail is read at once),
else looks every BOUNCE_IMAP_INTERVAL seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from urllib.parse import unquote, urlsplit

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from ..cli_language import gettext as _
from ..extensions import db
from ..meetings.replies import NotAReply, addressed_to_us, process_reply
from ..models import MailboxMessage
from ..progress import progress
from .inbox import process_message
from .parsing import MAX_BOUNCE_BYTES, BounceReport, NotABounce

log = logging.getLogger(__name__)

PROCESSED_FOLDER = "Processed"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class MailboxError(ValueError):
    """BOUNCE_IMAP_URL is missing or wrong (the message in the CLI's language, for the operator)."""


@dataclass(frozen=True)
class MailboxUrl:
    host: str
    port: int
    ssl: bool
    user: str
    password: str
    folder: str

    @property
    def name(self) -> str:
        """The mailbox as `mailbox_message` names it: user@host/folder."""
        return f"{self.user}@{self.host}/{self.folder}"[:255]


def parse_url(url: str) -> MailboxUrl:
    """`imaps://user:pass@host[:port]/FOLDER`; `imap://` only to a server on loopback."""
    if not url:
        raise MailboxError(
            _("BOUNCE_IMAP_URL není nastaveno (imaps://uzivatel:heslo@server/INBOX)")
        )
    parts = urlsplit(url)
    if parts.scheme not in ("imap", "imaps"):
        raise MailboxError(_("BOUNCE_IMAP_URL musí začínat imaps:// (nebo imap:// na localhostu)"))
    if not parts.hostname or not parts.username:
        raise MailboxError(_("BOUNCE_IMAP_URL musí obsahovat uživatele a server"))
    if parts.scheme == "imap" and parts.hostname not in LOOPBACK:
        # The password would cross the network in the clear.
        raise MailboxError(
            _("imap:// bez šifrování je dovoleno jen na localhostu; použijte imaps://")
        )
    try:
        port = parts.port or (993 if parts.scheme == "imaps" else 143)
    except ValueError as exc:
        raise MailboxError(_("BOUNCE_IMAP_URL má neplatný port: %(error)s", error=exc)) from None
    return MailboxUrl(
        host=parts.hostname,
        port=port,
        ssl=parts.scheme == "imaps",
        user=unquote(parts.username),
        password=unquote(parts.password or ""),
        folder=unquote(parts.path.lstrip("/")) or "INBOX",
    )


@dataclass
class Round:
    """What one look into the mailbox did."""

    processed: int = 0
    skipped: int = 0  # already recorded before (a crash before the move): only moved now
    failed: int = 0  # left in the mailbox for the next round


def connect(mailbox: MailboxUrl, timeout: float = 30.0) -> IMAPClient:
    client = IMAPClient(mailbox.host, port=mailbox.port, ssl=mailbox.ssl, timeout=timeout)
    client.login(mailbox.user, mailbox.password)
    return client


def poll_once(client: IMAPClient, mailbox: MailboxUrl, *, bar: bool = False) -> Round:
    """Handle every message now in the folder; the caller keeps the connection.
    With `bar`, a progress bar on a terminal (`zpravodaj bounces poll --once`)."""
    selected = client.select_folder(mailbox.folder)
    uidvalidity = int(selected[b"UIDVALIDITY"])
    if not client.folder_exists(PROCESSED_FOLDER):
        client.create_folder(PROCESSED_FOLDER)
    uids = sorted(client.search(["NOT", "DELETED"]))
    with progress(len(uids) if bar else 0, "Schránka nedoručenek") as step:
        return _handle_all(client, mailbox, uidvalidity, uids, step)


def _handle_all(
    client: IMAPClient,
    mailbox: MailboxUrl,
    uidvalidity: int,
    uids: list[int],
    step: Callable[[], None],
) -> Round:
    done = Round()
    for uid in uids:
        step()
        try:
            if _handle(client, mailbox, uidvalidity, uid):
                done.processed += 1
            else:
                done.skipped += 1
        except OperationalError:
            # The database is away: leave this and the rest for the next round.
            db.session.rollback()
            log.warning("bounce mailbox: database unavailable; uid %s left for later", uid)
            done.failed += 1
            break
        except Exception:  # one unreadable message must not stop the others
            db.session.rollback()
            log.exception("bounce mailbox: uid %s could not be processed; left in place", uid)
            done.failed += 1
            continue
        _move_done(client, [uid])
    return done


def _handle(client: IMAPClient, mailbox: MailboxUrl, uidvalidity: int, uid: int) -> bool:
    """Record message `uid` unless it already was; True when it was processed now."""
    if _seen(mailbox.name, uidvalidity, uid, ""):
        return False
    fetched = client.fetch([uid], ["BODY.PEEK[]"]).get(uid, {})
    raw = bytes(fetched.get(b"BODY[]") or b"")[: MAX_BOUNCE_BYTES + 1]
    message_id = _message_id(raw)
    if message_id and _seen(mailbox.name, None, None, message_id):
        _note(mailbox.name, uidvalidity, uid, message_id)
        db.session.commit()
        return False

    def note(_report: BounceReport | None = None) -> None:
        _note(mailbox.name, uidvalidity, uid, message_id)

    if addressed_to_us(raw):
        _handle_reply(raw, uid, note)
        return True
    try:
        process_message(raw, before_commit=note)
    except NotABounce as exc:
        # Ordinary mail: nothing to record but that it was looked at.
        log.info("bounce mailbox: uid %s is no bounce (%s)", uid, exc)
        note(None)
        db.session.commit()
    return True


def _handle_reply(raw: bytes, uid: int, note: Callable[[], None]) -> None:
    """A calendar app's answer to a meeting's `rsvp+…` address: recorded as the SMTP
    receiver records it (meetings/replies.py), never taken for a bounce or a human reply."""
    try:
        outcome = process_reply(raw, before_commit=note)
    except NotAReply as exc:
        log.info("bounce mailbox: uid %s to a reply address is no calendar answer (%s)", uid, exc)
        note()
        db.session.commit()
        return
    log.info("bounce mailbox: uid %s calendar reply %s %s", uid, outcome.status, outcome.partstat)


def _seen(name: str, uidvalidity: int | None, uid: int | None, message_id: str) -> bool:
    query = select(MailboxMessage.id)
    if message_id:
        query = query.where(MailboxMessage.message_id == message_id)
    else:
        query = query.filter_by(mailbox=name, uidvalidity=uidvalidity, uid=uid)
    return db.session.scalar(query.limit(1)) is not None


def _note(name: str, uidvalidity: int, uid: int, message_id: str) -> None:
    db.session.add(
        MailboxMessage(mailbox=name, uidvalidity=uidvalidity, uid=uid, message_id=message_id)
    )


def _message_id(raw: bytes) -> str:
    headers = BytesHeaderParser().parsebytes(raw[:65536])
    return " ".join(str(headers.get("Message-ID", "")).split())[:255]


def _move_done(client: IMAPClient, uids: list[int]) -> None:
    """Out of the inbox, into Processed, \\Seen: only after the database has it."""
    client.add_flags(uids, [b"\\Seen"])
    if client.has_capability("MOVE"):
        client.move(uids, PROCESSED_FOLDER)
        return
    client.copy(uids, PROCESSED_FOLDER)
    client.delete_messages(uids)
    if client.has_capability("UIDPLUS"):
        client.uid_expunge(uids)
    else:
        client.expunge()


def wait_for_mail(client: IMAPClient, interval: float, stop: threading.Event) -> None:
    """Until new mail may be there: IMAP IDLE when offered, else `interval` seconds."""
    if not client.has_capability("IDLE"):
        stop.wait(interval)
        return
    client.idle()
    try:
        deadline = time.monotonic() + interval
        while not stop.is_set() and time.monotonic() < deadline:
            # Short checks, so that a stop request is heard within a second.
            if any(b"EXISTS" in response for response in client.idle_check(timeout=1)):
                return
    finally:
        client.idle_done()


def run(
    url: str,
    interval: float,
    *,
    once: bool = False,
    stop: threading.Event | None = None,
    bar: bool = False,
) -> Round:
    """Poll until stopped (or one round with `once`, with `bar` a progress bar on a
    terminal); reconnects after network trouble."""
    mailbox = parse_url(url)
    stop = stop or threading.Event()
    total = Round()
    while not stop.is_set():
        try:
            with connect(mailbox) as client:
                while not stop.is_set():
                    done = poll_once(client, mailbox, bar=bar and once)
                    total.processed += done.processed
                    total.skipped += done.skipped
                    total.failed += done.failed
                    if once:
                        return total
                    wait_for_mail(client, interval, stop)
        except (OSError, IMAPClientError) as exc:
            if once:
                raise
            log.warning("bounce mailbox %s: %s; trying again", mailbox.name, exc)
            stop.wait(interval)
    return total
