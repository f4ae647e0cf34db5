"""What the delivery engine's per-batch statements do and cost the database."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, func, select, text, update

from service.extensions import db
from service.models import Delivery, DeliveryBatch, Subscription
from tests.conftest import add_confirmed_subscribers
from tests.workers.test_delivery import make_issue, send
from workers.delivery import fan_out, skip_no_longer_subscribed

SUBSCRIBERS = 1600
BATCH = 100


def last_batch_of_a_fanned_out_issue(app) -> tuple[int, int]:
    """(list id, batch id): an issue to SUBSCRIBERS confirmed subscribers, its first
    fan-out job run (ten batches of BATCH); the last of them."""
    app.config["BATCH_SIZE"] = BATCH
    add_confirmed_subscribers("zpravodaj", SUBSCRIBERS)
    issue = make_issue()
    send(issue)
    fan_out(issue.id)
    batch_id = db.session.scalar(select(func.max(DeliveryBatch.id)))
    list_id = issue.list_id
    db.session.commit()
    return list_id, batch_id


def buffers_touched(statement) -> int:
    """Shared buffers PostgreSQL reads or hits running the statement (rolled back)."""
    sql = str(statement.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True}))
    with db.engine.connect() as connection:
        transaction = connection.begin()
        (document,) = connection.execute(
            text(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}")
        ).scalar_one()
        transaction.rollback()
    return document["Plan"]["Shared Hit Blocks"] + document["Plan"]["Shared Read Blocks"]


def test_batch_start_skips_exactly_those_no_longer_subscribed(app):
    list_id, batch_id = last_batch_of_a_fanned_out_issue(app)
    ids = db.session.scalars(
        select(Delivery.subscriber_id).where(Delivery.batch_id == batch_id).order_by(Delivery.id)
    ).all()
    unsubscribed, removed = ids[3], ids[-1]
    written = db.session.scalar(select(func.count()).select_from(Delivery))
    db.session.execute(
        update(Subscription)
        .where(Subscription.subscriber_id == unsubscribed)
        .values(status="unsubscribed")
    )
    db.session.execute(delete(Subscription).where(Subscription.subscriber_id == removed))
    db.session.commit()

    db.session.execute(skip_no_longer_subscribed(batch_id, list_id))
    db.session.commit()

    skipped = db.session.scalars(
        select(Delivery.subscriber_id).where(Delivery.status == "skipped")
    ).all()
    assert sorted(skipped) == sorted([unsubscribed, removed])
    pending = db.session.scalar(select(func.count()).where(Delivery.status == "pending"))
    assert pending == written - 2


def test_batch_start_reads_a_few_pages_per_delivery_not_the_whole_list(app):
    """Without statistics (tables just written, autovacuum off or not run yet) NOT EXISTS
    became an anti-join that scanned the list's confirmed subscriptions for each of
    the batch's deliveries (here 1,633 pages for this batch of 100, 112,452 in a run
    with 800 subscribers, growing with the list); a lookup by subscriber and list
    alone scanned the (list, status, subscriber) index's range of the list for each
    (1,003 pages); one exact probe each reads about 3 (303 pages)."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("EXPLAIN (ANALYZE, BUFFERS) is PostgreSQL's")
    list_id, batch_id = last_batch_of_a_fanned_out_issue(app)
    pages = buffers_touched(skip_no_longer_subscribed(batch_id, list_id))
    assert pages < 8 * BATCH, f"{pages} pages for a batch of {BATCH}"
