"""The general rules of `classify.judge`, one by one (the corpus test measures them whole)."""

from __future__ import annotations

import pytest

from service.bounces.classify import Reason, Stage, judge, stage_of


@pytest.mark.parametrize(
    "status, diagnostic, stage, kind, reason",
    [
        # The specific code in the diagnostic beats the generic status.
        ("5.0.0", "552 5.2.2 <x@example.cz>... Mailbox full", Stage.UNKNOWN, "soft",
         "mailbox_full"),
        # Unambiguous words with a code that is not about something else: hard,
        # after DATA too (Japanese carriers refuse unknown users there).
        ("5.0.0", "550 Unknown user x@example.jp", Stage.DATA, "hard", "address"),
        ("5.7.1", "554 5.7.1 <x@example.ch>: Recipient address rejected: User unknown",
         Stage.RCPT, "hard", "address"),
        ("4.1.1", "450 4.1.1 <x@example.cz>: user unknown", Stage.UNKNOWN, "hard", "address"),
        # Words about us, or that the mailbox exists, outweigh an address code.
        ("5.1.1", "552 sorry, mailbox x@example.org is over quota", Stage.UNKNOWN, "soft",
         "mailbox_full"),
        ("5.1.3", "553 http://www.spamhaus.org/query/bl?ip=192.0.2.1", Stage.RCPT, "soft",
         "blocked"),
        # A refusal of MAIL FROM or of our greeting is about us.
        ("5.1.0", "553 5.1.0 neko.example.com does not exist", Stage.GREETING, "soft", "blocked"),
        # RFC 5321's stock words: at RCPT about the address, after DATA a filter.
        ("", "550 Requested action not taken: mailbox unavailable", Stage.RCPT, "hard",
         "address"),
        ("", "550 Requested action not taken: mailbox unavailable", Stage.DATA, "soft",
         "filtered"),
        ("", "550 Requested action not taken: mailbox unavailable", Stage.UNKNOWN, "soft",
         "other"),
        # The sender's address (X.1.8) is not the recipient's.
        ("5.1.8", "553 5.1.8 Domain of sender address does not exist", Stage.UNKNOWN, "soft",
         "blocked"),
        # A DNS lookup that failed for now.
        ("", "Host not found, try again", Stage.UNKNOWN, "soft", "other"),
    ],
)  # fmt: skip
def test_judge(status, diagnostic, stage, kind, reason):
    verdict = judge(status, diagnostic, stage=stage)
    assert (verdict.kind, verdict.reason) == (kind, Reason(reason))


def test_a_delayed_report_is_soft_and_says_why():
    verdict = judge("4.2.2", "452 4.2.2 Mailbox full", delayed=True)
    assert (verdict.kind, verdict.reason) == ("soft", Reason.MAILBOX_FULL)
    assert judge("4.4.1", "", delayed=True).reason == Reason.EXPIRED


@pytest.mark.parametrize(
    "text, stage",
    [
        ("host mx[192.0.2.1] said: 550 x (in reply to RCPT TO command)", Stage.RCPT),
        ("SMTP error from remote mail server after RCPT TO:<x@example.cz>:", Stage.RCPT),
        ("192.0.2.1 does not like recipient.", Stage.RCPT),
        ("said: 550 User unknown (in reply to end of DATA command)", Stage.DATA),
        ("SMTP error from remote mail server after MAIL FROM:<we@example.cz>", Stage.GREETING),
        ("550 5.1.1 User unknown", Stage.UNKNOWN),
    ],
)
def test_the_stage_is_read_from_transcript_words(text, stage):
    assert stage_of(text) == stage
