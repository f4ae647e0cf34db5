"""One bounce message in, the recipients that failed (and how badly) out.

RFC 3464 delivery status notifications are read here, recipient by recipient,
with their status codes and diagnostics. Everything else (Exchange's and
qmail's prose, old Postfix, Yahoo...) goes through flufl.bounce, Mailman's
detectors, which only tell permanent from temporary. The VERP address the
bounce was sent to names the delivery even when neither finds anything.
"""

from __future__ import annotations

import email
import email.message
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from flufl.bounce import all_failures

from .verp import VerpToken, parse_token

log = logging.getLogger(__name__)

MAX_BOUNCE_BYTES = 10 * 1024 * 1024
# Headers an MTA or mailbox uses to record the envelope recipient of a delivery.
ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
# Permanent statuses that still say nothing against the address itself: a full
# mailbox (5.2.2), a message too big (5.3.4), or the receiver's policy about
# us, not the recipient (5.7.x: spam filters, DMARC, blocklists). Counted as
# soft, so a filter's bad day does not unsubscribe a whole municipal office.
_SOFT_PERMANENT = (re.compile(r"5\.2\.2|5\.3\.4|5\.7\.\d+"),)


class NotABounce(ValueError):
    """The input is not a mail, or a mail that reports no failed delivery."""


@dataclass(frozen=True)
class Failure:
    address: str | None  # the failed recipient, when the report names it
    kind: str  # "hard" or "soft"
    status: str = ""  # enhanced status code, e.g. "5.1.1"
    diagnostic: str = ""


@dataclass
class BounceReport:
    failures: list[Failure] = field(default_factory=list)
    verp: VerpToken | None = None
    auto_reply: bool = False


def parse(raw: bytes, envelope_recipients: Iterable[str] = ()) -> BounceReport:
    """Read one bounce. Raises NotABounce for input that is not a mail at all.

    A report with no failures is returned as it is (the caller decides what
    an auto-reply or an unreadable report to a VERP address means).
    """
    if not raw or not raw.strip():
        raise NotABounce("prázdný vstup: očekávána jedna e-mailová zpráva")
    if len(raw) > MAX_BOUNCE_BYTES:
        raise NotABounce("zpráva je větší než 10 MB; nevypadá jako zpráva o nedoručení")
    if b"\0" in raw[:4096]:
        raise NotABounce("binární data, ne e-mailová zpráva")
    try:
        message = email.message_from_bytes(raw)
    except RecursionError:  # MIME nested deeper than any real report
        raise NotABounce(
            "zpráva je zanořená příliš hluboko; nevypadá jako zpráva o nedoručení"
        ) from None
    if not message.keys() or (message.defects and not message.get("From")):
        raise NotABounce("vstup nemá hlavičky e-mailové zprávy")

    report = BounceReport(verp=_verp_of(message, envelope_recipients))
    try:
        report.failures = _dsn_failures(message) or _detector_failures(message)
        report.auto_reply = not report.failures and _is_auto_reply(message)
    except (UnicodeError, LookupError, RecursionError, ValueError) as exc:
        # A hostile or broken message (a charset like "idna" that cannot decode,
        # MIME nested thousands deep) must not crash the pipe or the receiver.
        if report.verp is None:
            raise NotABounce(f"zprávu nelze přečíst ({type(exc).__name__})") from None
        # Sent to one of our VERP addresses: the caller counts it as an unreadable report.
        report.failures, report.auto_reply = [], False
    return report


def _verp_of(
    message: email.message.Message, envelope_recipients: Iterable[str]
) -> VerpToken | None:
    candidates = list(envelope_recipients)
    for name in ENVELOPE_HEADERS:
        candidates.extend(str(value) for value in message.get_all(name) or [])
    for candidate in candidates:
        token = parse_token(candidate)
        if token is not None:
            return token
    return None


def _dsn_failures(message: email.message.Message) -> list[Failure]:
    """Failed and delayed recipients of an RFC 3464 report, with status and diagnostic."""
    failures = []
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        blocks = payload if isinstance(payload, list) else []
        for block in blocks[1:]:  # the first block is about the reporting MTA
            if not isinstance(block, email.message.Message):
                continue
            action = str(block.get("Action", "")).strip().lower()
            if action not in ("failed", "delayed"):
                continue
            status = status_of(str(block.get("Status", "")))
            diagnostic = _one_line(block.get("Diagnostic-Code", ""))
            if not status:
                status = status_of(diagnostic)
            recipient = _address_of(block.get("Original-Recipient")) or _address_of(
                block.get("Final-Recipient")
            )
            kind = "soft" if action == "delayed" else classify(status, permanent=True)
            failures.append(Failure(recipient, kind, status, diagnostic[:500]))
    return failures


def _detector_failures(message: email.message.Message) -> list[Failure]:
    """Non-standard bounces, through Mailman's heuristics."""
    try:
        temporary, permanent = all_failures(message)
    except Exception:  # a detector tripping over a malformed part is no reason to crash
        log.warning("flufl.bounce could not read a bounce", exc_info=True)
        return []
    text = _body_text(message)
    failures = []
    for kind, found in (("permanent", permanent), ("temporary", temporary)):
        for raw_address in sorted(found):
            address = raw_address.decode("utf-8", "replace").strip("<> ")
            status, diagnostic = _context_of(address, text)
            classified = classify(status, permanent=kind == "permanent")
            failures.append(Failure(address or None, classified, status, diagnostic))
    return failures


def classify(status: str, *, permanent: bool) -> str:
    """hard or soft: only a permanent failure about the address itself is hard."""
    if status.startswith("4"):
        return "soft"
    if status.startswith("5"):
        return "soft" if any(p.fullmatch(status) for p in _SOFT_PERMANENT) else "hard"
    return "hard" if permanent else "soft"


def _is_auto_reply(message: email.message.Message) -> bool:
    """Out-of-office and other automatic answers that reach the return path."""
    auto = str(message.get("Auto-Submitted", "")).strip().lower()
    if auto and auto != "no":
        return True
    if message.get("X-Autoreply") or message.get("X-Autorespond"):
        return True
    subject = str(message.get("Subject", "")).lower()
    return any(
        word in subject
        for word in ("automatic reply", "automatická odpověď", "out of office", "nepřítomnost")
    )


def status_of(text: str) -> str:
    match = _STATUS.search(text)
    return ".".join(match.groups()) if match else ""


def _address_of(field_value: object) -> str | None:
    """`rfc822; jana@example.cz` -> `jana@example.cz`."""
    if not field_value:
        return None
    value = str(field_value).partition(";")[2] or str(field_value)
    value = value.strip().strip("<>").strip()
    return value or None


def _one_line(value: object) -> str:
    return " ".join(str(value).split())


def _body_text(message: email.message.Message) -> str:
    texts = []
    for part in message.walk():
        if part.get_content_maintype() != "text":
            continue
        try:
            payload = part.get_payload(decode=True) or b""
        except Exception:
            continue
        if not isinstance(payload, bytes):  # what decode=True gives for a text part
            continue
        charset = part.get_content_charset() or "utf-8"
        try:
            texts.append(payload.decode(charset, "replace"))
        except (LookupError, UnicodeError):  # unknown, or a codec such as idna that raises
            texts.append(payload.decode("utf-8", "replace"))
    return "\n".join(texts)


def _context_of(address: str, text: str) -> tuple[str, str]:
    """The status code and the line about `address` in a prose bounce, when there is one."""
    lines = text.splitlines()
    lowered = address.lower()
    for index, line in enumerate(lines):
        if lowered and lowered in line.lower():
            context = " ".join(part.strip() for part in lines[index : index + 3])
            return status_of(context) or status_of(text), _one_line(context)[:500]
    return status_of(text), ""
