"""Benchmark: DKIM-signing real issue messages, dkimpy's `dkim.sign` against our signer.

Both sign the same personalised issue messages (rendered once by the real
rendering code, as the delivery engine would send them) with the same 2048-bit
key, rsa-sha256, relaxed/relaxed and the same h= list, including
List-Unsubscribe and List-Unsubscribe-Post:

(a) dkimpy's `dkim.sign`: canonicalisation and RSA in pure Python, the PEM
    parsed on every call (that is its API);
(b) `service.deliverability.dkim.DkimSigner`: the same canonical forms as
    dkimpy's (the parts every copy of the issue shares canonicalised once), the
    RSA signature by OpenSSL (`cryptography`), key loaded once.

Printed: signatures/s of each and the ratio, the CPU per signature of (b)
beside OpenSSL's bare RSA signature; a sample of each is verified with
`dkim.verify` against an offline DNS record.

Run: .venv/bin/python bench/dkim_signing.py [N] [--dkimpy-n M]
(default N=5000 messages for our signer, M=300 for dkimpy's, which is slow).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dkim

from service import create_app
from service.deliverability.dkim import (
    DkimSigner,
    generate_private_key,
    headers_to_sign,
    private_key_pem,
    record_value,
)
from service.extensions import db
from service.issues.rendering import Recipient, skeleton_for
from service.models import MailingList

PROJECT = Path(__file__).resolve().parent.parent
DOMAIN, SELECTOR = "socialnibydleni.example", "bench"


def render_messages(n: int) -> list[bytes]:
    """n personalised issue messages, the bytes the worker hands to the transport."""
    from service.issues import sending

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(
            {
                "DATABASE_URL": f"sqlite:///{tmp}/bench.sqlite3",
                "REDIS_URL": "redis://127.0.0.1:1/0",  # not used: nothing is enqueued
                "SMTP_URL": "smtp://127.0.0.1:1",
                "SECRET_KEY": "bench",
                "BASE_URL": "https://zpravodaj.socialnibydleni.example",
                "MAIL_FROM": f"Zpravodaj sociálního bydlení <zpravodaj@{DOMAIN}>",
                "RATE_LIMITS": False,
            }
        )
        with app.app_context():
            db.create_all()
            mailing_list = MailingList(slug="zpravodaj", name="Zpravodaj sociálního bydlení")
            db.session.add(mailing_list)
            db.session.commit()
            body = (PROJECT / "bench" / "sample_issue.md").read_text(encoding="utf-8")
            fields, errors = sending.validate_fields(
                "Zpravodaj sociálního bydlení 12/2026", body, ""
            )
            assert not errors, errors
            issue = sending.create_issue(mailing_list, fields, None)
            db.session.commit()
            skeleton = skeleton_for(issue)
            messages = [
                skeleton.personalise(
                    Recipient(f"ctenar{i}@example.cz", f"Čtenář {i}", f"k{i}"),
                    skeleton.new_message_id(i),
                )
                for i in range(n)
            ]
            db.drop_all()
    return messages


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=5000)
    parser.add_argument("--dkimpy-n", type=int, default=300)
    args = parser.parse_args()

    messages = render_messages(max(args.n, args.dkimpy_n))
    key = generate_private_key()
    pem = private_key_pem(key)
    record = record_value(key).encode("ascii")

    def dns(name, timeout=5):
        return record

    headers, _ = dkim.rfc822_parse(messages[0])
    include = headers_to_sign(name for name, _ in headers)

    sample = messages[: args.dkimpy_n]
    start = time.perf_counter()
    theirs = [
        dkim.sign(
            m,
            SELECTOR.encode(),
            DOMAIN.encode(),
            pem,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=include,
        )
        + m
        for m in sample
    ]
    dkimpy_rate = rate(len(sample), time.perf_counter() - start)

    signer = DkimSigner(DOMAIN, SELECTOR, private_key=key)
    mine = messages[: args.n]
    signer(mine[0])  # dkimpy imported, the issue's shared body and signature field laid out
    start, cpu = time.perf_counter(), time.process_time()
    ours = [signer(m) for m in mine]
    our_rate = rate(len(mine), time.perf_counter() - start)
    our_cpu = (time.process_time() - cpu) / len(mine) * 1e6

    # The RSA step alone, for scale: what is left is canonicalisation and hashing.
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    start, cpu = time.perf_counter(), time.process_time()
    for i in range(len(mine)):
        key.sign(b"%d" % i, padding.PKCS1v15(), hashes.SHA256())
    rsa_rate = rate(len(mine), time.perf_counter() - start)
    rsa_cpu = (time.process_time() - cpu) / len(mine) * 1e6

    checked = theirs[:20] + ours[:: max(1, len(ours) // 50)]
    verified = sum(dkim.verify(m, dnsfunc=dns) for m in checked)
    size = sum(map(len, mine)) / len(mine)
    print(f"DKIM signing of issue messages (rsa-sha256, 2048 bits, relaxed/relaxed, {size:.0f} B)")
    print(f"  h={b':'.join(include).decode()}")
    rows = (
        ("(a) dkimpy dkim.sign (pure-Python RSA)", dkimpy_rate, len(sample)),
        ("(b) DkimSigner (OpenSSL RSA)", our_rate, len(mine)),
    )
    for label, value, count in rows:
        print(f"  {label:40} {value:8.0f} signatures/s  ({count} messages)")
    print(f"  ratio (b)/(a): {our_rate / dkimpy_rate:.1f} x")
    print(f"  for scale, OpenSSL's RSA-2048 signature alone: {rsa_rate:.0f}/s")
    print(
        f"  CPU per signature: DkimSigner {our_cpu:.0f} µs, RSA alone {rsa_cpu:.0f} µs, "
        f"the rest (canonicalisation, hashing, the field) {our_cpu - rsa_cpu:.0f} µs"
    )
    print(f"  verified with dkim.verify: {verified}/{len(checked)}")
    if verified != len(checked):
        raise SystemExit("some signatures did not verify")


if __name__ == "__main__":
    main()
