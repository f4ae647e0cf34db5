"""Composing mail in the web process and handing it to the workers.

One function per mail kind lives with its feature (e.g.
`subscriptions/emails.py`); this module renders the `.txt`/`.html` template
pair, builds the MIME message the way every mail of the service must look
(DESIGN.md §5.6) and stores it as an `OutgoingMail` row. The row is enqueued
only after the transaction that created it commits, so no job can ever point
at a row that does not exist, and a row whose enqueue failed (Redis down)
is picked up by the reconciler.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC
from email.header import Header
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8, EmailPolicy
from email.utils import format_datetime, formataddr, make_msgid, parseaddr
from typing import Any

from flask import current_app, render_template

from .clock import utcnow
from .extensions import db
from .i18n import in_language
from .jobs import after_commit, enqueue_outgoing_mail
from .models import MailStatus, OutgoingMail, Subscriber

log = logging.getLogger(__name__)

# Headers written exactly as given, never folded or re-encoded. RFC 8058
# one-click unsubscribe needs List-Unsubscribe(-Post) readable verbatim, and
# Python's email package would otherwise encode a long URL into =?utf-8?q?…?=;
# and its folding of a long To drops the quotes around a display name with
# commas, turning one recipient into several. `format_recipient` builds To (quoted
# name, RFC 2047 where needed) and it is kept as built.
VERBATIM_HEADERS = frozenset({"list-unsubscribe", "list-unsubscribe-post", "list-id", "to"})


# Folded header lines by (method, policy settings, name, text); see _VerbatimHeaders._remembered.
_FOLDED: dict[tuple, Any] = {}
_FOLDED_MAX = 1024


class _VerbatimHeaders(EmailPolicy):
    """EmailPolicy that stores and writes VERBATIM_HEADERS as given, on one line.

    It also writes a short ASCII header (Date, Message-ID, MIME-Version, a
    part's Content-Transfer-Encoding…) as it is: the email package would
    parse it into a token tree and refold that into the same one line, which
    was a third of the CPU of composing a confirmation mail (issue 14).
    Non-ASCII and long values still go through the package's folding and
    RFC 2047 encoding.
    """

    def header_store_parse(self, name: str, value: str) -> tuple[str, Any]:
        if name.lower() in VERBATIM_HEADERS:
            if "\r" in value or "\n" in value:
                raise ValueError(
                    "Header values may not contain linefeed or carriage return characters"
                )
            return name, value
        return super().header_store_parse(name, value)

    def fold(self, name: str, value: str) -> str:
        if name.lower() in VERBATIM_HEADERS or self._fits_as_is(name, value):
            return f"{name}: {value}{self.linesep}"
        return self._remembered(name, value, super().fold)

    def fold_binary(self, name: str, value: str) -> bytes:
        if name.lower() in VERBATIM_HEADERS or self._fits_as_is(name, value):
            line = f"{name}: {value}{self.linesep}"
            return line.encode("utf-8" if self.utf8 else "ascii")
        return self._remembered(name, value, super().fold_binary)

    def _remembered(self, name: str, value: str, fold: Callable[[str, str], Any]) -> Any:
        """`fold(name, value)`, remembered for values that recur: the From line (always the
        same), a confirmation's or an issue's Subject (the same for every recipient).

        The folded form depends only on the policy, the name and the text: a value
        holding encoded words (`=?`) is left out, since its text is already decoded.
        """
        if "=?" in value:
            return fold(name, value)
        key = (fold.__name__, self.utf8, self.max_line_length, self.linesep, name, str(value))
        folded = _FOLDED.get(key)
        if folded is None:
            if len(_FOLDED) >= _FOLDED_MAX:
                _FOLDED.clear()
            folded = _FOLDED[key] = fold(name, value)
        return folded

    def _fits_as_is(self, name: str, value: str) -> bool:
        """An ASCII value on one line within the line length: folding would not change it."""
        return (
            value.isascii()
            and (self.max_line_length is None or len(name) + 2 + len(value) <= self.max_line_length)
            and "\r" not in value
            and "\n" not in value
            and value == value.strip()
            and "  " not in value
            and "=?" not in value
        )


# CRLF line endings (SMTP's), 78-column folding for everything else.
MAIL_POLICY = _VerbatimHeaders() + SMTP
MAIL_POLICY_UTF8 = _VerbatimHeaders() + SMTPUTF8


def sender_address() -> tuple[str, str]:
    """(display name, address) of MAIL_FROM."""
    name, address = parseaddr(current_app.config["MAIL_FROM"])
    return name, address


def sender_domain() -> str:
    return sender_address()[1].rpartition("@")[2] or "localhost.localdomain"


def render_pair(template: str, **context: Any) -> tuple[str, str]:
    """Render templates/email/<template>.txt and .html with the same context."""
    text = render_template(f"email/{template}.txt", **context)
    html = render_template(f"email/{template}.html", **context)
    return text, html


def compose(
    *,
    to_name: str,
    to_address: str,
    smtputf8: bool,
    subject: str,
    text: str,
    html: str,
    extra_headers: dict[str, str] | None = None,
) -> EmailMessage:
    """A multipart/alternative message, text first, with the headers every mail carries."""
    policy = MAIL_POLICY_UTF8 if smtputf8 else MAIL_POLICY
    msg = EmailMessage(policy=policy)
    from_name, from_address = sender_address()
    msg["From"] = HeaderAddress(display_name=from_name, addr_spec=from_address)
    msg["To"] = format_recipient(to_name, to_address, smtputf8)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(utcnow().replace(tzinfo=UTC))
    msg["Message-ID"] = make_msgid(domain=sender_domain())
    for name, value in (extra_headers or {}).items():
        msg[name] = value
    msg.set_content(_with_final_newline(text), subtype="plain", cte="quoted-printable")
    msg.add_alternative(_with_final_newline(html), subtype="html", cte="quoted-printable")
    return msg


def queue_message(
    msg: EmailMessage, *, kind: str, recipient: str, subscriber: Subscriber | None
) -> OutgoingMail:
    """Store `msg` for sending to `recipient`; enqueued when the transaction commits."""
    return queue_message_bytes(
        msg.as_bytes(policy=msg.policy),
        message_id=str(msg["Message-ID"]),
        kind=kind,
        recipient=recipient,
        subscriber=subscriber,
    )


def send_to_subscriber(
    subscriber: Subscriber, kind: str, subject: str, template: str | None = None, **context: Any
) -> str:
    """Render the `kind` (or `template`) template pair for `subscriber` and queue it.

    Returns its Message-ID. The pair is rendered in the subscriber's language.

    The To header carries no display name: these mails answer forms anyone can
    fill in with anyone's address, or a coordinator typed the name, so the
    name is not the address owner's word.
    """
    # In their language (the caller's subject too: see `in_language`).
    with in_language(subscriber.language):
        text, html = render_pair(
            template or kind, subscriber=subscriber, subject=subject, **context
        )
    msg = compose(
        to_name="",
        to_address=subscriber.envelope_address,
        smtputf8=subscriber.ascii_email is None,
        subject=subject,
        text=text,
        html=html,
    )
    queue_message(msg, kind=kind, recipient=subscriber.envelope_address, subscriber=subscriber)
    return str(msg["Message-ID"])


def queue_message_bytes(
    raw: bytes, *, message_id: str, kind: str, recipient: str, subscriber: Subscriber | None = None
) -> OutgoingMail:
    """Store an already built message (e.g. a personalised issue copy) for sending."""
    if subscriber is not None and subscriber.id is None:
        db.session.flush()
    mail = OutgoingMail(
        kind=kind,
        subscriber_id=subscriber.id if subscriber is not None else None,
        sender=sender_address()[1],
        recipient=recipient,
        smtputf8=not recipient.isascii(),
        message_id=message_id,
        raw=raw,
        status=MailStatus.QUEUED,
    )
    db.session.add(mail)
    db.session.flush()  # the id names the job
    after_commit(enqueue_outgoing_mail, mail.id)
    return mail


def format_recipient(name: str, address: str, smtputf8: bool) -> str:
    """The To value: the name always quoted; RFC 2047 only for non-ASCII without SMTPUTF8.

    Always quoting keeps a typed `=?utf-8?…?=` from being read as an encoded word.
    """
    if not name:
        return address
    if "=?" in name:
        # Mail readers decode encoded words even inside quotes; encode the
        # whole name so a typed one is shown as typed, not interpreted.
        return f"{Header(name, 'utf-8').encode(maxlinelen=10_000)} <{address}>"
    if name.isascii() or smtputf8:
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{quoted}" <{address}>'
    return formataddr((name, address), charset="utf-8")


def _with_final_newline(body: str) -> str:
    return body if body.endswith("\n") else body + "\n"
