"""Benchmark: opening the dev outbox (`/dev/outbox`) with N caught mails (default 10,000).

Issue 16 wants the outbox to open in under 200 ms with 10,000 mails. In one run:

1. N mails are written as `zpravodaj dev`'s catcher leaves them (`<stem>.eml` and
   `<stem>.json`: a confirmation-sized mail each, to N readers), then the index is
   built as the catcher does when it starts (`outbox_index.reindex`, timed);
2. through the app (Flask's test client: the whole request, CSP and templates
   included, no network), each --runs times, the median of:
   - baseline: the outbox page of an empty outbox (what a page costs at all);
   - the first page (50 newest of N, and the count);
   - the last page (`?before=`: keyset pagination, as fast as the first);
   - a search by subject matching 1 % of the mails, and one by an address;
   - one mail's page (its .eml read and shown);
3. the ratio of each to the baseline, and whether it is under the 200 ms target.

Run: .venv/bin/python bench/dev_outbox.py [N] [--runs R]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

import harness

from service.dev import outbox_index

TARGET_MS = 200
FIRST_STEM = 1_700_000_000_000_000_000


def write_mails(directory: Path, count: int) -> None:
    """`count` caught mails as the catcher stores them (its index not yet built)."""
    directory.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        message = EmailMessage()
        message["From"] = "Zpravodaj sociálního bydlení <zpravodaj@socialnibydleni.example>"
        message["To"] = f"ctenar{n}@seznam.cz"
        message["Subject"] = f"Vydání {n % 100}: Potvrďte přihlášení k odběru"
        message.set_content(f"Dobrý den,\n\npotvrďte: https://zpravodaj.example/confirm/{n:012d}\n")
        message.add_alternative(f"<p>Dobrý den,</p><p>potvrďte {n}.</p>", subtype="html")
        stem = FIRST_STEM + n
        (directory / f"{stem}.eml").write_bytes(message.as_bytes())
        recipients = {"mail_from": "bounces@socialnibydleni.example", "rcpt_tos": [message["To"]]}
        (directory / f"{stem}.json").write_text(json.dumps(recipients))


def timed_ms(client, url: str, runs: int) -> float:
    """The median time of GET `url`, in ms (one warm-up request first)."""
    assert client.get(url).status_code == 200, url
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url)
        response.get_data()
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, url
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("count", nargs="?", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=21)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        empty, full = Path(tmp) / "empty", Path(tmp) / "full"
        empty.mkdir()
        write_mails(full, options.count)
        started = time.perf_counter()
        connection = outbox_index.connect(full)
        indexed = outbox_index.reindex(full, connection)
        connection.close()
        reindex_s = time.perf_counter() - started
        last = FIRST_STEM + outbox_index.PER_PAGE  # the page holding the oldest mails
        urls = {
            "first page": "/dev/outbox/",
            "last page": f"/dev/outbox/?before={last}",
            "search by subject (1 %)": "/dev/outbox/?q=vydani+7:",
            "search by address": f"/dev/outbox/?q=ctenar{options.count // 2}@",
            "one mail": f"/dev/outbox/{FIRST_STEM + options.count - 1}",
        }
        with harness.signup_app(DEV_OUTBOX_DIR=str(empty), LOG_LEVEL="WARNING") as (app, _redis):
            baseline = timed_ms(app.test_client(), "/dev/outbox/", options.runs)
        with harness.signup_app(DEV_OUTBOX_DIR=str(full), LOG_LEVEL="WARNING") as (app, _redis):
            client = app.test_client()
            figures = {name: timed_ms(client, url, options.runs) for name, url in urls.items()}
    print(f"dev outbox, {options.count:,} caught mails ({indexed:,} indexed in {reindex_s:.1f} s)")
    print(f"baseline (empty outbox page): {baseline:.1f} ms")
    for name, ms in figures.items():
        verdict = "under" if ms < TARGET_MS else "OVER"
        print(
            f"{name:<26} {ms:6.1f} ms  {harness.ratio(ms, baseline)} × baseline  "
            f"({verdict} the {TARGET_MS} ms target)"
        )


if __name__ == "__main__":
    main()
