"""Unconfirmed sign-ups are deleted after PENDING_PURGE_DAYS (the privacy notice promises it)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from service.clock import utcnow
from service.extensions import db
from service.models import ConsentEvent, OutgoingMail, Subscriber, Subscription
from tests.conftest import link_to, run_jobs
from workers.retention import purge_unconfirmed


def age_everything(days: int) -> None:
    past = utcnow() - timedelta(days=days)
    db.session.execute(update(Subscription).values(subscribed_at=past))
    db.session.execute(update(Subscriber).values(created_at=past))
    db.session.commit()


def count(model) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(model))


def test_old_unconfirmed_signups_are_purged_with_their_records(client, app, outbox):
    client.post("/subscribe", json={"email": "nikdy@seznam.cz"})
    client.post("/subscribe", json={"email": "potvrdila@seznam.cz"})
    run_jobs(app)
    client.post(link_to(outbox.mails[1], "/confirm/"))
    age_everything(days=31)

    assert purge_unconfirmed() == 1
    assert db.session.scalars(select(Subscriber.email)).all() == ["potvrdila@seznam.cz"]
    assert count(Subscription) == 1
    assert count(OutgoingMail) == 1
    assert count(ConsentEvent) == 2  # the confirmed person's signup and confirm


def test_recent_unconfirmed_signups_stay(client, app):
    client.post("/subscribe", json={"email": "nova@seznam.cz"})
    age_everything(days=29)
    assert purge_unconfirmed() == 0
    assert count(Subscriber) == 1


def test_workers_purge_when_they_start(client, app):
    client.post("/subscribe", json={"email": "nikdy@seznam.cz"})
    age_everything(days=45)
    run_jobs(app)
    assert count(Subscriber) == 0
