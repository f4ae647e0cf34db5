"""Human replies to the bounce address: forwarded to REPLY_TO_FORWARD, never lost.

People answer an issue; when the answer reaches the return path (a mail
client replying to Return-Path, a list of recipients kept from a bounce),
it is a person talking to us. With REPLY_TO_FORWARD set it goes there
through the normal outgoing mail queue (retries, logs, the send rate),
wrapped whole as an attachment: sent on under its writer's own From it
would fail their domain's DMARC. Auto-replies are never forwarded, and the
forward is marked `Auto-Submitted: auto-forwarded` (RFC 3834) so that the
receiving side's vacation message does not answer it back.
"""

from __future__ import annotations

import email
import email.message
import email.policy
from datetime import UTC
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr

from flask import current_app

from ..clock import utcnow
from ..mail import MAIL_POLICY, format_recipient, queue_message, sender_address, sender_domain
from .parsing import MessageKind, header_text

KIND = "reply_forward"


def forward_reply(kind: MessageKind, message: email.message.Message, raw: bytes) -> str | None:
    """Queue a forward of a human reply; its Message-ID, or None when nothing is sent."""
    target = (current_app.config.get("REPLY_TO_FORWARD") or "").strip()
    if kind != MessageKind.REPLY or not target:
        return None
    author = parseaddr(str(message.get("From", "")))[1]
    subject = header_text(message, "Subject").strip() or "(bez předmětu)"
    forward = EmailMessage(policy=MAIL_POLICY)
    from_name, from_address = sender_address()
    forward["From"] = HeaderAddress(display_name=from_name, addr_spec=from_address)
    forward["To"] = format_recipient("", target, False)
    if author:
        forward["Reply-To"] = author
    forward["Subject"] = f"Odpověď čtenáře: {subject}"[:250]
    forward["Date"] = format_datetime(utcnow().replace(tzinfo=UTC))
    forward["Message-ID"] = make_msgid(domain=sender_domain())
    forward["Auto-Submitted"] = "auto-forwarded"
    forward.set_content(
        f"Na adresu pro vrácené e-maily přišla odpověď od {author or 'neznámého odesílatele'}.\n"
        "Původní zpráva je v příloze; odpovědět můžete přímo (Reply-To je autor).\n",
        cte="quoted-printable",
    )
    original = email.message_from_bytes(raw, policy=email.policy.SMTP)
    forward.add_attachment(original, filename="odpoved.eml")
    queue_message(forward, kind=KIND, recipient=target, subscriber=None)
    return str(forward["Message-ID"])
