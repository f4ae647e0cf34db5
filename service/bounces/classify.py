"""Hard or soft, and why: one failed recipient judged by its evidence.

Hard means the address itself is gone, and only evidence about the address
says so: RFC 3463 subject 1 codes X.1.1 (no such mailbox), X.1.2 (no such
domain), X.1.3 (bad address syntax), X.1.6 (moved), X.1.10 (null MX), or,
where the code is generic or missing, unambiguous words ("user unknown",
"adresát neexistuje", "Benutzer unbekannt"...). Everything else is soft with
a reason kept apart: a full mailbox, a message too big, throttling, a policy
or spam block (which is about us, not the subscriber), an expired queue.

The most specific code found in Status, Diagnostic-Code or the text wins:
`Status: 5.0.0` with `552 5.2.2 Mailbox full` is a full mailbox. Some
evidence outweighs any code: a refusal of our greeting or of MAIL FROM is
about us (RFC 5321), so are words about our reputation or rate, and words
that the mailbox is full say that it exists. Which SMTP command a refusal
answered, where the report shows it, settles the weak RFC 5321 wording
"mailbox unavailable": at RCPT it is about the address, after DATA a filter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from flask_babel import lazy_gettext as _l


class Stage(StrEnum):
    """Which SMTP command the refusal answered, when the report shows it."""

    UNKNOWN = ""
    GREETING = "greeting"  # HELO/EHLO, MAIL FROM or the connection: about us
    RCPT = "rcpt"
    DATA = "data"


class Reason(StrEnum):
    """Why a recipient failed; ADDRESS is the only hard one."""

    ADDRESS = "address"
    MAILBOX_FULL = "mailbox_full"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    SPAM = "spam"
    BLOCKED = "blocked"
    CONTENT = "content"
    EXPIRED = "expired"
    SUSPENDED = "suspended"
    FILTERED = "filtered"  # refused after the message was sent (end of DATA): a filter
    SYSTEM = "system"
    OTHER = "other"


# How the admin names each reason (translated when shown).
REASON_LABELS = {
    Reason.ADDRESS: _l("adresa neexistuje"),
    Reason.MAILBOX_FULL: _l("plná schránka"),
    Reason.TOO_LARGE: _l("zpráva je příliš velká"),
    Reason.RATE_LIMITED: _l("příliš mnoho zpráv najednou"),
    Reason.SPAM: _l("označeno jako spam"),
    Reason.BLOCKED: _l("blokováno serverem příjemce"),
    Reason.CONTENT: _l("obsah odmítnut"),
    Reason.EXPIRED: _l("nedoručeno včas"),
    Reason.SUSPENDED: _l("schránka je zablokovaná"),
    Reason.FILTERED: _l("odmítnuto filtrem"),
    Reason.SYSTEM: _l("chyba serveru příjemce"),
    Reason.OTHER: _l("jiný důvod"),
}

# A status code, not a piece of an IP address or version number.
_CODE = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
_REPLY = re.compile(r"(?<![\d.-])([245])\d\d(?![\d.])")
ADDRESS_CODES = {(1, 1), (1, 2), (1, 3), (1, 6), (1, 10)}
# "Other or undefined" address or protocol status: says nothing either way.
_GENERIC = {(0, 0), (1, 0), (5, 0)}
# Codes whose meaning is plainly not about the address: words cannot overrule them.
_NOT_ADDRESS = {
    (2, 2): Reason.MAILBOX_FULL,
    (2, 3): Reason.TOO_LARGE,
    (3, 4): Reason.TOO_LARGE,
    (4, 7): Reason.EXPIRED,
    (5, 3): Reason.OTHER,
    (1, 7): Reason.BLOCKED,  # the *sender's* address is bad: about us
    (1, 8): Reason.BLOCKED,
}
_BY_CODE = {
    (2, 1): Reason.SUSPENDED,
    (2, 4): Reason.SYSTEM,
    (3, 1): Reason.SYSTEM,
    (3, 2): Reason.SYSTEM,
    (4, 1): Reason.SYSTEM,
    (4, 2): Reason.SYSTEM,
    (4, 3): Reason.SYSTEM,
    (4, 4): Reason.SYSTEM,
    (4, 5): Reason.RATE_LIMITED,
    (4, 6): Reason.SYSTEM,
    (6, 0): Reason.CONTENT,
    (7, 0): Reason.BLOCKED,
    (7, 1): Reason.BLOCKED,
    (7, 27): Reason.BLOCKED,
    (7, 28): Reason.RATE_LIMITED,
}


def _words(*phrases: str) -> re.Pattern:
    return re.compile("|".join(phrases), re.IGNORECASE)


# Words that the address does not exist, in the languages Czech providers and
# their neighbours answer in. Checked only against the recipient's own text.
_ADDRESS_WORDS = _words(
    r"user(?:name)? (?:is )?unknown",
    r"unknown (?:user|recipient|mailbox|address|local[- ]part|account|alias)",
    r"no such (?:user|mailbox|recipient|address|account|person|local user|domain)",
    r"(?:recipient|addressee|mailbox|address) (?:is )?unknown",
    r"(?:user|recipient|mailbox|address|account|addressee)(?: name)? (?:was )?not found",
    r"(?:user|recipient|mailbox|address|account|e-?mail address)(?: \S+)? (?:does not|doesn't"
    r"|did not|no longer) exist",
    r"(?:invalid|bad|unknown|illegal) (?:recipient|mailbox|user|destination mailbox)",
    r"not a (?:valid|known) (?:user|mailbox|recipient)",
    r"no mailbox (?:here )?by that name",
    r"mailbox (?:is )?(?:not found|does not exist|inexistent|nonexistent)",
    r"not listed in (?:the )?(?:public )?(?:\w+ )?(?:directory|name & address book)",
    r"ディレクトリ.{0,12}(?:ありません|見つかりません)",  # Lotus Notes/Domino in Japanese
    r"user not known",
    r"unknown host",
    r"invalid (?:recipient )?domain",
    r"couldn't find (?:a|any) (?:mail exchanger|host)",
    r"\b[\w-]+(?:\.[\w-]+)+ does not exist",  # a domain named as not existing
    # Microsoft 365 directory-based edge blocking: the recipient is not in the tenant.
    r"recipient address rejected: access denied",
    r"recipient name is not recognized",
    r"invalid final delivery userid",
    r"user not exist",
    r"host \S+ not found",
    r"no mx (?:record|host)",
    r"indicated no smtp service",
    r"user (?:doesn't|does not) have an? .{0,20}account",
    r"account (?:that you tried to reach )?does not exist",
    r"recipient (?:address )?rejected: (?:user unknown|undeliverable|unknown|does not exist)",
    r"host (?:or domain name )?not found",
    r"domain (?:name )?(?:not found|does not exist)",
    r"unrouteable address",
    r"host unknown",
    r"this user doesn't have",
    r"(?:adresát|uživatel|schránka|účet|adresa)\s+(?:\S+\s+)?neexistuje",
    r"neznámý (?:adresát|uživatel|příjemce)",
    r"neexistující (?:adresa|schránka|adresát)",
    r"benutzer (?:ist )?unbekannt",
    r"(?:unbekannter|ungültiger) empfänger",
    r"empfänger (?:ist )?unbekannt",
    r"(?:adresse|postfach|konto) existiert nicht",
    r"utilisateur inconnu",
    r"destinataire inconnu",
    r"adresse (?:email )?inconnue",
    r"(?:adresse|destinataire|compte|boîte) n'existe pas",
    r"usuario desconocido",
    r"destinatario desconocido",
    r"(?:cuenta|buzón|dirección|usuario)(?: de correo)? no existe",
    r"utente (?:sconosciuto|inesistente)",
    r"użytkownik nie istnieje",
)
# RFC 5321's stock text for 550, also used for policy refusals: needs corroboration.
_WEAK_ADDRESS_WORDS = _words(r"mailbox (?:is )?unavailable", r"recipient (?:address )?rejected")
# About us, not the subscriber: our reputation, our sending rate.
_US_WORDS = _words(
    r"\bspam",
    r"black ?list",
    r"block ?list",
    r"\bdnsbl\b",
    r"\brbl\b",
    r"reputation",
    r"too many (?:recipients|messages|connections|mails)",
    r"rate limit",
)
# The mailbox exists, it is only full.
_EXISTS_WORDS = _words(
    r"over ?quota",
    r"quota (?:exceeded|full)",
    r"mail ?box (?:is )?full",
    r"disk space",
    r"insufficient (?:storage|disk)",
    r"plná schránka",
    r"postfach (?:ist )?voll",
)
_REASON_WORDS: list[tuple[Reason, re.Pattern]] = [
    (
        Reason.MAILBOX_FULL,
        _words(
            r"mail ?box (?:is )?full",
            r"(?:over|exceed\w*)(?: \w+)? quota",
            r"quota (?:exceeded|full)",
            r"mailbox (?:has )?exceeded",
            r"insufficient (?:storage|disk)",
            r"exceeded storage",
            r"mail ?folder is full",
            r"out of storage",
            r"disk full",
            r"plná schránka|schránka (?:\S+ )?(?:je )?plná|překročen\w* kvót",
            r"postfach (?:ist )?voll|speicherplatz|quota überschritten",
            r"bo[îi]te (?:aux lettres )?pleine|quota dépassé",
            r"buzón (?:está )?lleno",
        ),
    ),
    (
        Reason.TOO_LARGE,
        _words(r"too (?:large|big)", r"size (?:limit|exceed)", r"exceeds? .{0,30}size"),
    ),
    (
        Reason.RATE_LIMITED,
        _words(r"rate limit", r"too many", r"throttl", r"greylist", r"try (?:again )?later"),
    ),
    (Reason.SPAM, _words(r"\bspam\b", r"junk mail", r"\bUBE\b", r"bulk mail")),
    (Reason.CONTENT, _words(r"virus", r"malware", r"attachment", r"content (?:rejected|filter)")),
    (
        Reason.BLOCKED,
        _words(
            r"block", r"blacklist", r"listed", r"\bpolicy\b", r"access denied", r"relay",
            r"reputation", r"dmarc", r"\bspf\b", r"dkim", r"reverse dns", r"\bptr\b",
            r"sender (?:address )?(?:rejected|denied)", r"not (?:permitted|allowed)",
            r"authenticat", r"refused", r"odmítnut", r"blokov",
        ),
    ),
    (
        Reason.EXPIRED,
        _words(
            r"retry time", r"expired", r"giving up", r"too long", r"timed? ?out",
            r"could not be delivered (?:for|within)", r"delivery (?:temporarily )?delayed",
        ),
    ),
    (
        Reason.SUSPENDED,
        _words(r"disabled", r"suspended", r"inactive", r"deactivated", r"locked"),
    ),
]  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    kind: str  # "hard" or "soft"
    reason: Reason
    status: str  # the code that decided, or "" when words did


def codes_in(text: str) -> list[tuple[int, int, int]]:
    return [(int(a), int(b), int(c)) for a, b, c in _CODE.findall(text or "")]


def most_specific(codes: list[tuple[int, int, int]]) -> tuple[int, int, int] | None:
    """The code that says most: a non-zero subject beats X.0.0, a detail beats X.Y.0."""
    if not codes:
        return None
    return max(codes, key=lambda code: (code[1] != 0) * 2 + (code[2] != 0))


def status_of(text: str) -> str:
    code = most_specific(codes_in(text))
    return ".".join(map(str, code)) if code else ""


def judge(
    status: str = "",
    diagnostic: str = "",
    text: str = "",
    *,
    delayed: bool = False,
    stage: Stage = Stage.UNKNOWN,
) -> Verdict:
    """Hard or soft for one recipient, from its Status, Diagnostic-Code and prose.

    `stage`: the SMTP command the refusal answered, when the report shows it
    (see `stage_of`). Only failure codes (class 4 and 5) count as evidence.
    """
    evidence = " ".join(filter(None, (diagnostic, text)))
    codes = [c for c in codes_in(diagnostic) + codes_in(text) + codes_in(status) if c[0] != 2]
    code = most_specific(codes)
    code_text = ".".join(map(str, code)) if code else ""
    subject = (code[1], code[2]) if code else (0, 0)
    if delayed:  # still being retried: never hard, but say why when the report does
        reason = _NOT_ADDRESS.get(subject) or _reason_in_words(evidence) or Reason.EXPIRED
        return Verdict("soft", reason, code_text)
    if stage == Stage.GREETING:
        return Verdict("soft", _reason_in_words(evidence) or Reason.BLOCKED, code_text)
    if _US_WORDS.search(evidence) or _EXISTS_WORDS.search(evidence):
        return Verdict("soft", _reason_in_words(evidence) or Reason.BLOCKED, code_text)
    if subject in ADDRESS_CODES:
        return Verdict("hard", Reason.ADDRESS, code_text)
    if subject in _NOT_ADDRESS:
        return Verdict("soft", _NOT_ADDRESS[subject], code_text)
    if _words_say_address(subject, evidence, stage, code is not None):
        return Verdict("hard", Reason.ADDRESS, code_text)
    if stage == Stage.DATA and _WEAK_ADDRESS_WORDS.search(evidence):
        return Verdict("soft", Reason.FILTERED, code_text)
    said = _reason_in_words(evidence)
    if said is not None:
        return Verdict("soft", said, code_text)
    if subject in _BY_CODE:
        return Verdict("soft", _BY_CODE[subject], code_text)
    return Verdict("soft", _BY_CODE.get((subject[0], 0), Reason.OTHER), code_text)


def _words_say_address(
    subject: tuple[int, int], evidence: str, stage: Stage, has_code: bool
) -> bool:
    """Words that the address is gone, where the code leaves room for them.

    Unambiguous words ("user unknown") count with any code that is not
    plainly about something else (those were settled before), whichever
    command they answered: servers refuse unknown users after DATA too, and
    send them as 5.2.1 or 5.7.1. The weak "mailbox unavailable" counts only
    when it answered RCPT, or with a generic enhanced code and no sign of DATA.
    """
    if _temporary_words(evidence):
        return False
    if _ADDRESS_WORDS.search(evidence):
        return True
    if not _WEAK_ADDRESS_WORDS.search(evidence):
        return False
    if stage == Stage.RCPT:
        return subject in _GENERIC or subject[0] == 1
    return stage == Stage.UNKNOWN and has_code and subject in _GENERIC


# Which command a refusal answered, in the words MTAs use for it: Postfix "(in
# reply to RCPT TO command)", Exim "after RCPT TO:", qmail "does not like
# recipient", DragonFly "did not like our RCPT TO", Sendmail ">>> RCPT To:".
_STAGES = [
    (
        Stage.GREETING,
        _words(
            r"(?:in reply to|after|did not like our) (?:MAIL FROM|HELO|EHLO)",
            r">>> (?:MAIL From|HELO|EHLO)", r"refused to talk to me", r"my name was rejected",
            r"does not like sender",
        ),
    ),
    (
        Stage.DATA,
        _words(r"(?:in reply to|after) (?:the )?(?:end of )?data\b", r">>> DATA", r"\. <<<"),
    ),
    (
        Stage.RCPT,
        _words(
            r"(?:in reply to|after|did not like our) RCPT", r"does not like recipient",
            r">>> RCPT To", r"SMTP:RCPT", r"\[RCPT_TO\]", r"after RCPT command",
        ),
    ),
]  # fmt: skip


def stage_of(text: str) -> Stage:
    """The SMTP command a refusal answered, by the transcript words in `text`."""
    for stage, words in _STAGES:
        if words.search(text or ""):
            return stage
    return Stage.UNKNOWN


def _reason_in_words(evidence: str) -> Reason | None:
    for reason, words in _REASON_WORDS:
        if words.search(evidence):
            return reason
    return None


def _temporary_words(evidence: str) -> bool:
    """A lookup that failed for now ("user unknown, try again later") is no proof.

    Postfix words a DNS lookup that failed for now "Host not found, try again".
    """
    return bool(
        re.search(
            r"temporar\w* (?:lookup )?fail|try again later|not found, try again", evidence, re.I
        )
    )


def reply_class(text: str) -> str:
    """'4' or '5' from an SMTP reply code in `text`, '' when there is none."""
    match = _REPLY.search(text or "")
    return match.group(1) if match else ""
