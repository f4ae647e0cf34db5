"""Benchmark: the statement a batch starts with (mark those no longer subscribed skipped),
as written now against the NOT EXISTS form it replaced, on a freshly written issue.

Each form runs under EXPLAIN (ANALYZE, BUFFERS) in a transaction rolled back, for
every batch of an issue to N confirmed subscribers (fan-out's batches of BATCH_SIZE),
alternating; printed: the server's time and the pages it read per batch (medians).

Run: .venv/bin/python bench/batch_start.py [N] --database-url postgresql+psycopg://…
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

from harness import delivery_config
from issue_delivery import fresh_list, new_issue
from sqlalchemy import select, text, update

from service import create_app
from service.dev.redis_server import PrivateRedis
from service.extensions import db
from service.issues import sending
from service.models import Delivery, DeliveryBatch, Subscription, SubscriptionStatus
from workers.delivery import UNFINISHED_DELIVERY, fan_out, skip_no_longer_subscribed


def not_exists_form(batch_id: int, list_id: int):
    """The statement before (issue 14, sixth round)."""
    return (
        update(Delivery)
        .where(
            Delivery.batch_id == batch_id,
            Delivery.status.in_(UNFINISHED_DELIVERY),
            ~select(Subscription.id)
            .where(
                Subscription.subscriber_id == Delivery.subscriber_id,
                Subscription.list_id == list_id,
                Subscription.status == SubscriptionStatus.CONFIRMED,
            )
            .exists(),
        )
        .values(status="skipped", last_error="no longer subscribed")
    )


def explain(statement) -> tuple[float, int]:
    sql = str(statement.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True}))
    with db.engine.connect() as connection:
        transaction = connection.begin()
        (document,) = connection.execute(
            text(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}")
        ).scalar_one()
        transaction.rollback()
    plan = document["Plan"]
    return document["Execution Time"], plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=2000)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with PrivateRedis() as redis, tempfile.TemporaryDirectory():
        app = create_app(delivery_config(args.database_url, redis.url, 9))
        with app.app_context():
            fresh_list(args.n)
            issue = new_issue()
            sending.send_now(issue)
            db.session.commit()
            while fan_out(issue.id) != "done":
                pass
            batches = db.session.scalars(
                select(DeliveryBatch.id).where(DeliveryBatch.issue_id == issue.id)
            ).all()
            list_id = issue.list_id
            db.session.commit()
            results: dict[str, list[tuple[float, int]]] = {"NOT EXISTS (before)": [], "now": []}
            for _ in range(args.rounds):
                for batch_id in batches:
                    results["NOT EXISTS (before)"].append(
                        explain(not_exists_form(batch_id, list_id))
                    )
                    results["now"].append(explain(skip_no_longer_subscribed(batch_id, list_id)))
            db.drop_all()
    print(
        f"batch start, {args.n} subscribers in {len(batches)} batches, "
        f"{args.rounds} rounds, no statistics on the fresh tables:"
    )
    for label, runs in results.items():
        print(
            f"  {label:20} {statistics.median(ms for ms, _ in runs):8.2f} ms per batch "
            f"(max {max(ms for ms, _ in runs):.2f}), "
            f"{statistics.median(pages for _, pages in runs):8.0f} pages"
        )


if __name__ == "__main__":
    main()
