"""Retention: personal data is kept only as long as the privacy notice says.

Four rules, each a number of days in the config (0 keeps for ever), each
stated in the privacy notice (templates/consent/privacy.md) from the same
settings:

- PENDING_PURGE_DAYS: a sign-up never confirmed, or a working-group
  invitation never accepted (both "pending"), is deleted. A person who never
  confirmed never consented; keeping their address serves nobody.
- DELIVERY_DETAIL_DAYS: an issue finished that long ago keeps only its final
  counts (Issue.delivery_summary); its per-recipient delivery rows go, and so
  do sent or failed mails (stored whole, with personal links that still work)
  and bounce reports older than that.
- BOUNCE_RAW_DAYS: a bounce report kept whole (for the subscriber's page) is
  emptied; the bounce's code, reason and the server's words stay.
- CONSENT_EVIDENCE_DAYS: a person with no active subscription whose last
  consent step is that old is deleted whole. The evidence of consent was
  kept to prove past mailings were lawful; after that period (the general
  three-year limitation period by default) it has no purpose. A keyed hash of
  the address stays as a suppression so that an import cannot add them back;
  the public form still can, through double opt-in.

`run_retention` applies them; the workers run it at most once an hour over
all of them (the schedule of periodic work is in schedule.py).
Deletions go in chunks, each its own short transaction, so a large backlog
never holds locks on tables the delivery engine writes to.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import ColumnElement, delete, exists, func, or_, select, update

from service import ledger, suppression
from service.clock import utcnow
from service.consent import CONSENTING_ACTIONS
from service.extensions import db
from service.issues.sending import delivery_counts
from service.models import (
    ACTIVE_SUBSCRIPTION_STATUSES,
    Bounce,
    ConsentEvent,
    Delivery,
    DeliveryBatch,
    Issue,
    MailStatus,
    OutgoingMail,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    SuppressionReason,
    rows_matched,
)
from service.subscriptions import actions

log = logging.getLogger(__name__)

# Rows deleted per transaction.
CHUNK = 2000
# Subscribers deleted per transaction (each takes its events, mails, subscriptions).
SUBSCRIBER_CHUNK = 200
# Statuses in which a person still wants mail (or a coordinator's answer).
ACTIVE_STATUSES = ACTIVE_SUBSCRIPTION_STATUSES
FINISHED_ISSUE_STATUSES = Issue.FINISHED


def run_retention() -> dict[str, int]:
    """Apply every rule now; counts of what went, by kind."""
    done = {"purged_unconfirmed": purge_unconfirmed()}
    done.update(reduce_delivery_detail())
    done["purged_raw_bounces"] = purge_raw_bounces()
    done["expired_consent_evidence"] = expire_consent_evidence()
    return done


def _cutoff(setting: str) -> datetime | None:
    """The moment before which the rule applies, or None when the setting keeps for ever."""
    days = current_app.config[setting]
    if not days or days <= 0:
        return None
    return utcnow() - timedelta(days=days)


# --- (a) sign-ups never confirmed, invitations never accepted ---------------------------


def purge_unconfirmed() -> int:
    """Delete pending subscriptions older than the limit, and people left with none
    who never consented to anything.

    "Pending" is a newsletter sign-up never confirmed, a group join request
    whose address was never confirmed, and a group invitation never accepted
    (re-inviting restarts the clock: `subscribed_at` is the last invitation).
    """
    cutoff = _cutoff("PENDING_PURGE_DAYS")
    if cutoff is None:
        return 0
    purged = rows_matched(
        delete(Subscription).where(
            Subscription.status == SubscriptionStatus.PENDING, Subscription.subscribed_at < cutoff
        )
    )
    db.session.commit()
    removed = _delete_subscribers_where(
        Subscriber.created_at < cutoff,
        ~exists().where(Subscription.subscriber_id == Subscriber.id),
        # Someone who once consented keeps the evidence (and their withdrawal)
        # for CONSENT_EVIDENCE_DAYS, even when a later sign-up went unconfirmed:
        # rule (c) deletes them then, leaving a suppression.
        ~exists().where(
            ConsentEvent.subscriber_id == Subscriber.id,
            ConsentEvent.action.in_(CONSENTING_ACTIONS),
        ),
    )
    if purged or removed:
        log.info(
            "retention: purged %d unconfirmed subscription(s) or invitation(s), %d subscriber(s)",
            purged,
            removed,
        )
    return purged


def _delete_subscribers_where(
    *conditions: ColumnElement[bool],
    suppress: Callable[[list[int]], dict[int, SuppressionReason]] | None = None,
) -> int:
    """Delete every subscriber matching `conditions`, a chunk per transaction.

    Each chunk is locked and matched again before deleting (PostgreSQL: FOR
    UPDATE, the lock a sign-up takes too; SKIP LOCKED leaves one in progress
    for the next run), so a person who signs up again meanwhile is kept.
    `suppress(ids)` gives the suppression reason to leave for each, if any; people
    leaving a suppression once consented, so mails to coordinators naming them go too.
    Keyset pagination by id: each subscriber is looked at once per run.
    """
    deleted = 0
    last_id = 0
    while True:
        ids = db.session.scalars(
            select(Subscriber.id)
            .where(Subscriber.id > last_id, *conditions)
            .order_by(Subscriber.id)
            .limit(SUBSCRIBER_CHUNK)
        ).all()
        if not ids:
            return deleted
        last_id = ids[-1]
        rows = db.session.execute(
            select(Subscriber.id, Subscriber.email_key, Subscriber.ascii_email)
            .where(Subscriber.id.in_(ids), *conditions)
            .with_for_update(of=Subscriber, skip_locked=True)
        ).all()
        ids = [row.id for row in rows]
        if suppress is not None:
            reasons = suppress(ids)
            for row in rows:
                suppression.suppress(row.email_key, reasons[row.id])
            db.session.flush()
            # Mails to coordinators that named them, and test copies sent to
            # them, go too, as on erasure.
            named = actions.mails_naming(
                [form for row in rows for form in (row.email_key, row.ascii_email)]
            )
            db.session.execute(delete(OutgoingMail).where(OutgoingMail.id.in_(named)))
        _delete_subscribers(ids)
        db.session.commit()
        deleted += len(ids)


def _delete_subscribers(ids: list[int]) -> None:
    """Everything about these subscribers; deliveries and bounces go by ON DELETE CASCADE.

    Bulk statements, as `actions.erase`: consent events are append-only (the
    database refuses it), and deleting a person's whole ledger with them is
    the sanctioned exception, through `ledger.purging`.
    """
    if not ids:
        return
    with ledger.purging(db.session):
        for model in (ConsentEvent, OutgoingMail, Subscription):
            db.session.execute(delete(model).where(model.subscriber_id.in_(ids)))
        db.session.execute(delete(Subscriber).where(Subscriber.id.in_(ids)))


# --- raw bounce reports ---------------------------------------------------------------------


def purge_raw_bounces() -> int:
    """Empty the raw reports of bounces older than BOUNCE_RAW_DAYS; how many were emptied."""
    cutoff = _cutoff("BOUNCE_RAW_DAYS")
    if cutoff is None:
        return 0
    done = 0
    while True:
        ids = db.session.scalars(
            select(Bounce.id)
            .where(Bounce.raw.is_not(None), Bounce.received_at < cutoff)
            .limit(CHUNK)
        ).all()
        if not ids:
            return done
        db.session.execute(
            update(Bounce)
            .where(Bounce.id.in_(ids))
            .values(raw=None)
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
        done += len(ids)


# --- (b) delivery detail -------------------------------------------------------------------


def reduce_delivery_detail() -> dict[str, int]:
    """Old issues keep their counts only; old mails and bounce reports are deleted."""
    cutoff = _cutoff("DELIVERY_DETAIL_DAYS")
    if cutoff is None:
        return {
            "summarised_issues": 0,
            "deleted_deliveries": 0,
            "deleted_mails": 0,
            "deleted_bounces": 0,
        }
    issues, deliveries = _summarise_old_issues(cutoff)
    mails = _delete_in_chunks(
        OutgoingMail,
        OutgoingMail.status.in_((MailStatus.SENT, MailStatus.FAILED)),
        func.coalesce(OutgoingMail.sent_at, OutgoingMail.created_at) < cutoff,
    )
    bounces = _delete_in_chunks(Bounce, Bounce.received_at < cutoff)
    if issues or deliveries or mails or bounces:
        log.info(
            "retention: %d issue(s) reduced to counts (%d delivery row(s) deleted), "
            "%d sent or failed mail(s) and %d bounce report(s) deleted",
            issues,
            deliveries,
            mails,
            bounces,
        )
    return {
        "summarised_issues": issues,
        "deleted_deliveries": deliveries,
        "deleted_mails": mails,
        "deleted_bounces": bounces,
    }


def _summarise_old_issues(cutoff: datetime) -> tuple[int, int]:
    """Store final counts of issues finished before `cutoff`, then delete their rows.

    The counts are written first, in their own transaction, and only an issue
    still finished and still past the cutoff gets them (a conditional UPDATE:
    an editor's "send again" at that moment wins). Deleting the rows follows in
    chunks; a run interrupted between the two finishes the deletion next time,
    since such an issue has a summary and rows left.
    """
    has_rows = or_(
        exists().where(Delivery.issue_id == Issue.id),
        exists().where(DeliveryBatch.issue_id == Issue.id),
    )
    candidates = db.session.scalars(
        select(Issue.id)
        .where(
            Issue.status.in_(FINISHED_ISSUE_STATUSES),
            Issue.finished_at < cutoff,
            has_rows,
        )
        .order_by(Issue.id)
    ).all()
    db.session.commit()
    summarised = deleted = 0
    for issue_id in candidates:
        issue = db.session.get(Issue, issue_id)
        if issue is None:
            continue
        if issue.delivery_summary is None:
            counts = delivery_counts(issue)
            changed = rows_matched(
                update(Issue)
                .where(
                    Issue.id == issue_id,
                    Issue.status.in_(FINISHED_ISSUE_STATUSES),
                    Issue.finished_at < cutoff,
                )
                .values(delivery_summary=counts)
                .execution_options(synchronize_session=False)
            )
            db.session.commit()
            if not changed:
                continue
            summarised += 1
        deleted += _delete_issue_rows(issue_id)
    return summarised, deleted


def _delete_issue_rows(issue_id: int) -> int:
    """Delivery rows, then batches, of one summarised issue, a chunk per transaction."""
    still_finished = select(Issue.id).where(
        Issue.id == issue_id, Issue.status.in_(FINISHED_ISSUE_STATUSES)
    )
    deleted = 0
    while True:
        if db.session.scalar(still_finished) is None:
            break  # sent again meanwhile: leave what is left alone
        ids = db.session.scalars(
            select(Delivery.id).where(Delivery.issue_id == issue_id).limit(CHUNK)
        ).all()
        if not ids:
            break
        deleted += rows_matched(delete(Delivery).where(Delivery.id.in_(ids)))
        db.session.commit()
    if db.session.scalar(still_finished) is not None:
        db.session.execute(delete(DeliveryBatch).where(DeliveryBatch.issue_id == issue_id))
    db.session.commit()
    return deleted


def _delete_in_chunks(
    model: type[OutgoingMail] | type[Bounce], *conditions: ColumnElement[bool]
) -> int:
    deleted = 0
    query = select(model.id).where(*conditions).order_by(model.id).limit(CHUNK)
    while ids := db.session.scalars(query).all():
        deleted += rows_matched(delete(model).where(model.id.in_(ids)))
        db.session.commit()
    return deleted


# --- (c) consent evidence after withdrawal -----------------------------------------------


def expire_consent_evidence() -> int:
    """Delete people who left everything and whose last consent step is older than the limit.

    Each leaves a suppression: "bounced" when one of their subscriptions
    bounced (the address does not work), else "withdrawn".
    """
    cutoff = _cutoff("CONSENT_EVIDENCE_DAYS")
    if cutoff is None:
        return 0
    last_step = (
        select(func.max(ConsentEvent.occurred_at))
        .where(ConsentEvent.subscriber_id == Subscriber.id)
        .scalar_subquery()
    )
    deleted = _delete_subscribers_where(
        ~exists().where(
            Subscription.subscriber_id == Subscriber.id,
            Subscription.status.in_(ACTIVE_STATUSES),
        ),
        func.coalesce(last_step, Subscriber.created_at) < cutoff,
        suppress=_suppression_reasons,
    )
    if deleted:
        log.info("retention: deleted %d former subscriber(s) past consent evidence", deleted)
    return deleted


def _suppression_reasons(ids: list[int]) -> dict[int, SuppressionReason]:
    """Why each leaves a suppression: a bounced subscription means the address does not
    work ("bounced"); otherwise they withdrew ("withdrawn")."""
    bounced = set(
        db.session.scalars(
            select(Subscription.subscriber_id).where(
                Subscription.subscriber_id.in_(ids),
                Subscription.status == SubscriptionStatus.BOUNCED,
            )
        )
    )
    return {
        i: SuppressionReason.BOUNCED if i in bounced else SuppressionReason.WITHDRAWN for i in ids
    }
