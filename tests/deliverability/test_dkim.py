"""DKIM signing of real mails: what the SMTP sink receives verifies with dkimpy's own verifier.

The mails go the whole way (web side, OutgoingMail row or the delivery engine,
a real RQ worker, the SMTP transport, the aiosmtpd sink); the DNS is an
offline function that knows the test key's record.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from email import message_from_bytes, policy

import dkim
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from service import PROJECT_ROOT
from service.config import SETTINGS, ConfigError, check_required
from service.deliverability.cli import dkim_group
from service.deliverability.dkim import (
    DkimError,
    DkimSigner,
    generate_private_key,
    parse_record,
    public_key_b64,
)
from service.extensions import db
from service.models import OutgoingMail
from tests.conftest import add_confirmed_subscribers, make_config, run_jobs
from tests.deliverability.keys import (
    DOMAIN,
    SELECTOR,
    dkim_settings,
    offline_dns,
    session_key,
)
from tests.workers.test_delivery import make_issue, send


@pytest.fixture
def app_config(app_config):
    """The suite's configuration, with DKIM on (validated by create_app's check_required)."""
    app_config.update(dkim_settings())
    return app_config


def signature_tags(raw: bytes) -> dict[str, str]:
    msg = message_from_bytes(raw, policy=policy.compat32)
    return parse_record(str(msg["DKIM-Signature"]))


def signed_headers(raw: bytes) -> list[str]:
    return [name.strip() for name in signature_tags(raw)["h"].split(":")]


def test_confirmation_mail_is_signed_and_verifies(client, app, outbox):
    assert client.post("/subscribe", json={"email": "jana@seznam.cz"}).status_code == 202
    run_jobs(app)
    [mail] = outbox.mails
    assert mail.data.startswith(b"DKIM-Signature: ")
    assert dkim.verify(mail.data, dnsfunc=offline_dns())
    tags = signature_tags(mail.data)
    assert (tags["a"], tags["c"], tags["d"], tags["s"]) == (
        "rsa-sha256",
        "relaxed/relaxed",
        DOMAIN,
        SELECTOR,
    )
    assert {"from", "to", "subject", "date", "message-id", "mime-version", "content-type"} <= set(
        signed_headers(mail.data)
    )
    # The row keeps the mail as composed; the signature is added on the way out.
    assert not db.session.scalar(select(OutgoingMail)).raw.startswith(b"DKIM-Signature")


def test_every_kind_of_mail_is_signed_and_verifies(redis_url, smtp_sink, tmp_path):
    """All fifteen kinds, each produced through its real path (the SpamAssassin
    test's producer), leave signed; dkim.verify accepts every one."""
    from tests.deliverability.test_spamassassin import KINDS, mails_of_every_kind

    config = make_config(
        f"sqlite:///{tmp_path / 'mails.sqlite3'}",
        redis_url,
        smtp_sink.url,
        MAIL_FROM=f"Zpravodaj sociálního bydlení <zpravodaj@{DOMAIN}>",
        BASE_URL=f"https://zpravodaj.{DOMAIN}",
        **dkim_settings(),
    )
    mails = mails_of_every_kind(config, smtp_sink)
    assert set(mails) == set(KINDS)
    unsigned = [kind for kind in KINDS if not mails[kind].data.startswith(b"DKIM-Signature:")]
    assert unsigned == []
    failing = [kind for kind in KINDS if not dkim.verify(mails[kind].data, dnsfunc=offline_dns())]
    assert failing == []


def test_issue_mails_are_signed_with_both_unsubscribe_headers(app, outbox):
    add_confirmed_subscribers("zpravodaj", 3)
    send(make_issue())
    run_jobs(app)
    assert len(outbox.mails) == 3
    for mail in outbox.mails:
        assert dkim.verify(mail.data, dnsfunc=offline_dns()), mail.rcpt_tos
        headers = signed_headers(mail.data)
        assert "list-unsubscribe" in headers
        assert "list-unsubscribe-post" in headers
        assert {"from", "to", "subject", "date", "message-id", "list-id"} <= set(headers)
        # Oversigned: a second List-Unsubscribe(-Post) cannot be slipped in.
        assert headers.count("list-unsubscribe") == 2
        assert headers.count("list-unsubscribe-post") == 2


def test_tampering_breaks_the_signature(app, outbox):
    add_confirmed_subscribers("zpravodaj", 1)
    send(make_issue(subject="Zpravodaj 12/2026"))
    run_jobs(app)
    [mail] = outbox.mails
    dns = offline_dns()
    assert dkim.verify(mail.data, dnsfunc=dns)
    subject = mail.data.replace(b"Subject: Zpravodaj 12/2026", b"Subject: Zpravodaj 13/2026")
    assert subject != mail.data
    assert not dkim.verify(subject, dnsfunc=dns)
    target = re.sub(rb"/unsubscribe/[^>]+>", b"/unsubscribe/someone-else>", mail.data, count=1)
    assert target != mail.data
    assert not dkim.verify(target, dnsfunc=dns)
    head, body = mail.data.split(b"\r\n\r\n", 1)
    added = head + b"\r\nList-Unsubscribe: <https://evil.example/u>\r\n\r\n" + body
    assert not dkim.verify(added, dnsfunc=dns)
    assert not dkim.verify(head + b"\r\n\r\n" + body.replace(b"Dobr", b"Zl", 1), dnsfunc=dns)
    # A different key published under the selector: nothing verifies.
    assert not dkim.verify(mail.data, dnsfunc=offline_dns(generate_private_key()))


def test_smtputf8_mail_is_signed_and_verifies(client, app, outbox):
    app.config["SMTPUTF8"] = "on"  # the sink offers SMTPUTF8
    address = "jiří.novák@seznam.cz"
    assert client.post("/subscribe", json={"email": address}).status_code == 202
    run_jobs(app)
    [mail] = outbox.mails
    assert mail.rcpt_tos == [address]
    head = mail.data.split(b"\r\n\r\n", 1)[0]
    assert address.encode("utf-8") in head  # UTF-8 in the signed To header
    assert dkim.verify(mail.data, dnsfunc=offline_dns())
    assert "to" in signed_headers(mail.data)


def test_missing_key_holds_mail_back_instead_of_sending_it_unsigned(client, app, outbox, tmp_path):
    app.config["DKIM_PRIVATE_KEY_PATH"] = str(tmp_path / "gone.pem")
    assert client.post("/subscribe", json={"email": "jana@seznam.cz"}).status_code == 202
    run_jobs(app)
    assert outbox.mails == []
    db.session.expire_all()
    row = db.session.scalar(select(OutgoingMail))
    assert row.status == "queued"  # retried later, like an unreachable server
    assert "DKIM" in row.last_error


def test_signer_refuses_a_message_without_from():
    signer = DkimSigner(DOMAIN, SELECTOR, private_key=session_key())
    with pytest.raises(DkimError):
        signer(b"To: a@example.cz\r\nSubject: x\r\n\r\nbody\r\n")


def test_signature_agrees_with_dkimpys_own_signer():
    """Same body hash as dkimpy's `dkim.sign`, and both verify: the same canonical bytes."""
    from service.deliverability.dkim import private_key_pem

    message = (
        b"From: Zpravodaj <zpravodaj@socialnibydleni.example>\r\nTo: jana@seznam.cz\r\n"
        b"Subject: Test\r\nDate: Tue, 01 Dec 2026 10:00:00 +0100\r\nMessage-ID: <1@x>\r\n"
        b"\r\nText  \r\n\r\n\r\n"
    )
    ours = DkimSigner(DOMAIN, SELECTOR, private_key=session_key()).signature(message)
    theirs = dkim.sign(
        message,
        SELECTOR.encode(),
        DOMAIN.encode(),
        private_key_pem(session_key()),
        canonicalize=(b"relaxed", b"relaxed"),
    )
    assert signature_tags(ours + message)["bh"] == signature_tags(theirs + message)["bh"]
    assert dkim.verify(ours + message, dnsfunc=offline_dns())
    assert dkim.verify(theirs + message, dnsfunc=offline_dns())


# --- configuration ----------------------------------------------------------------


def config_with(**overrides) -> dict:
    config = {name: default for name, (_parse, default) in SETTINGS.items()}
    config.update(make_config("sqlite://", "redis://127.0.0.1:1/0", "smtp://127.0.0.1:25"))
    config.update(overrides)
    return config


def test_config_accepts_all_three_or_none():
    check_required(config_with())
    check_required(config_with(**dkim_settings()))


@pytest.mark.parametrize("left_out", ["DKIM_DOMAIN", "DKIM_SELECTOR", "DKIM_PRIVATE_KEY_PATH"])
def test_config_refuses_half_a_dkim_setup(left_out):
    settings = dkim_settings()
    settings[left_out] = ""
    with pytest.raises(ConfigError, match=f"DKIM is half configured: set {left_out} too"):
        check_required(config_with(**settings))


def test_config_refuses_a_missing_key_file(tmp_path):
    path = tmp_path / "missing.pem"
    with pytest.raises(ConfigError, match=r"cannot read DKIM key .*missing\.pem"):
        check_required(config_with(**dkim_settings(str(path))))


def test_config_refuses_a_file_that_is_no_key(tmp_path):
    path = tmp_path / "key.pem"
    path.write_text("v=DKIM1; k=rsa; p=MIIB…\n")  # the public record pasted by mistake
    with pytest.raises(ConfigError, match="not an unencrypted PEM private key"):
        check_required(config_with(**dkim_settings(str(path))))


def test_config_refuses_a_key_that_is_not_rsa(tmp_path):
    path = tmp_path / "ec.pem"
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    with pytest.raises(ConfigError, match="not an RSA key"):
        check_required(config_with(**dkim_settings(str(path))))


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DKIM_SELECTOR", "zp 2026", "DKIM_SELECTOR='zp 2026'"),
        ("DKIM_DOMAIN", "socialni bydleni.cz", "is not a valid domain name"),
    ],
)
def test_config_refuses_bad_names(name, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_required(config_with(**{**dkim_settings(), name: value}))


# --- zpravodaj dkim keygen ------------------------------------------------------------


def test_keygen_writes_a_private_key_and_prints_the_record(tmp_path):
    out = tmp_path / "keys" / "dkim.pem"
    result = CliRunner().invoke(
        dkim_group, ["keygen", "--selector", "zp1", "--domain", DOMAIN, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert os.stat(out).st_mode & 0o777 == 0o600
    assert out.read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----")

    [line] = [x for x in result.output.splitlines() if "IN TXT" in x]
    assert line.startswith(f'zp1._domainkey.{DOMAIN}. IN TXT "v=DKIM1; k=rsa; p=')
    strings = re.findall(r'"([^"]*)"', line)
    assert len(strings) == 2 and all(len(s) <= 255 for s in strings)
    assert f"DKIM_DOMAIN={DOMAIN}" in result.output
    assert "DKIM_SELECTOR=zp1" in result.output
    assert f"DKIM_PRIVATE_KEY_PATH={out}" in result.output

    # What was printed is what a receiver needs to verify what the key signs.
    from service.deliverability.dkim import load_private_key

    key = load_private_key(str(out))
    assert key.key_size == 2048
    assert parse_record(strings)["p"] == public_key_b64(key)
    message = b"From: a@socialnibydleni.example\r\nSubject: x\r\n\r\nbody\r\n"
    signed = DkimSigner(DOMAIN, "zp1", key_path=str(out))(message)
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: "".join(strings).encode())


def test_keygen_refuses_a_bad_selector_before_writing_anything(tmp_path):
    out = tmp_path / "dkim.pem"
    result = CliRunner().invoke(
        dkim_group, ["keygen", "--selector", "zp 1!", "--domain", DOMAIN, "--out", str(out)]
    )
    assert result.exit_code == 2
    assert "letters, digits and hyphens" in result.output
    assert not out.exists()


def test_keygen_never_overwrites_a_key(tmp_path):
    out = tmp_path / "dkim.pem"
    out.write_bytes(b"the key in DNS")
    result = CliRunner().invoke(dkim_group, ["keygen", "--domain", DOMAIN, "--out", str(out)])
    assert result.exit_code != 0
    assert "klíč nepřepíšu" in result.output
    assert out.read_bytes() == b"the key in DNS"


def test_keygen_runs_before_the_service_is_configured(tmp_path):
    """No SECRET_KEY, no Redis, a half-set DKIM: the app could not load, keygen still works."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "DKIM_DOMAIN": DOMAIN,
        "INSTANCE_PATH": str(tmp_path / "instance"),
    }
    done = subprocess.run(
        [sys.executable, "-c", "from service.cli import main; main()", "dkim", "keygen",
         "--selector", "zp9"],
        env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "instance" / "dkim-zp9.pem").exists()
    assert f"zp9._domainkey.{DOMAIN}. IN TXT" in done.stdout


# --- the fast canonicalisation equals dkimpy's ----------------------------------------

_PIECES = [b"a", "ž".encode(), b" ", b"  ", b"\t", b" \t", b"\r\n", b"\n", b"\r", b"\r\n\r\n"]


@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(_PIECES), max_size=40))
def test_split_and_relaxed_body_equal_dkimpys(pieces):
    from dkim.canonicalization import Relaxed

    from service.deliverability.dkim import relaxed_body, split_message

    message = b"From: a@socialnibydleni.example\r\nSubject:  x \r\n\r\n" + b"".join(pieces)
    headers, body = split_message(message)
    assert (headers, body) == dkim.rfc822_parse(message)
    assert relaxed_body(body) == Relaxed.canonicalize_body(body)


_HEADER_PIECES = [
    b"Subject:", b"subject :", b"To: a@b.cz", b"X-A:", b"\r\n", b"\r\n ", b"\r\n\t", b" ",
    b"  ", b"\t", b"x", "ž".encode(), b":", b"From ", b"\n",
]  # fmt: skip


@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(_HEADER_PIECES), max_size=30))
def test_canonical_headers_equal_dkimpys(pieces):
    """The signer's own header canonicalisation (cached per field, for an issue's
    copies) gives dkimpy's relaxed headers, or refuses what dkimpy refuses."""
    from dkim.canonicalization import Relaxed

    from service.deliverability.dkim import canonical_headers

    message = b"From: a@socialnibydleni.example\r\n" + b"".join(pieces) + b"\r\n\r\nbody\r\n"
    try:
        theirs = Relaxed.canonicalize_headers(dkim.rfc822_parse(message)[0])
    except dkim.MessageFormatError:
        theirs = None
    try:
        ours = canonical_headers(message)
    except dkim.MessageFormatError:
        assert theirs is None
        return
    if ours is not None:  # None: the signer lets dkimpy parse this one
        assert [tuple(field) for field in theirs] == ours


def test_copies_of_an_issue_are_signed_as_dkimpy_would_and_verify(app):
    """Two personalised copies of one issue (most header fields canonicalised once):
    each verifies with dkimpy's `dkim.verify`, and a copy whose personal To was
    changed after signing does not."""
    from service.issues import sending
    from service.issues.rendering import Recipient, skeleton_for
    from service.models import MailingList

    mailing_list = db.session.scalar(select(MailingList).filter_by(slug="zpravodaj"))
    fields, errors = sending.validate_fields("Zpravodaj 12/2026", "Text  vydání.\n\n- a", "")
    assert not errors
    skeleton = skeleton_for(sending.create_issue(mailing_list, fields, None))
    signer = DkimSigner(DOMAIN, SELECTOR, private_key=session_key())
    for n in range(3):
        recipient = Recipient(f"ctenar{n}@example.cz", f"Čtenář {n}", f"klic{n}")
        signed = signer(skeleton.personalise(recipient, skeleton.new_message_id(n)))
        assert dkim.verify(signed, dnsfunc=offline_dns())
    forged = signed.replace(b"ctenar2@example.cz", b"ctenar9@example.cz")
    assert not dkim.verify(forged, dnsfunc=offline_dns())


def test_a_worker_loads_the_key_once_for_the_work_horses_it_forks(tmp_path, caplog):
    """Parsing and checking a 2048-bit key costs about as much CPU as signing a few
    hundred messages: the worker does it at start, and each batch's work horse (a fork)
    finds it loaded. A key that cannot be used is only logged there: the sends report
    it and hold the mail back (test_missing_key_holds_mail_back_…)."""
    from service.deliverability import dkim as signing
    from service.deliverability.dkim import private_key_pem, signer_from_config
    from workers.cli import _warm_dkim

    key_path = tmp_path / "dkim.pem"
    key_path.write_bytes(private_key_pem(session_key()))
    config = {
        "DKIM_DOMAIN": DOMAIN,
        "DKIM_SELECTOR": SELECTOR,
        "DKIM_PRIVATE_KEY_PATH": str(key_path),
    }
    signing._load_key.cache_clear()
    _warm_dkim(config)
    assert signing._load_key.cache_info().misses == 1
    horse_signer = signer_from_config(config)  # what a batch's transport builds
    assert horse_signer is not None
    horse_signer.key()
    assert (signing._load_key.cache_info().misses, signing._load_key.cache_info().hits) == (1, 1)

    _warm_dkim({**config, "DKIM_PRIVATE_KEY_PATH": str(tmp_path / "missing.pem")})
    assert "DKIM key not usable at start" in caplog.text
    _warm_dkim({})  # DKIM off: nothing loaded, nothing said
