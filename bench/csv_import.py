"""Benchmark: importing subscribers from a CSV, against a raw executemany of the same rows.

In one run, for a CSV of N new people (default 20,000; Czech names, some
addresses with IDN domains, a few bad and repeated lines as real files have):

1. the import as `zpravodaj subscribers import` runs it: the file read through
   once (`count_rows`), then `import_csv` a chunk per transaction (address
   validation, the suppression list, the people, subscriptions and consent
   events with their hash chain), into an empty list;
2. baseline: the same people's rows (subscriber, subscription, consent event,
   values computed beforehand, no checks) written with the DB-API's
   `executemany`, one statement per table, in one transaction: what the
   database takes at best.

Each is run --runs times on a fresh schema (medians printed), with rows/s, the
ratio, and the target (issue 14: 5,000 rows/s on PostgreSQL, 2,000 on SQLite).
A PostgreSQL run works in a schema of its own, dropped at the end.

Run: .venv/bin/python bench/csv_import.py [N] [--runs R] [--database-url URL]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from service import create_app, ledger
from service.clock import utcnow
from service.dev.redis_server import PrivateRedis
from service.extensions import db
from service.models import ConsentEvent, MailingList
from service.subscriptions.importing import count_rows, import_csv, text_of

TARGETS = {"PostgreSQL": 5000, "SQLite": 2000}
FIRST_NAMES = ("Jana", "Petr", "Eva", "Tomáš", "Lucie", "Jiří", "Kateřina", "Martin")
LOCAL_PARTS = ("jana", "petr", "eva", "tomas", "lucie", "jiri", "katerina", "martin")
LAST_NAMES = ("Nováková", "Dvořák", "Černá", "Procházka", "Kučerová", "Veselý")
DOMAINS = ("seznam.cz", "centrum.cz", "email.cz", "ostrava.cz", "příklad.cz")


def sample_csv(n: int) -> bytes:
    """N people, plus one bad address and one repeated line per thousand."""
    lines = ["email,name"]
    for i in range(n):
        first, last = FIRST_NAMES[i % 8], LAST_NAMES[i % 6]
        lines.append(f"{LOCAL_PARTS[i % 8]}.{i}@{DOMAINS[i % 5]},{first} {last}")
        if i % 1000 == 999:
            lines.append(f"neplatna-adresa-{i},Nikdo")
            lines.append(f"{LOCAL_PARTS[i % 8]}.{i}@{DOMAINS[i % 5]},Znovu")
    return ("\n".join(lines) + "\n").encode()


@contextmanager
def own_schema(url: str | None, tmp: str) -> Iterator[str]:
    """A SQLite file, or the PostgreSQL URL narrowed to a schema of this run's own."""
    if url is None or not url.startswith("postgres"):
        yield url or f"sqlite:///{tmp}/bench.sqlite3"
        return
    import psycopg

    parsed = make_url(url).set(drivername="postgresql+psycopg")
    schema = f"bench_import_{os.getpid()}"
    plain = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        connection.execute(f"CREATE SCHEMA {schema}")
    try:
        yield parsed.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        with psycopg.connect(plain, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def fresh_list() -> MailingList:
    db.session.remove()
    db.drop_all()
    db.create_all()
    mailing_list = MailingList(slug="zpravodaj", name="Zpravodaj sociálního bydlení")
    db.session.add(mailing_list)
    db.session.commit()
    return mailing_list


def timed_import(data: bytes) -> tuple[float, float, int]:
    """Wall and CPU seconds of the CLI's import of `data`; people imported."""
    mailing_list = fresh_list()
    start, cpu = time.perf_counter(), time.process_time()
    source = io.BytesIO(data)
    count_rows(source)
    source.seek(0)
    report = import_csv(text_of(source), mailing_list, "Mailchimp, export 2026-11")
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert db.session.scalar(select(func.count()).select_from(ConsentEvent)) == report.imported
    return elapsed, cpu, report.imported


def raw_rows(n: int, list_id: int) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """The rows an import of n people writes, computed beforehand."""
    now = utcnow()
    people = [
        (f"k{i}", f"p{i}@seznam.cz", f"p{i}@seznam.cz", f"p{i}@seznam.cz", f"Jana {i}", now)
        for i in range(n)
    ]
    subscriptions = [(i + 1, list_id, "confirmed", now, now, "", "", "") for i in range(n)]
    events = [
        (i + 1, list_id, "import", "import", now, "Mailchimp", None, ledger.event_hash(None, {
            "subscriber_id": i + 1, "list_id": list_id, "action": "import",
            "channel": "import", "occurred_at": now, "ip": None, "user_agent": None,
            "origin": None, "consent_text": None, "privacy_text": None,
            "message_id": None, "detail": "Mailchimp",
        }))
        for i in range(n)
    ]  # fmt: skip
    return people, subscriptions, events


def timed_executemany(n: int) -> float:
    """Seconds to write the same rows with the DB-API's executemany, one transaction."""
    mailing_list = fresh_list()
    people, subscriptions, events = raw_rows(n, mailing_list.id)
    mark = "?" if db.engine.dialect.name == "sqlite" else "%s"

    def marks(count: int) -> str:
        return ", ".join([mark] * count)

    connection = db.engine.raw_connection()
    try:
        cursor = connection.cursor()
        start = time.perf_counter()
        cursor.executemany(
            "INSERT INTO subscriber (public_key, email, email_key, ascii_email, name, "
            f"created_at) VALUES ({marks(6)})",
            people,
        )
        cursor.executemany(
            "INSERT INTO subscription (subscriber_id, list_id, status, subscribed_at, "
            f"confirmed_at, organization, institution, function) VALUES ({marks(8)})",
            subscriptions,
        )
        cursor.executemany(
            "INSERT INTO consent_event (subscriber_id, list_id, action, channel, occurred_at, "
            f"detail, previous_hash, event_hash) VALUES ({marks(8)})",
            events,
        )
        connection.commit()
        return time.perf_counter() - start
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5, help="runs of each (medians printed)")
    parser.add_argument("--database-url")
    args = parser.parse_args()
    data = sample_csv(args.n)
    imports, cpus, baselines = [], [], []
    with (
        PrivateRedis() as redis,
        tempfile.TemporaryDirectory() as tmp,
        own_schema(args.database_url, tmp) as database_url,
    ):
        app = create_app({
            "DATABASE_URL": database_url, "REDIS_URL": redis.url, "SECRET_KEY": "bench",
            "SMTP_URL": "smtp://127.0.0.1:9", "RATE_LIMITS": False, "SMTPUTF8": "off",
        })  # fmt: skip
        with app.app_context():
            for _ in range(args.runs):
                elapsed, cpu, imported = timed_import(data)
                assert imported == args.n, (imported, args.n)
                imports.append(elapsed)
                cpus.append(cpu)
                baselines.append(timed_executemany(args.n))
            db.session.remove()
            db.drop_all()
            db.engine.dispose()
    kind = "PostgreSQL" if database_url.startswith("postgres") else "SQLite"
    ours, raw = args.n / statistics.median(imports), args.n / statistics.median(baselines)
    target = TARGETS[kind]
    print(f"CSV import of {args.n:,} new people ({kind}), medians of {args.runs} runs")
    print(
        f"  zpravodaj import (read through, then chunks): {ours:8,.0f} rows/s "
        f"({statistics.median(imports):.2f} s; CPU {statistics.median(cpus) / args.n * 1e6:.0f} "
        "µs per row in this process)"
    )
    print(f"  raw executemany of the same rows (baseline): {raw:8,.0f} rows/s")
    print(
        f"  ratio {ours / raw:.2f} x; target {target:,} rows/s "
        f"{'reached' if ours >= target else 'not reached'}"
    )


if __name__ == "__main__":
    main()
