"""Rebuild the bounce corpus in this folder from public test suites (see README.md).

Not part of the test run: it needs local checkouts of the sources and a JSON
dump of Sisimai 5's verdicts, made with the Perl one-liner in README.md.

    python tests/bounces/samples/build_corpus.py SET_OF_EMAILS P5_SISIMAI FLUFL CFORTUNE DUMP

Selection: a set-of-emails sample is kept where Sisimai 5's verdict agrees
with its own curated test expectations (t/*.t of p5-sisimai); flufl.bounce
and PHP-Bounce-Handler samples where Sisimai has a verdict at all ("onhold"
and "undefined" are left out). Labels: hard or soft by the labelling policy
in README.md (`is_hard`), applied to every sample alike; the soft reason is
Sisimai's, in our words. Hand-written rows (synthetic/) are kept as they are.
Addresses are anonymised: every local part except role names (postmaster,
MAILER-DAEMON...) becomes a stable synthetic one; domains stay.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).parent
ROLE_NAMES = {
    "mailer-daemon", "postmaster", "root", "abuse", "noreply", "no-reply", "nobody",
    "daemon", "bounce", "bounces", "mail", "mailer", "double-bounce", "complaints",
}  # fmt: skip
ADDRESS = re.compile(rb"([A-Za-z0-9][A-Za-z0-9._%+=-]*)@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
EXPECTATION = re.compile(r"'(\d+)'\s*=>\s*\[(.*?)\]\],", re.S)
ROW = re.compile(r"\['([^']*)',\s*'([^']*)',\s*'([^']*)',\s*(\d)")
UNCLEAR = {"onhold", "undefined"}
# Sisimai's reasons, in our words (README.md, "Bounce handling").
REASONS = {
    "mailboxfull": "mailbox_full", "exceedlimit": "too_large", "mesgtoobig": "too_large",
    "blocked": "blocked", "rejected": "blocked", "norelaying": "blocked",
    "policyviolation": "blocked", "badreputation": "blocked", "authfailure": "blocked",
    "requireptr": "blocked", "securityerror": "blocked", "spamdetected": "spam",
    "virusdetected": "content", "contenterror": "content", "notcompliantrfc": "content",
    "filtered": "filtered", "expired": "expired", "toomanyconn": "rate_limited",
    "speeding": "rate_limited", "ratelimited": "rate_limited", "suspend": "suspended",
    "systemfull": "system", "systemerror": "system", "networkerror": "system",
    "mailererror": "system", "syntaxerror": "system", "notaccept": "system",
}  # fmt: skip


def anonymise(raw: bytes) -> bytes:
    def swap(match: re.Match) -> bytes:
        local, domain = match.group(1), match.group(2)
        if local.lower().decode() in ROLE_NAMES:
            return match.group(0)
        return b"p" + hashlib.sha256(local.lower()).hexdigest()[:8].encode() + b"@" + domain

    return ADDRESS.sub(swap, raw)


def anonymous_address(address: str) -> str:
    return anonymise(address.encode()).decode() if address else ""


def classify(fact: dict) -> tuple[str, str]:
    """(class, reason) for one of Sisimai's facts, by the labelling policy in README.md."""
    reason = fact["reason"]
    if reason == "feedback":
        return "complaint", fact.get("ftype") or "abuse"
    if reason == "vacation":
        return "auto_reply", ""
    if reason == "delivered":
        return "not_bounce", ""
    if is_hard(fact):
        return "hard", "address"
    return "soft", REASONS.get(reason, "other")


# The labelling policy (README.md, "Labelling policy"): issue 13's definition of
# hard, applied to what Sisimai read out of each message. Deliberately short and
# literal: it labels, it is not the classifier.
POLICY_ADDRESS_CODES = {(1, 1), (1, 2), (1, 3), (1, 6), (1, 10)}
# Full, too big, expired; X.1.7 and X.1.8 are the *sender's* address.
POLICY_NOT_ADDRESS_CODES = {(2, 2), (2, 3), (3, 4), (4, 7), (1, 7), (1, 8)}
POLICY_ADDRESS_REASONS = {"userunknown", "hostunknown", "hasmoved", "notaccept"}
POLICY_ADDRESS_WORDS = re.compile(
    r"user unknown|unknown user|unknown recipient|recipient unknown|user not known"
    r"|no such (?:user|mailbox|recipient|domain)|(?:does not|doesn't|did not) exist|user not exist"
    r"|(?:user|recipient|address|mailbox) (?:was )?not found|address couldn't be found"
    r"|doesn't have an? \S+ account|invalid recipient|not listed in|invalid final delivery"
    r"|unknown host|host unknown|host or domain name not found|invalid domain"
    r"|unrouteable address|couldn't find a mail exchanger|no mx (?:record )?found"
    r"|indicated no smtp service|doesn't receive email|recipient address rejected: access denied"
    r"|inexistente|unbekannt|inconnu|desconocido",
    re.I,
)
# Words that the refusal is about us (our reputation, our rate) or that the
# mailbox exists (it is full): these outweigh a code, the mailbox is not gone.
POLICY_US_WORDS = re.compile(
    r"spam|black ?list|block ?list|reputation|too many (?:recipients|messages|connections)", re.I
)
POLICY_EXISTS_WORDS = re.compile(
    r"over ?quota|quota exceeded|mailbox (?:is )?full|disk space", re.I
)
CODE = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")


def is_hard(fact: dict) -> bool:
    """Hard when the evidence is about the address (issue 13), whatever Sisimai's reason.

    The code is the most specific real RFC 3463 code in the diagnostic, else
    the delivery status; Sisimai's own pseudo codes (X.Y.9xx, made up when a
    message has none) count as no code.
    """
    diagnostic = fact.get("diag") or ""
    codes = [tuple(map(int, c)) for c in CODE.findall(diagnostic)]
    codes += [tuple(map(int, c)) for c in CODE.findall(fact.get("status") or "")]
    codes = [c for c in codes if c[2] < 900]
    code = max(codes, key=lambda c: (c[1] != 0) * 2 + (c[2] != 0)) if codes else None
    subject = (code[1], code[2]) if code else (0, 0)
    if (fact.get("command") or "").upper() in ("HELO", "EHLO", "MAIL"):
        return False  # a reply to the greeting or MAIL FROM is about us (RFC 5321)
    if POLICY_US_WORDS.search(diagnostic) or POLICY_EXISTS_WORDS.search(diagnostic):
        return False
    if subject in POLICY_ADDRESS_CODES:
        return True
    if subject in POLICY_NOT_ADDRESS_CODES:
        return False
    if POLICY_ADDRESS_WORDS.search(diagnostic):
        return True
    return fact["reason"] in POLICY_ADDRESS_REASONS and subject[1] == 0


def sisimai_expectations(p5: Path) -> dict[str, list[tuple[str, str, int]]]:
    """sample stem -> [(status, reason, hard)], from p5-sisimai's curated tests."""
    found = {}
    for test in sorted((p5 / "t").glob("*.t")):
        text = test.read_text()
        engine = re.search(r"\$enginename\s*=\s*'([^']+)'", text)
        if not engine or "$isexpected" not in text:
            continue
        name = engine[1].lower()
        prefix = "" if name in ("arf", "rfc3464", "rfc3834") else test.stem.split("-")[1] + "-"
        for index, rows in EXPECTATION.findall(text + ","):
            stem = f"{prefix}{name}-{int(index):02d}"
            found[stem] = [(s, r, int(h)) for s, _reply, r, h in ROW.findall(rows)]
    return found


def main(set_of_emails: Path, p5: Path, flufl: Path, cfortune: Path, dump: Path) -> None:
    verdicts = json.loads(dump.read_text())
    expected = sisimai_expectations(p5)
    rows = []
    sources = [
        ("sisimai", sorted((set_of_emails / "maildir/bsd").glob("*.eml"))),
        ("sisimai", sorted((set_of_emails / "maildir/not").glob("*.eml"))),
        ("flufl", sorted((flufl / "flufl/bounce/tests/data").glob("*.txt"))),
        ("cfortune", sorted((cfortune / "eml").glob("*"))),
    ]
    for source, paths in sources:
        for path in paths:
            facts = next((v for k, v in verdicts.items() if Path(k).name == path.name
                          and source_of(k) == source), None)  # fmt: skip
            labelled = label(source, path, facts, expected)
            if labelled is None:
                continue
            target = HERE / source / (path.stem + ".eml")
            target.parent.mkdir(exist_ok=True)
            target.write_bytes(anonymise(path.read_bytes()))
            for klass, reason, address, status in labelled:
                rows.append([f"{source}/{target.name}", klass, reason, address, status])
    with open(HERE / "manifest.csv", newline="") as source:
        kept = [row for row in csv.reader(source) if row[0].startswith("synthetic/")]
    with open(HERE / "manifest.csv", "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["file", "class", "reason", "address", "status"])
        writer.writerows(rows + kept)


def source_of(key: str) -> str:
    return "flufl" if "/flufl/" in key else "cfortune" if key.startswith("cf/") else "sisimai"


def label(source, path, facts, expected):
    if path.parent.name == "not":
        return [("not_bounce", "", "", "")] if not facts else None
    if source == "sisimai":
        if path.stem.startswith("rfc3834"):
            return [("auto_reply", "", "", "")] if path.stem in expected else None
        wanted = expected.get(path.stem)
        if not wanted or not facts or len(facts) != len(wanted):
            return None
        if any(f["reason"] != w[1] for f, w in zip(facts, wanted, strict=True)):
            return None
    elif not facts or any(f["reason"] in UNCLEAR for f in facts):
        return None
    out = []
    for fact in facts:
        klass, reason = classify(fact)
        address = anonymous_address(fact["recipient"]) if klass != "not_bounce" else ""
        out.append((klass, reason, address, fact.get("status") or ""))
    return out


if __name__ == "__main__":
    main(*map(Path, sys.argv[1:6]))
