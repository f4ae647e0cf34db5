"""One message to the bounce address in; what it is, and who failed, out.

Mail reaching the return path is not all bounces. In order:

1. an ARF feedback report (RFC 5965) is a *complaint*;
2. a provider's JSON notification (Amazon SES through SNS) is read as what
   it says (bounce, complaint) or ignored (delivery, open, subscription);
3. an RFC 3464 DSN is read recipient by recipient;
4. a message shaped like a bounce (from MAILER-DAEMON, a failure subject,
   X-Failed-Recipients...) is read as prose: flufl.bounce (Mailman's
   detectors) finds the addresses, `classify.judge` the verdict;
5. an auto-reply (RFC 3834 headers, vacation subjects) and a human reply
   are no bounce; anything else is ignored.

Each failed recipient is judged by `classify.judge` from its own evidence.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from . import notifications
from .classify import Reason, judge, stage_of, status_of
from .verp import VerpToken, parse_token

log = logging.getLogger(__name__)

MAX_BOUNCE_BYTES = 10 * 1024 * 1024
# Headers an MTA or mailbox uses to record the envelope recipient of a delivery.
ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_VALID = re.compile(r"[^\s@<>\"(),;:\[\]{}]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_DAEMONS = re.compile(r"mailer-daemon|postmaster|mail delivery|mail administrator|mdaemon", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (?:status|failure|failed|notification|problem|report)"
    r"|returned mail|failure notice|mail delivery failed|could not be delivered|not delivered"
    r"|delivery has failed|nondeliverable|non[- ]?delivery|warning: could not send"
    r"|mail system error|message (?:status|rejected)|rejected|bounce"
    r"|nedoručiteln|nelze doručit|nedoručen|unzustellbar|nicht zugestellt|non remis"
    r"|non distribuable|no se puede entregar|no entregado|devuelto|mancata consegna",
    re.I,
)
_BOUNCE_TEXT = re.compile(
    r"could not be delivered|couldn't be delivered|was not delivered|undeliverable"
    r"|delivery (?:to the following|has failed|failed)|permanent (?:fatal )?error"
    r"|this is the mail system at|the qmail-send program|wasn't able to deliver"
    r"|unable to deliver|message (?:was )?(?:rejected|returned)|delivery status notification"
    r"|following (?:address|recipient)\(?e?s?\)? failed|not be delivered",
    re.I,
)
_AUTO_SUBJECT = re.compile(
    r"automatick\w* odpověď|automatic reply|auto(?:matic)?[- ]?(?:reply|response)|autoreply"
    r"|out of (?:the )?office|away until|on vacation|vacation (?:notice|reply|message)"
    r"|nepřítomnost|nepritomnost|dovolená|mimo kancelář|abwesenheit|absence|ausente"
    r"|fuera de la oficina|assente|congés",
    re.I,
)
# Where a prose bounce quotes the original message: its words are not the failure's.
_ORIGINAL_FOLLOWS = re.compile(
    r"^.{0,12}(?:-{2,}|={2,}|\*{2,})?\s*(?:original message|below this line is a copy"
    r"|this is a copy of the message|undelivered message follows|message headers follow"
    r"|původní zpráva|ursprüngliche nachricht|message d'origine|mensaje original"
    r"|returned message follows|the original message)",
    re.I | re.M,
)


class NotABounce(ValueError):
    """The input is not a mail at all."""


class MessageKind(StrEnum):
    """What reached the bounce address."""

    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    AUTO_REPLY = "auto_reply"
    REPLY = "reply"
    NOTIFICATION = "notification"  # a provider's or MTA's notice that is no failure
    OTHER = "other"


@dataclass(frozen=True)
class Failure:
    address: str | None  # the failed recipient, when the report names it
    kind: str  # "hard" or "soft"
    status: str = ""  # enhanced status code, e.g. "5.1.1"
    diagnostic: str = ""
    reason: str = Reason.OTHER


@dataclass(frozen=True)
class Complaint:
    address: str | None  # the recipient who complained, when the report names them
    feedback_type: str = "abuse"
    list_id: str = ""  # List-Id of the mail complained about


@dataclass
class BounceReport:
    kind: MessageKind = MessageKind.OTHER
    failures: list[Failure] = field(default_factory=list)
    complaints: list[Complaint] = field(default_factory=list)
    verp: VerpToken | None = None

    @property
    def auto_reply(self) -> bool:
        return self.kind == MessageKind.AUTO_REPLY


def parse(raw: bytes, envelope_recipients: Iterable[str] = ()) -> BounceReport:
    """Read one message; raises NotABounce for input that is not a mail at all."""
    return parse_message(message_of(raw), envelope_recipients)


def parse_message(
    message: email.message.Message, envelope_recipients: Iterable[str] = ()
) -> BounceReport:
    """`parse` for a message already parsed.

    A complaint comes from the provider's feedback loop, not to our VERP
    address; the VERP return path is then that of the returned original.
    """
    report = read(message)
    report.verp = _verp_of(message, envelope_recipients)
    if report.verp is None and report.kind == MessageKind.COMPLAINT:
        report.verp = next(
            (t for t in map(parse_token, original_return_paths(message)) if t is not None), None
        )
    return report


def message_of(raw: bytes) -> email.message.Message:
    """The parsed mail, or NotABounce with a Czech reason."""
    if not raw or not raw.strip():
        raise NotABounce("prázdný vstup: očekávána jedna e-mailová zpráva")
    if len(raw) > MAX_BOUNCE_BYTES:
        raise NotABounce("zpráva je větší než 10 MB; nevypadá jako zpráva o nedoručení")
    if b"\0" in raw[:4096]:
        raise NotABounce("binární data, ne e-mailová zpráva")
    # Old Mac samples end lines with CR alone; the parser only knows LF and CRLF.
    if b"\r" in raw and b"\n" not in raw[:4096]:
        raw = raw.replace(b"\r", b"\n")
    try:
        message = email.message_from_bytes(raw)
    except RecursionError:  # MIME nested deeper than any real report
        raise NotABounce(
            "zpráva je zanořená příliš hluboko; nevypadá jako zpráva o nedoručení"
        ) from None
    if not message.keys() or (message.defects and not message.get("From")):
        raise NotABounce("vstup nemá hlavičky e-mailové zprávy")
    return message


def read(message: email.message.Message) -> BounceReport:
    """What the message is, without looking at VERP (no app needed)."""
    try:
        return _read(message)
    except (UnicodeError, LookupError, RecursionError, ValueError, TypeError, AttributeError):
        # A hostile or broken message (a charset like "idna" that cannot decode,
        # MIME nested thousands deep) must not crash the pipe or the receiver.
        log.info("could not read a message to the bounce address", exc_info=True)
        return BounceReport(MessageKind.OTHER)


def _read(message: email.message.Message) -> BounceReport:
    complaints = arf_complaints(message)
    if complaints is not None:
        return BounceReport(MessageKind.COMPLAINT, complaints=complaints)
    notice = notifications.read(_notice_text(message))
    if notice is not None:
        return _from_notice(notice)
    found, failures = _dsn_failures(message)
    if failures:
        return BounceReport(MessageKind.BOUNCE, failures)
    if found:  # a DSN that reports only delivered / relayed / expanded recipients
        return BounceReport(MessageKind.NOTIFICATION)
    if _looks_like_bounce(message):
        return BounceReport(MessageKind.BOUNCE, _prose_failures(message))
    if is_auto_reply(message):
        return BounceReport(MessageKind.AUTO_REPLY)
    if _is_reply(message):
        return BounceReport(MessageKind.REPLY)
    return BounceReport(MessageKind.OTHER)


def _from_notice(notice: notifications.Notice) -> BounceReport:
    failures = [
        Failure(address, *_verdict(status, diagnostic, permanent=notice.permanent))
        for address, status, diagnostic in notice.failed
        if valid_address(address)
    ]
    complaints = [Complaint(a, notice.feedback_type) for a in notice.complained if valid_address(a)]
    if complaints:
        return BounceReport(MessageKind.COMPLAINT, complaints=complaints)
    if failures:
        return BounceReport(MessageKind.BOUNCE, failures)
    return BounceReport(MessageKind.NOTIFICATION)


def _verdict(status: str, diagnostic: str, *, permanent: bool) -> tuple[str, str, str, str]:
    """(kind, status, diagnostic, reason) for a provider-reported failure."""
    verdict = judge(status, diagnostic, delayed=False)
    kind = verdict.kind if permanent else "soft"
    return kind, verdict.status or status, diagnostic[:500], verdict.reason


def valid_address(address: str | None) -> bool:
    """A failure names somebody only if its address looks like one (not a JSON fragment)."""
    if not address:
        return False
    return len(address) <= 254 and bool(_VALID.fullmatch(address))


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


def _dsn_failures(message: email.message.Message) -> tuple[bool, list[Failure]]:
    """(any DSN found, its failed and delayed recipients with their verdicts)."""
    found, failures = False, []
    prose = None
    for part in message.walk():
        if part.get_content_type() not in ("message/delivery-status", "text/delivery-status"):
            continue
        found = True
        if prose is None:
            prose = notification_text(message)
        blocks = _dsn_blocks(part)
        recipients = [_address_of(b.get("Final-Recipient")) or "" for b in blocks]
        for block in blocks:
            failure = _dsn_recipient(block, prose, recipients)
            if failure is not None:
                failures.append(failure)
    return found, failures


def _dsn_blocks(part: email.message.Message) -> list[email.message.Message]:
    """The per-recipient field blocks of one delivery-status part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [
            block
            for block in payload
            if isinstance(block, email.message.Message)
            and (block.get("Final-Recipient") or block.get("Action"))
        ]
    text = payload if isinstance(payload, str) else ""
    if part.get("Content-Transfer-Encoding", "").lower() in ("base64", "quoted-printable"):
        decoded = part.get_payload(decode=True)
        text = decoded.decode("utf-8", "replace") if isinstance(decoded, bytes) else ""
    blocks = re.split(r"\n\s*\n", text.replace("\r\n", "\n"))
    return [email.message_from_string(block.strip() + "\n") for block in blocks if block.strip()]


def _dsn_recipient(
    block: email.message.Message, prose: str, recipients: list[str]
) -> Failure | None:
    """One recipient's block judged by its Status and Diagnostic-Code.

    Where the block says little (no diagnostic, or a generic status), the
    human-readable part's words about this recipient are read too: many
    MTAs (OpenSMTPD, old Sendmail) put the remote reply only there.
    """
    action = str(block.get("Action", "")).strip().lower().split()[:1]
    status_field = str(block.get("Status", ""))
    if action and action[0] not in ("failed", "delayed", "failure"):
        return None
    if not action and not status_field.strip().startswith(("4", "5")):
        return None
    recipient = _address_of(block.get("Original-Recipient")) or _address_of(
        block.get("Final-Recipient")
    )
    if not valid_address(recipient) and valid_address(_address_of(block.get("Final-Recipient"))):
        recipient = _address_of(block.get("Final-Recipient"))
    diagnostic = _one_line(block.get("Diagnostic-Code", ""))
    if not diagnostic:
        diagnostic = _one_line(block.get("X-Remote-MTA-Response", ""))
    delayed = bool(action) and action[0] == "delayed"
    context = ""
    if recipient and (not diagnostic or status_of(diagnostic + " " + status_field) in _SAYS_LITTLE):
        context = _context_of(recipient, prose, recipients)
        context = "" if context == _one_line(prose) and len(recipients) > 1 else context
    stage = stage_of(diagnostic) or stage_of(context) or stage_of(prose)
    verdict = judge(status_field, diagnostic, context, delayed=delayed, stage=stage)
    status = verdict.status or status_of(status_field)
    return Failure(
        recipient if valid_address(recipient) else None,
        verdict.kind,
        status,
        (diagnostic or context)[:500],
        verdict.reason,
    )


# Statuses that say nothing specific: the prose may say more.
_SAYS_LITTLE = {"", "5.0.0", "4.0.0", "5.5.0", "5.1.0"}


def _looks_like_bounce(message: email.message.Message) -> bool:
    """A non-DSN failure report: from a mail system, or worded like one."""
    sender = str(message.get("From", ""))
    subject = _header(message, "Subject")
    if message.get("X-Failed-Recipients"):
        return True
    if _DAEMONS.search(sender) and not _AUTO_SUBJECT.search(subject):
        return True
    if _BOUNCE_SUBJECT.search(subject) and not re.match(
        r"\s*(re|odp|aw|fw|fwd)\s*:", subject, re.I
    ):
        return True
    if is_auto_reply(message) or _is_reply(message):
        return False
    return bool(_BOUNCE_TEXT.search(notification_text(message)[:4000]))


def is_auto_reply(message: email.message.Message) -> bool:
    """Out-of-office and other automatic answers (RFC 3834 and the usual headers)."""
    auto = str(message.get("Auto-Submitted", "")).strip().lower()
    if auto and auto != "no":
        return True
    if message.get("X-Autoreply") or message.get("X-Autorespond") or message.get("X-Autoresponse"):
        return True
    precedence = str(message.get("Precedence", "")).strip().lower()
    if precedence in ("auto_reply", "auto-reply"):
        return True
    return bool(_AUTO_SUBJECT.search(_header(message, "Subject")))


def _is_reply(message: email.message.Message) -> bool:
    if message.get("In-Reply-To") or message.get("References"):
        return True
    return bool(re.match(r"\s*(re|odp|aw|sv|vs|r)\s*:", _header(message, "Subject"), re.I))


def _prose_failures(message: email.message.Message) -> list[Failure]:
    """Failed recipients of a bounce that is no DSN, each judged by the words about it."""
    text = notification_text(message)
    addresses = _prose_addresses(message, text)
    failures = []
    for address in addresses:
        context = _context_of(address, text, addresses)
        stage = stage_of(context) or stage_of(text)
        verdict = judge("", "", context, stage=stage)
        if verdict.reason == Reason.OTHER and context != _one_line(text) and len(addresses) == 1:
            verdict = judge("", "", text, stage=stage)
        failures.append(
            Failure(address, verdict.kind, verdict.status, context[:500], verdict.reason)
        )
    return failures


def _prose_addresses(message: email.message.Message, text: str) -> list[str]:
    """Who failed: flufl.bounce's detectors, X-Failed-Recipients, then the text itself."""
    # Imported on the first bounce that needs it: the worker and web processes load
    # this module through the CLI and the refusal recording, rarely its detectors.
    from flufl.bounce import all_failures

    found: list[str] = []
    try:
        temporary, permanent = all_failures(message)
        found = [a.decode("utf-8", "replace").strip("<> ") for a in (*permanent, *temporary)]
    except Exception:  # a detector tripping over a malformed part is no reason to crash
        log.warning("flufl.bounce could not read a bounce", exc_info=True)
    for value in message.get_all("X-Failed-Recipients") or []:
        found.extend(part.strip() for part in str(value).split(","))
    found = [a for a in found if valid_address(a)]
    if not found:
        own = {a.lower() for a in _ADDRESS.findall(str(message.get("From", "")))}
        found = [a for a in _ADDRESS.findall(text) if a.lower() not in own][:1]
    if not found:
        found = _original_recipients(message)[:1]
    unique = {a.lower(): a for a in found if valid_address(a)}
    return sorted(unique.values())


def _original_recipients(message: email.message.Message) -> list[str]:
    """The To of the returned original message, when the bounce names nobody itself."""
    for part in message.walk():
        if part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else inner
            if isinstance(inner, str):
                inner = email.message_from_string(inner)
            if isinstance(inner, email.message.Message):
                return _ADDRESS.findall(str(inner.get("To", "")))
    return []


def notification_text(message: email.message.Message) -> str:
    """The words of the report itself, without the returned original message."""
    texts = []
    for part in _parts_outside_attachments(message):
        if part.get_content_maintype() != "text" or part.get_content_subtype() == "rfc822-headers":
            continue
        texts.append(_decoded(part))
    text = "\n".join(texts)
    cut = _ORIGINAL_FOLLOWS.search(text)
    return text[: cut.start()] if cut and cut.start() > 40 else text


def _parts_outside_attachments(
    message: email.message.Message,
) -> Iterator[email.message.Message]:
    """Every leaf part, except those inside an attached message/rfc822."""
    if message.get_content_type() == "message/rfc822":
        return
    if message.is_multipart():
        for part in message.get_payload():
            if isinstance(part, email.message.Message):
                yield from _parts_outside_attachments(part)
    else:
        yield message


def _notice_text(message: email.message.Message) -> str:
    """The body of a single-part mail, where a provider's JSON notification would be."""
    if message.is_multipart():
        return ""
    return _decoded(message).strip()


def arf_complaints(message: email.message.Message) -> list[Complaint] | None:
    """The complaints of an ARF feedback report, None when the message is none."""
    report = next(
        (p for p in message.walk() if p.get_content_type() == "message/feedback-report"), None
    )
    if report is None:
        return _jmrp_complaints(message)
    fields = _report_fields(report)
    feedback_type = fields.get("feedback-type", "abuse").strip().lower() or "abuse"
    original = _original_headers(message)
    candidates = [
        fields.get("original-rcpt-to", ""),
        fields.get("removal-recipient", ""),
        str(original.get("To", "")) if original is not None else "",
    ]
    address = next(
        (a for value in candidates for a in _ADDRESS.findall(value) if valid_address(a)), None
    )
    list_id = str(original.get("List-Id", "")) if original is not None else ""
    return [Complaint(address, feedback_type, _one_line(list_id))]


def _jmrp_complaints(message: email.message.Message) -> list[Complaint] | None:
    """Microsoft's feedback loop (JMRP): the complained-about mail, marked by Outlook.com."""
    for part in message.walk():
        recipient = part.get("X-HmXmrOriginalRecipient")
        if recipient:
            found = [a for a in _ADDRESS.findall(str(recipient)) if valid_address(a)]
            return [Complaint(found[0] if found else None, "abuse")]
    return None


def _report_fields(part: email.message.Message) -> dict[str, str]:
    payload = part.get_payload()
    if isinstance(payload, list):
        blocks = [block for block in payload if isinstance(block, email.message.Message)]
    else:
        text = payload if isinstance(payload, str) else ""
        blocks = [email.message_from_string(text.strip() + "\n")]
    fields: dict[str, str] = {}
    for block in blocks:
        for name, value in block.items():
            fields.setdefault(name.lower(), str(value))
    return fields


def _original_headers(message: email.message.Message) -> email.message.Message | None:
    for part in message.walk():
        if part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else inner
            if isinstance(inner, str):
                inner = email.message_from_string(inner)
            if isinstance(inner, email.message.Message):
                return inner
    return None


def original_return_paths(message: email.message.Message) -> list[str]:
    """Return-Path and envelope headers of the returned original (where a complaint's VERP is)."""
    original = _original_headers(message)
    if original is None:
        return []
    return [str(v) for name in ("Return-Path", "Sender") for v in original.get_all(name) or []]


def _address_of(field_value: object) -> str | None:
    """`rfc822; jana@example.cz` -> `jana@example.cz`."""
    if not field_value:
        return None
    value = str(field_value).partition(";")[2] or str(field_value)
    value = value.strip().strip("<>").strip()
    return value or None


def _one_line(value: object) -> str:
    return " ".join(str(value).split())


def header_text(message: email.message.Message, name: str) -> str:
    """A header's value with RFC 2047 encoded words decoded."""
    return _header(message, name)


def _header(message: email.message.Message, name: str) -> str:
    value = message.get(name, "")
    try:
        return str(email.header.make_header(email.header.decode_header(str(value))))
    except (UnicodeError, LookupError, email.errors.HeaderParseError):
        return str(value)


def _decoded(part: email.message.Message) -> str:
    try:
        payload = part.get_payload(decode=True) or b""
    except Exception:  # a broken transfer encoding: read nothing rather than crash
        return ""
    if not isinstance(payload, bytes):
        return str(payload)
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except (LookupError, UnicodeError):  # unknown, or a codec such as idna that raises
        return payload.decode("utf-8", "replace")


def _context_of(address: str, text: str, others: Iterable[str] = ()) -> str:
    """The words about `address` in a report: its line and the next few.

    The paragraph stops at a line that names another failed recipient, so
    that in a report about several, each is judged by its own reply. The line
    before counts too (Lotus Notes puts the reason above the address) unless
    it is about somebody else.
    """
    lines = text.splitlines()
    lowered = address.lower()
    other = [o.lower() for o in others if o and o.lower() != lowered]

    def names_other(line: str) -> bool:
        line = line.lower()
        return any(o in line for o in other) and lowered not in line

    for index, line in enumerate(lines):
        if lowered not in line.lower():
            continue
        start = index - 1 if index > 0 and not names_other(lines[index - 1]) else index
        end = index + 1
        while end < len(lines) and end < index + 6 and not names_other(lines[end]):
            end += 1
        return _one_line(" ".join(lines[start:end]))
    return _one_line(text)
