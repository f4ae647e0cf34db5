"""Benchmark: the fan-out of a large issue, and the progress JSON while it is sent.

In one run, on a list of N confirmed subscribers (default 1,000,000; written
with INSERT … SELECT over generate_series on PostgreSQL, executemany on SQLite):

1. the fan-out: the `fan_out` job slices run back to back, as a worker with
   nothing else queued runs them (the batches go to a private Redis and are
   not sent), timed from "send" to `fanout_done`. Baseline from the same run:
   one INSERT … SELECT of every delivery row in one statement, the least the
   database can do for it (no batches, no slices, no queue);
2. the progress JSON (`sending.progress`, what the editor's page polls), median
   of 5 calls on that issue, against the GROUP BY over the deliveries it
   replaced (measured on the same rows in the same run).

Run: .venv/bin/python bench/fan_out.py [N] [--database-url URL]
(default: a temporary SQLite file; pass a PostgreSQL URL for the target figure).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, insert, select, text

from service import create_app
from service.clock import utcnow
from service.dev.redis_server import PrivateRedis
from service.extensions import db
from service.issues import sending
from service.models import Delivery, Issue, MailingList, Subscriber, Subscription
from workers import delivery

PROJECT = Path(__file__).resolve().parent.parent


def seed(n: int, list_id: int) -> None:
    """N confirmed subscribers, as fast as the database takes them."""
    earlier = utcnow()
    if db.engine.dialect.name == "postgresql":
        db.session.execute(
            text(
                "INSERT INTO subscriber (email, email_key, ascii_email, name, public_key, "
                "created_at) SELECT 'c' || g || '@example.cz', 'c' || g || '@example.cz', "
                "'c' || g || '@example.cz', 'Čtenář ' || g, 'k' || g, :now "
                "FROM generate_series(1, :n) g"
            ),
            {"n": n, "now": earlier},
        )
    else:
        for start in range(0, n, 50_000):
            db.session.execute(
                insert(Subscriber),
                [{"email": f"c{i}@example.cz", "email_key": f"c{i}@example.cz",
                  "ascii_email": f"c{i}@example.cz", "name": f"Čtenář {i}", "public_key": f"k{i}"}
                 for i in range(start, min(n, start + 50_000))],
            )  # fmt: skip
    db.session.execute(
        insert(Subscription).from_select(
            ["subscriber_id", "list_id", "status", "subscribed_at", "confirmed_at"],
            select(
                Subscriber.id,
                text(str(list_id)),
                text("'confirmed'"),
                text(":now").bindparams(now=earlier),
                text(":now2").bindparams(now2=earlier),
            ),
        )
    )
    db.session.commit()
    if db.engine.dialect.name == "postgresql":
        # As autovacuum leaves a list built over time: statistics and visibility map.
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE subscription")
            connection.exec_driver_sql("VACUUM ANALYZE subscriber")


def new_issue(mailing_list: MailingList) -> Issue:
    fields, errors = sending.validate_fields("Zpravodaj 1/2027", "Text vydání.", "")
    assert not errors, errors
    issue = sending.create_issue(mailing_list, fields, None)
    db.session.commit()
    return issue


def timed_fan_out(issue: Issue) -> tuple[float, float, float]:
    """Seconds from "send" to the last delivery row, the fan-out's slices back to back;
    seconds to the first batch in the queue (the end of the first slice, when a single
    worker starts sending); this process's CPU seconds for the whole fan-out."""
    # Each slice runs as the job the previous one handed over to (as RQ would run it).
    delivery._current_job_id = lambda: db.session.scalar(
        select(Issue.fanout_job_id).where(Issue.id == issue.id)
    )
    start, cpu = time.perf_counter(), time.process_time()
    sending.send_now(issue)
    db.session.commit()
    first_batch = None
    while True:
        delivery.fan_out(issue.id)
        first_batch = first_batch or time.perf_counter() - start
        db.session.expire_all()
        if db.session.get(Issue, issue.id).fanout_done:
            return time.perf_counter() - start, first_batch, time.process_time() - cpu


def one_statement_baseline(issue: Issue, list_id: int) -> float:
    """Every delivery row of the issue in one INSERT … SELECT (then removed again)."""
    db.session.execute(text("CREATE TEMPORARY TABLE bench_rows (issue_id int, subscriber_id int)"))
    start = time.perf_counter()
    db.session.execute(
        text(
            "INSERT INTO bench_rows SELECT :issue, subscriber_id FROM subscription "
            "WHERE list_id = :list AND status = 'confirmed' ORDER BY subscriber_id"
        ),
        {"issue": issue.id, "list": list_id},
    )
    db.session.commit()
    elapsed = time.perf_counter() - start
    db.session.execute(text("DROP TABLE bench_rows"))
    db.session.commit()
    return elapsed


def median_ms(call, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        db.session.expire_all()
        start = time.perf_counter()
        call()
        db.session.commit()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def group_by_counts(issue_id: int) -> None:
    """What progress read before the per-batch counters."""
    db.session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.issue_id == issue_id)
        .group_by(Delivery.status)
    ).all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with PrivateRedis() as redis, tempfile.TemporaryDirectory() as tmp:
        database_url = args.database_url or f"sqlite:///{tmp}/bench.sqlite3"
        app = create_app({
            "DATABASE_URL": database_url, "REDIS_URL": redis.url, "SECRET_KEY": "bench",
            "SMTP_URL": "smtp://127.0.0.1:9", "RATE_LIMITS": False,
        })  # fmt: skip
        with app.app_context():
            db.drop_all()
            db.create_all()
            mailing_list = MailingList(slug="zpravodaj", name="Zpravodaj")
            db.session.add(mailing_list)
            db.session.commit()
            seed(args.n, mailing_list.id)
            issue = new_issue(mailing_list)
            baseline = one_statement_baseline(issue, mailing_list.id)
            fan_out, first_batch, cpu = timed_fan_out(issue)
            issue = db.session.get(Issue, issue.id)
            progress_ms = median_ms(lambda: sending.progress(db.session.get(Issue, issue.id)))
            group_by_ms = median_ms(lambda: group_by_counts(issue.id))
            counts = sending.delivery_counts(issue)
            assert counts["total"] == args.n == counts["pending"], counts
            db.session.remove()
            db.drop_all()
    kind = "PostgreSQL" if database_url.startswith("postgres") else "SQLite"
    print(f"fan-out of one issue to {args.n:,} subscribers ({kind})")
    print(
        f"  fan-out, slices back to back: {fan_out:7.1f} s; "
        f"one INSERT … SELECT of every row: {baseline:6.1f} s (baseline); "
        f"ratio {baseline / fan_out:.2f} x"
    )
    print(
        f"  first batch queued after {first_batch * 1000:.0f} ms; "
        f"fan-out CPU (this process) {cpu / args.n * 1e6:.1f} µs per recipient"
    )
    print(
        f"  progress JSON, median of 5: {progress_ms:6.1f} ms "
        f"(per-batch counters); GROUP BY over the deliveries: {group_by_ms:6.1f} ms"
    )


if __name__ == "__main__":
    main()
