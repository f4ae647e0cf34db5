"""Signing copies of one issue: the body parts every copy shares are canonicalised once.

Every signature here is compared byte for byte with a reference signer built
from dkimpy's own parsing, canonicalisation and header hashing (the signer
as it was before it shared any work between copies), and checked with
`dkim.verify`; RSA PKCS#1 v1.5 is deterministic, so equal inputs give equal
signatures.
"""

from __future__ import annotations

import base64
import hashlib

import dkim
import pytest
from dkim.canonicalization import CanonicalizationPolicy
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from service import PROJECT_ROOT
from service.deliverability.dkim import (
    DkimSigner,
    PersonalCopy,
    SharedBody,
    headers_to_sign,
)
from service.extensions import db
from service.issues import sending
from service.issues.rendering import Recipient, skeleton_for
from service.models import MailingList
from tests.deliverability.keys import DOMAIN, SELECTOR, dkim_settings, offline_dns, session_key
from tests.meetings.test_meetings import make_invitation, winter_thursday_10th

NOW = 1_796_000_000


@pytest.fixture
def app_config(app_config):
    """The suite's configuration, with DKIM on."""
    app_config.update(dkim_settings())
    return app_config


SIGNATURE = b"DKIM-Signature"


def reference_signature(message: bytes, domain: str = DOMAIN, selector: str = SELECTOR) -> bytes:
    """The DKIM-Signature field for `message` at NOW, from dkimpy's parts only: its
    `rfc822_parse`, relaxed canonicalisation, `hash_headers` and `fold`, laid out as
    `DkimSigner` lays it out (dkimpy's `gen_header` adds i= and q=, which ours omits)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    from service.deliverability.dkim import ascii_domain

    headers, body = dkim.rfc822_parse(message)
    policy = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
    canonical = policy.canonicalize_headers(headers)
    include = headers_to_sign(name for name, _ in canonical)
    fields = [
        (b"v", b"1"),
        (b"a", b"rsa-sha256"),
        (b"c", b"relaxed/relaxed"),
        (b"d", ascii_domain(domain).encode()),
        (b"s", selector.encode()),
        (b"t", str(NOW).encode()),
        (b"h", b" : ".join(include)),
        (b"bh", base64.b64encode(hashlib.sha256(policy.canonicalize_body(body)).digest())),
        (b"b", b"0" * 60),
    ]
    unsigned = dkim.fold(b"; ".join(b"=".join(f) for f in fields), namelen=len(SIGNATURE))
    unsigned = dkim.RE_BTAG.sub(b"\\1", unsigned)
    hasher = hashlib.sha256()
    dkim.hash_headers(hasher, policy, canonical, include, (SIGNATURE, b" " + unsigned), None)
    signed = session_key().sign(hasher.digest(), padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    fields[-1] = (b"b", base64.b64encode(signed))
    value = b"; ".join(b"=".join(f) for f in fields) + b"\r\n"
    return SIGNATURE + b": " + dkim.fold(value, namelen=len(SIGNATURE))


def signer(domain: str = DOMAIN, selector: str = SELECTOR) -> DkimSigner:
    return DkimSigner(domain, selector, private_key=session_key())


def body_start(message: bytes) -> int:
    return message.find(b"\r\n\r\n") + 4


def shared_work_used(copy: PersonalCopy) -> bool:
    """Whether the signer takes the copy's body hash from its shared parts (it falls back
    to canonicalising the whole body when the copy is not what its parts say)."""
    assert copy.shared_body is not None
    return copy.shared_body.relaxed_hash(copy, body_start(copy), copy.pieces) is not None


# --- generated bodies --------------------------------------------------------------

_TEXT = [
    b"a", b"Dobr\xc3\xbd den", b" ", b"  ", b"\t", b" \t ", b"\r\n", b"\r\n\r\n", b"=\r\n",
    b"=3D", b"x" * 120, b"\n", b"\r", b".", b"--hranice--",
]  # fmt: skip
_text = st.lists(st.sampled_from(_TEXT), max_size=8).map(b"".join)
_HEADERS = [
    b"Cc: b@example.cz\r\n",
    b"Reply-To: =?utf-8?q?Jana_Nov=C3=A1kov=C3=A1?= <jana@example.cz>\r\n",
    b"Subject: Zpravodaj\r\n \t12/2026  \r\n",
    'To: "Jiří Novák" <jiří@example.cz>\r\n'.encode(),
    b"List-Unsubscribe: <https://zpravodaj.example/u/abc>\r\n",
    b"X-Mailer: zpravodaj\r\n",
]
# Domains whose d= tag folds differently: a short one, and a 63-letter label that
# makes dkimpy's fold break a tag in the middle.
_DOMAINS = [DOMAIN, "a.cz", "x" * 63 + ".socialnibydleni.example", "sociálníbydlení.cz"]


@st.composite
def copies_of_one_body(draw):
    """(header block, shared parts, pieces of two or three copies): personal pieces
    anywhere, at the start or end of the body too, next to each other or not."""
    head = b"From: a@socialnibydleni.example\r\n" + b"".join(
        draw(st.lists(st.sampled_from(_HEADERS), max_size=4))
    )
    layout = draw(st.lists(st.booleans(), max_size=8))  # True: a personal piece
    parts = [draw(_text)]
    for personal in layout:
        if personal:
            parts.append(b"")
        parts[-1] += draw(_text)
    count = len(parts) - 1
    copies = draw(st.lists(st.lists(_text, min_size=count, max_size=count), min_size=2, max_size=3))
    return head, parts, copies


def assemble(parts: list[bytes], pieces: list[bytes]) -> bytes:
    body = [parts[0]]
    for piece, part in zip(pieces, parts[1:], strict=True):
        body += (piece, part)
    return b"".join(body)


def has_bare_lf(data: bytes) -> bool:
    return b"\n" in data.replace(b"\r\n", b"")


@settings(max_examples=400, deadline=None, derandomize=True)
@given(copies_of_one_body(), st.sampled_from(_DOMAINS))
def test_copies_are_signed_as_the_reference_signs_them(generated, domain):
    head, parts, copies = generated
    shared = SharedBody(parts)
    ours = signer(domain)
    for pieces in copies:
        message = head + b"\r\n" + assemble(parts, pieces)
        copy = PersonalCopy.of(message, shared, pieces)
        signature = ours.signature(copy, now=NOW)
        assert signature == reference_signature(message, domain)
        assert signature == ours.signature(message, now=NOW)  # the whole-body path
        # Cut just after a CRLF or not, the pieces are hashed from the shared parts
        # unless an LF without its CR makes dkimpy rewrite the body.
        pieces_bare = any(p.startswith(b"\n") for p in [*parts, *pieces])
        if not has_bare_lf(message) and not pieces_bare:
            assert shared_work_used(copy)
        if domain == DOMAIN:
            assert dkim.verify(signature + message, dnsfunc=offline_dns())


@settings(max_examples=300, deadline=None, derandomize=True)
@given(copies_of_one_body())
def test_the_shared_body_hash_is_dkimpys(generated):
    head, parts, copies = generated
    shared = SharedBody(parts)
    for pieces in copies:
        message = head + b"\r\n" + assemble(parts, pieces)
        digest = shared.relaxed_hash(message, len(head) + 2, tuple(pieces))
        if digest is not None:
            body = dkim.rfc822_parse(message)[1]
            canonical = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
            assert digest == hashlib.sha256(canonical.canonicalize_body(body)).digest()


def test_a_copy_whose_parts_do_not_match_its_bytes_is_signed_from_its_bytes():
    head = b"From: a@socialnibydleni.example\r\nTo: b@example.cz\r\n\r\n"
    shared = SharedBody([b"Dobr\xc3\xbd den,\r\nodkaz: ", b"\r\nkonec\r\n"])
    for message, pieces in [
        (head + b"Dobr\xc3\xbd den,\r\nodkaz: https://b\r\nkonec\r\n", [b"https://a"]),
        (head + b"Dobr\xc3\xbd den,\r\nodkaz: https://a\r\nkonec\r\n\r\n", [b"https://a"]),
        (head + b"Dobr\xc3\xbd den,\r\nodkaz: https://a\r\nkonec\r\n", [b"https://a", b""]),
        (head + b"Jin\xc3\xbd text\r\n", [b"https://a"]),
    ]:
        copy = PersonalCopy.of(message, shared, pieces)
        assert not shared_work_used(copy)
        assert signer().signature(copy, now=NOW) == reference_signature(message)


def test_a_body_with_a_bare_lf_is_signed_as_dkimpy_reads_it():
    """dkimpy (and a receiving MTA) read a bare LF as a line break; the signer hashed the
    LF as it stood, so the signature did not verify."""
    message = b"From: a@socialnibydleni.example\r\nSubject: x\r\n\r\nradek\nradek\r\n"
    signature = signer().signature(message, now=NOW)
    assert signature == reference_signature(message)
    assert dkim.verify(signature + message, dnsfunc=offline_dns())


# --- real copies of real issues ----------------------------------------------------

RECIPIENTS = [
    Recipient("ctenar1@example.cz", "Čtenář Žluťoučký", "klic1"),
    Recipient("ctenar2@example.cz", "", "klic2"),
    Recipient("jiří.novák@seznam.cz", "Jiří  Novák ", "klic3"),  # SMTPUTF8
    Recipient("dlouhy@example.cz", "Předlouhé jméno " * 8, "klic4"),
    Recipient("ukazka@example.org"),  # a preview's sample links
]


def newsletter():
    mailing_list = db.session.scalar(select(MailingList).filter_by(slug="zpravodaj"))
    body = (PROJECT_ROOT / "bench" / "sample_issue.md").read_text(encoding="utf-8")
    fields, errors = sending.validate_fields("Zpravodaj sociálního bydlení 12/2026", body, "")
    assert not errors
    return sending.create_issue(mailing_list, fields, None)


def invitation():
    return make_invitation(winter_thursday_10th().replace(hour=9, minute=30))


def newsletter_with_trailing_space():
    """Lines ending in spaces or tabs, double spaces, empty lines at the end."""
    mailing_list = db.session.scalar(select(MailingList).filter_by(slug="zpravodaj"))
    body = "Řádek s mezerou   \n\tod tabulátoru\t\n\nDva  mezery  uvnitř\n\n\n\n"
    fields, errors = sending.validate_fields("Zkouška", body, "")
    assert not errors
    return sending.create_issue(mailing_list, fields, None)


@pytest.mark.parametrize("make_issue", [newsletter, invitation, newsletter_with_trailing_space])
def test_every_copy_of_an_issue_is_signed_as_the_reference_and_verifies(app, make_issue):
    skeleton = skeleton_for(make_issue())
    ours = signer()
    for n, recipient in enumerate(RECIPIENTS):
        copy = skeleton.personalise(recipient, skeleton.new_message_id(n))
        assert isinstance(copy, PersonalCopy)
        assert copy.pieces, "the copy has personal lines in its body"
        assert shared_work_used(copy)
        signature = ours.signature(copy, now=NOW)
        assert signature == reference_signature(bytes(copy))
        assert dkim.verify(signature + copy, dnsfunc=offline_dns())
        assert dkim.verify(ours(copy), dnsfunc=offline_dns())


def test_an_invitation_copy_has_its_calendar_lines_among_its_own(app):
    """The ATTENDEE line and the RSVP link are per copy: hashed per copy, not shared."""
    skeleton = skeleton_for(invitation())
    copy = skeleton.personalise(RECIPIENTS[0], skeleton.new_message_id(1))
    assert b"text/calendar" in copy
    assert any(b"ATTENDEE" in piece for piece in copy.pieces)
    assert shared_work_used(copy)
    assert signer().signature(copy, now=NOW) == reference_signature(bytes(copy))


def test_the_delivery_engine_signs_its_copies_from_the_shared_body(app, outbox, monkeypatch):
    """Through the real path (fan-out, batch job, SMTP transport with the signer), each
    copy's body hash comes from its issue's shared parts, and each copy verifies."""
    from tests.conftest import add_confirmed_subscribers, run_jobs
    from tests.workers.test_delivery import make_issue, send

    hashed = []
    relaxed_hash = SharedBody.relaxed_hash

    def counted(self, message, start, pieces):
        digest = relaxed_hash(self, message, start, pieces)
        hashed.append(digest is not None)
        return digest

    monkeypatch.setattr(SharedBody, "relaxed_hash", counted)
    add_confirmed_subscribers("zpravodaj", 3)
    send(make_issue())
    run_jobs(app)
    assert len(outbox.mails) == 3
    assert hashed == [True, True, True]
    for mail in outbox.mails:
        assert dkim.verify(mail.data, dnsfunc=offline_dns())
