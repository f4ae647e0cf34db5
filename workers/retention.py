"""Retention: sign-ups never confirmed are deleted after PENDING_PURGE_DAYS.

Run with the reconciler from every worker's maintenance loop. A person who
never confirmed never consented; keeping their address serves nobody.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, exists, select

from service.clock import utcnow
from service.extensions import db
from service.models import ConsentEvent, OutgoingMail, Subscriber, Subscription

log = logging.getLogger(__name__)


def purge_unconfirmed() -> int:
    """Delete pending subscriptions older than the limit, and subscribers left with none."""
    cutoff = utcnow() - timedelta(days=current_app.config["PENDING_PURGE_DAYS"])
    purged = db.session.execute(
        delete(Subscription).where(
            Subscription.status == "pending", Subscription.subscribed_at < cutoff
        )
    ).rowcount
    orphans = select(Subscriber.id).where(
        Subscriber.created_at < cutoff,
        ~exists().where(Subscription.subscriber_id == Subscriber.id),
    )
    orphan_ids = db.session.scalars(orphans).all()
    for model in (ConsentEvent, OutgoingMail):
        db.session.execute(delete(model).where(model.subscriber_id.in_(orphan_ids)))
    db.session.execute(delete(Subscriber).where(Subscriber.id.in_(orphan_ids)))
    db.session.commit()
    if purged or orphan_ids:
        log.info("purged %d unconfirmed subscription(s), %d subscriber(s)", purged, len(orphan_ids))
    return purged
