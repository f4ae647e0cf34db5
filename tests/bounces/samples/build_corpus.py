"""Rebuild the bounce corpus in this folder from public test suites (see README.md).

Not part of the test run: it needs local checkouts of the sources and a JSON
dump of Sisimai 5's verdicts, made with the Perl one-liner in README.md.

    python tests/bounces/samples/build_corpus.py SET_OF_EMAILS P5_SISIMAI FLUFL CFORTUNE DUMP

Labels: Sisimai's own curated test expectations (t/*.t of p5-sisimai) for
set-of-emails; Sisimai's verdict for the flufl.bounce and PHP-Bounce-Handler
samples (ambiguous verdicts, "onhold" and "undefined", are left out).
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
    reason = fact["reason"]
    if reason == "feedback":
        return "complaint", fact.get("ftype") or "abuse"
    if reason == "vacation":
        return "auto_reply", ""
    if reason == "delivered":
        return "not_bounce", ""
    return ("hard", "address") if fact["hard"] else ("soft", REASONS.get(reason, "other"))


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
    with open(HERE / "manifest.csv", "a", newline="") as out:
        csv.writer(out).writerows(rows)


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
