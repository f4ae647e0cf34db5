"""Retention (workers/retention.py): each rule at its boundary, 0 = keep for ever, run hourly.

Time is controlled: the rows get the real time of the actions that create
them, and retention's own clock (`workers.retention.utcnow`) is moved to a
moment relative to them, so each boundary is tested to the second.
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from service.accounts import create_token
from service.addresses import address_hash
from service.clock import utcnow
from service.extensions import db
from service.groups import membership
from service.issues import sending
from service.models import (
    Bounce,
    ConsentEvent,
    Delivery,
    DeliveryBatch,
    Issue,
    MailingList,
    OutgoingMail,
    Subscriber,
    Subscription,
    Suppression,
)
from service.subscriptions import transfer
from tests.conftest import (
    add_confirmed_subscribers,
    ledger_unguarded,
    link_to,
    log_in,
    process_signups,
    run_jobs,
    send_issue_now,
)
from workers import retention
from workers.retention import (
    expire_consent_evidence,
    purge_unconfirmed,
    reduce_delivery_detail,
)
from workers.schedule import RETENTION, run_if_due, run_periodic_work

SECOND = timedelta(seconds=1)


class Clock:
    """Retention's notion of now; None means the real time."""

    def __init__(self) -> None:
        self.now: datetime | None = None

    def __call__(self) -> datetime:
        return self.now or utcnow()


@pytest.fixture
def clock(monkeypatch) -> Clock:
    moved = Clock()
    monkeypatch.setattr(retention, "utcnow", moved)
    return moved


def age_everything(days: int) -> None:
    past = utcnow() - timedelta(days=days)
    db.session.execute(update(Subscription).values(subscribed_at=past))
    db.session.execute(update(Subscriber).values(created_at=past))
    db.session.commit()


def count(model, *conditions) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(model).where(*conditions))


def group() -> MailingList:
    return db.session.scalar(select(MailingList).filter_by(slug="ostrava-psb"))


def newest(column):
    db.session.expire_all()
    return db.session.scalar(select(func.max(column)))


# --- (a) unconfirmed sign-ups and invitations ---------------------------------------------


def test_old_unconfirmed_signups_are_purged_with_their_records(client, app, outbox):
    client.post("/subscribe", json={"email": "nikdy@seznam.cz"})
    process_signups()
    client.post("/subscribe", json={"email": "potvrdila@seznam.cz"})
    process_signups()
    run_jobs(app)
    client.post(link_to(outbox.mails[1], "/confirm/"))
    age_everything(days=31)

    assert purge_unconfirmed() == 1
    assert db.session.scalars(select(Subscriber.email)).all() == ["potvrdila@seznam.cz"]
    assert count(Subscription) == 1
    kept = db.session.scalar(select(Subscriber.id))
    assert count(OutgoingMail, OutgoingMail.subscriber_id != kept) == 0
    assert count(OutgoingMail, OutgoingMail.subscriber_id == kept) >= 1
    assert count(ConsentEvent) == 2  # the confirmed person's signup and confirm


def test_recent_unconfirmed_signups_stay(client, app):
    client.post("/subscribe", json={"email": "nova@seznam.cz"})
    process_signups()
    age_everything(days=29)
    assert purge_unconfirmed() == 0
    assert count(Subscriber) == 1


def test_unconfirmed_signup_is_purged_one_second_after_the_period(client, app, clock):
    client.post("/subscribe", json={"email": "nikdy@seznam.cz"})
    process_signups()
    signed_up = newest(Subscription.subscribed_at)

    clock.now = signed_up + timedelta(days=30)
    assert purge_unconfirmed() == 0
    assert count(Subscriber) == 1

    clock.now = signed_up + timedelta(days=30) + SECOND
    assert purge_unconfirmed() == 1
    assert count(Subscriber) == count(ConsentEvent) == count(OutgoingMail) == 0


def test_invitations_never_accepted_are_purged_like_sign_ups(client, app, clock, outbox):
    invited = membership.invite(
        group(),
        "pozvana@ostrava.cz",
        "Pozvaná",
        "Magistrát",
        "obec-socialni",
        "sociální práce",
        None,
    )
    accepted = membership.invite(
        group(), "prijala@ostrava.cz", "Přijala", "Charita", "nno", "koordinátorka", None
    )
    db.session.commit()
    invited_at = invited.subscribed_at
    run_jobs(app)
    client.post(link_to(outbox.mails[1], "/groups/invitation/"))
    assert db.session.get(Subscription, accepted.id).status == "confirmed"

    clock.now = invited_at + timedelta(days=30)
    assert purge_unconfirmed() == 0
    clock.now = invited_at + timedelta(days=31)
    assert purge_unconfirmed() == 1
    assert db.session.scalars(select(Subscriber.email)).all() == ["prijala@ostrava.cz"]


def test_join_request_waiting_for_the_coordinator_is_not_purged(client, app, clock, outbox):
    form = {
        "email": "zadatel@ostrava.cz",
        "name": "Žadatel",
        "organization": "Charita Ostrava",
        "institution": "nno",
        "function": "sociální pracovník",
    }
    client.post("/groups/ostrava-psb/join", data=form)
    client.post("/groups/ostrava-psb/join", data={**form, "email": "nepotvrdil@ostrava.cz"})
    run_jobs(app)
    mail = next(m for m in outbox.mails if m.rcpt_tos == ["zadatel@ostrava.cz"])
    client.post(link_to(mail, "/groups/join/"))

    clock.now = utcnow() + timedelta(days=365)
    assert purge_unconfirmed() == 1  # the unconfirmed one; "requested" waits for an answer
    assert db.session.scalars(select(Subscription.status)).all() == ["requested"]


def test_zero_keeps_unconfirmed_sign_ups_for_ever(client, app, clock):
    app.config["PENDING_PURGE_DAYS"] = 0
    client.post("/subscribe", json={"email": "nikdy@seznam.cz"})
    process_signups()
    clock.now = utcnow() + timedelta(days=10 * 365)
    assert purge_unconfirmed() == 0
    assert count(Subscriber) == 1


# --- (b) delivery detail --------------------------------------------------------------------


def send_issue(app, slug: str = "zpravodaj") -> Issue:
    issue = send_issue_now(app, slug, "Zpravodaj 1/2027")
    assert issue.status == "sent"
    return issue


def reports(client, accounts, issue_id: int) -> tuple[dict, dict]:
    """What the API and the admin's progress report say about an issue (editor signed in)."""
    token = create_token(accounts.editor)
    db.session.commit()
    api = client.get(f"/api/v1/issues/{issue_id}", headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 200
    progress = client.get(f"/admin/issues/{issue_id}/progress.json")
    assert progress.status_code == 200
    page = client.get(f"/admin/issues/{issue_id}")
    assert page.status_code == 200
    return api.get_json()["counts"], progress.get_json()


def test_old_issue_keeps_its_counts_and_loses_its_delivery_rows(
    client, app, clock, outbox, accounts, monkeypatch
):
    monkeypatch.setattr(retention, "CHUNK", 2)  # several chunks for a few rows
    add_confirmed_subscribers("zpravodaj", 5)
    outbox.catcher.reject_rcpt["odberatel3@example.cz"] = (550, "5.1.1 No such user")
    issue = send_issue(app)
    other = send_issue(app, "novinky")  # nobody on it, still an issue of its own
    log_in(client, accounts.editor.email)
    before = reports(client, accounts, issue.id)
    assert before[0] == {
        "total": 5, "sent": 4, "failed": 1, "pending": 0, "skipped": 0, "cancelled": 0
    }  # fmt: skip
    finished = issue.finished_at

    clock.now = finished + timedelta(days=180)
    assert reduce_delivery_detail()["summarised_issues"] == 0
    assert count(Delivery, Delivery.issue_id == issue.id) == 5

    clock.now = finished + timedelta(days=180) + SECOND
    done = reduce_delivery_detail()
    assert done["summarised_issues"] == 1
    assert done["deleted_deliveries"] == 5
    assert count(Delivery) == count(DeliveryBatch) == 0
    db.session.expire_all()
    assert db.session.get(Issue, issue.id).delivery_summary == before[0]
    assert db.session.get(Issue, other.id).delivery_summary is None
    assert reports(client, accounts, issue.id) == before
    # A second run finds nothing left to do.
    assert reduce_delivery_detail()["summarised_issues"] == 0


def test_issue_not_finished_keeps_its_rows_however_old(app, clock, outbox):
    add_confirmed_subscribers("zpravodaj", 3)
    issue = send_issue(app)
    db.session.execute(update(Issue).values(status="paused"))
    db.session.commit()
    clock.now = utcnow() + timedelta(days=1000)
    assert reduce_delivery_detail()["summarised_issues"] == 0
    assert count(Delivery) == 3
    db.session.expire_all()
    assert db.session.get(Issue, issue.id).delivery_summary is None


def test_cancelled_issue_is_reduced_with_its_cancelled_count(app, clock, outbox):
    add_confirmed_subscribers("zpravodaj", 4)
    mailing_list = db.session.scalar(select(MailingList).filter_by(slug="zpravodaj"))
    fields, _ = sending.validate_fields("Zrušené", "Text.\n", "")
    issue = sending.create_issue(mailing_list, fields, None)
    db.session.commit()
    sending.send_now(issue)
    db.session.commit()
    from workers.delivery import fan_out

    fan_out(issue.id)
    issue = db.session.get(Issue, issue.id)
    sending.cancel(issue)
    db.session.commit()
    counts = sending.delivery_counts(db.session.get(Issue, issue.id))
    assert counts["cancelled"] == 4

    clock.now = utcnow() + timedelta(days=181)
    assert reduce_delivery_detail()["summarised_issues"] == 1
    db.session.expire_all()
    assert sending.delivery_counts(db.session.get(Issue, issue.id)) == counts
    assert count(Delivery) == 0


def test_old_sent_mails_and_bounces_are_deleted_queued_mails_stay(client, app, clock, outbox):
    client.post("/subscribe", json={"email": "jana@seznam.cz"})
    process_signups()
    run_jobs(app)
    subscriber_id = db.session.scalar(select(Subscriber.id))
    sent_at = newest(OutgoingMail.sent_at)
    db.session.add(
        Bounce(subscriber_id=subscriber_id, kind="soft", fingerprint="a" * 64, received_at=sent_at)
    )
    db.session.commit()
    client.post("/subscribe", json={"email": "petr@seznam.cz"})
    process_signups()  # its mail stays queued: no worker ran
    assert count(OutgoingMail, OutgoingMail.status == "queued") == 1

    clock.now = sent_at + timedelta(days=180)
    assert reduce_delivery_detail()["deleted_mails"] == 0
    clock.now = sent_at + timedelta(days=180) + SECOND
    done = reduce_delivery_detail()
    assert done["deleted_mails"] == 1
    assert done["deleted_bounces"] == 1
    assert count(OutgoingMail) == 1
    assert count(OutgoingMail, OutgoingMail.status == "queued") == 1
    assert count(Bounce) == 0


def test_raw_bounce_reports_are_emptied_after_their_days(client, app, clock, outbox):
    (subscriber_id,) = add_confirmed_subscribers("zpravodaj", 1)
    received = utcnow()
    db.session.add(
        Bounce(
            subscriber_id=subscriber_id,
            kind="soft",
            reason="mailbox_full",
            status="4.2.2",
            raw="Final-Recipient: rfc822; jana@seznam.cz\nStatus: 4.2.2\n",
            fingerprint="b" * 64,
            received_at=received,
        )
    )
    db.session.commit()
    clock.now = received + timedelta(days=30)
    assert retention.purge_raw_bounces() == 0
    clock.now = received + timedelta(days=30) + SECOND
    assert retention.run_retention()["purged_raw_bounces"] == 1
    assert count(Bounce, Bounce.raw.is_(None)) == 1
    assert count(Bounce, Bounce.reason == "mailbox_full", Bounce.status == "4.2.2") == 1


def test_zero_keeps_delivery_detail_for_ever(app, clock, outbox):
    app.config["DELIVERY_DETAIL_DAYS"] = 0
    add_confirmed_subscribers("zpravodaj", 2)
    send_issue(app)
    clock.now = utcnow() + timedelta(days=10 * 365)
    assert reduce_delivery_detail()["summarised_issues"] == 0
    assert count(Delivery) == 2


# --- (c) consent evidence after withdrawal ---------------------------------------------------


def subscribe_and_confirm(client, app, outbox, email: str) -> int:
    outbox.catcher.clear()
    client.post("/subscribe", json={"email": email, "name": "Jana Nováková"})
    process_signups()
    run_jobs(app)
    client.post(link_to(outbox.mails[-1], "/confirm/"))
    return db.session.scalar(select(Subscriber.id).filter_by(email=email))


def unsubscribe(client, outbox) -> None:
    client.post(link_to(outbox.mails[-1], "/unsubscribe/"))


def test_withdrawn_person_is_deleted_after_the_evidence_period(client, app, clock, outbox):
    subscribe_and_confirm(client, app, outbox, "odesla@seznam.cz")
    unsubscribe(client, outbox)
    stays = subscribe_and_confirm(client, app, outbox, "zustava@seznam.cz")
    with ledger_unguarded():  # back-dating evidence needs the triggers out of the way
        db.session.execute(update(ConsentEvent).values(occurred_at=utcnow() - timedelta(days=2000)))
    db.session.commit()
    left = newest(ConsentEvent.occurred_at)  # the same for both now
    with ledger_unguarded():
        db.session.execute(
            update(ConsentEvent).values(occurred_at=left).where(ConsentEvent.subscriber_id == stays)
        )
    db.session.commit()

    clock.now = left + timedelta(days=3 * 365)
    assert expire_consent_evidence() == 0
    clock.now = left + timedelta(days=3 * 365) + SECOND
    assert expire_consent_evidence() == 1

    assert db.session.scalars(select(Subscriber.email)).all() == ["zustava@seznam.cz"]
    assert {e.subscriber_id for e in db.session.scalars(select(ConsentEvent))} == {stays}
    assert count(OutgoingMail, OutgoingMail.subscriber_id != stays) == 0
    suppression = db.session.scalar(select(Suppression))
    assert suppression.reason == "withdrawn"
    assert suppression.address_hash == address_hash("odesla@seznam.cz")

    # An import cannot bring them back; the public form can, through double opt-in.
    zpravodaj = db.session.scalar(select(MailingList).filter_by(slug="zpravodaj"))
    report = transfer.import_subscribers(
        io.StringIO("email\nodesla@seznam.cz\n"), zpravodaj, "starý seznam"
    )
    assert report.imported == 0
    assert "neimportováno" in report.problems[0][1]
    subscribe_and_confirm(client, app, outbox, "odesla@seznam.cz")
    assert count(Suppression) == 0
    assert count(Subscription, Subscription.status == "confirmed") == 2


def test_last_consent_step_counts_not_the_first(client, app, clock, outbox):
    subscribe_and_confirm(client, app, outbox, "odesla@seznam.cz")
    with ledger_unguarded():
        db.session.execute(update(ConsentEvent).values(occurred_at=utcnow() - timedelta(days=2000)))
    db.session.commit()
    unsubscribe(client, outbox)  # today
    clock.now = utcnow() + timedelta(days=3 * 365 - 1)
    assert expire_consent_evidence() == 0
    clock.now = utcnow() + timedelta(days=3 * 365 + 1)
    assert expire_consent_evidence() == 1


def test_bounced_person_leaves_a_bounced_suppression(client, app, clock, outbox):
    subscribe_and_confirm(client, app, outbox, "neexistuje@seznam.cz")
    db.session.execute(update(Subscription).values(status="bounced"))
    db.session.commit()
    clock.now = utcnow() + timedelta(days=3 * 365 + 1)
    assert expire_consent_evidence() == 1
    assert db.session.scalar(select(Suppression.reason)) == "bounced"


@pytest.mark.parametrize("status", ["pending", "confirmed", "requested"])
def test_anyone_with_an_active_subscription_is_kept(client, app, clock, outbox, status):
    subscribe_and_confirm(client, app, outbox, "aktivni@seznam.cz")
    db.session.execute(update(Subscription).values(status=status))
    db.session.commit()
    clock.now = utcnow() + timedelta(days=10 * 365)
    assert expire_consent_evidence() == 0
    assert count(Subscriber) == 1


def test_zero_keeps_consent_evidence_for_ever(client, app, clock, outbox):
    app.config["CONSENT_EVIDENCE_DAYS"] = 0
    subscribe_and_confirm(client, app, outbox, "odesla@seznam.cz")
    unsubscribe(client, outbox)
    clock.now = utcnow() + timedelta(days=30 * 365)
    assert expire_consent_evidence() == 0
    assert count(Subscriber) == 1


# --- (d) when it runs ------------------------------------------------------------------------


def test_workers_purge_when_they_start(client, app):
    client.post("/subscribe", json={"email": "nikdy@seznam.cz"})
    process_signups()
    age_everything(days=45)
    run_jobs(app)
    assert count(Subscriber) == 0


def test_retention_runs_at_most_once_an_hour_over_all_workers(client, app):
    from service.jobs import redis_connection

    first = run_if_due(RETENTION)
    assert set(first) >= {"purged_unconfirmed", "summarised_issues", "expired_consent_evidence"}
    client.post("/subscribe", json={"email": "nikdy@seznam.cz"})
    process_signups()
    age_everything(days=45)
    # Another worker's periodic work within the hour reconciles but leaves retention alone.
    assert "purged_unconfirmed" not in run_periodic_work()
    assert run_if_due(RETENTION) == {}
    assert count(Subscriber) == 1
    assert RETENTION.lock_key == "zpravodaj:retention:last-run"
    ttl = redis_connection().ttl(RETENTION.lock_key)
    assert 3500 < ttl <= 3600
    # The hour is up (the key expired): the next worker runs it.
    redis_connection().delete(RETENTION.lock_key)
    assert run_periodic_work()["purged_unconfirmed"] == 1
    assert count(Subscriber) == 0


def test_an_unconfirmed_sign_up_after_withdrawing_keeps_the_evidence_and_the_withdrawal(
    client, app, outbox, clock
):
    """Confirmed, unsubscribed, then signed up again by someone (anyone can type an
    address) without confirming: the purge of unconfirmed sign-ups must not take the
    consent evidence with it, and no import may add the person back meanwhile."""
    address = "odhlasila@seznam.cz"
    client.post("/subscribe", json={"email": address})
    process_signups()
    run_jobs(app)
    client.post(link_to(outbox.mails[-1], "/confirm/"))
    run_jobs(app)
    client.post(link_to(outbox.mails[-1], "/unsubscribe/"))
    client.post("/subscribe", json={"email": address})
    process_signups()
    assert db.session.scalar(select(Subscription.status)) == "pending"
    zpravodaj = db.session.scalar(select(MailingList).filter_by(slug="zpravodaj"))

    def imported() -> int:
        report = transfer.import_subscribers(
            io.StringIO(f"email\n{address}\n"), zpravodaj, "starý seznam"
        )
        db.session.commit()
        return report.imported

    assert imported() == 0  # while the sign-up is pending

    clock.now = newest(Subscription.subscribed_at) + timedelta(days=31)
    assert purge_unconfirmed() == 1
    assert count(Subscription) == 0
    assert count(Subscriber) == 1
    actions = set(db.session.scalars(select(ConsentEvent.action)))
    assert {"signup", "confirm", "unsubscribe"} <= actions
    assert imported() == 0  # after the purge

    # The evidence goes after CONSENT_EVIDENCE_DAYS, leaving the suppression.
    clock.now = newest(ConsentEvent.occurred_at) + timedelta(days=3 * 365) + SECOND
    assert expire_consent_evidence() == 1
    assert count(Subscriber) == 0
    assert count(Suppression) == 1
    assert imported() == 0
