"""An issue's life: draft, scheduled, sending, paused, sent or cancelled.

The admin UI, the API and the scheduled-start job all go through these
functions; each checks the transition is allowed (IssueStateError, 409) and
leaves committing to the caller. Work for the workers is enqueued only after
the commit (`jobs.after_commit`), and the rows say what is unfinished, so a
lost enqueue is redone by the reconciler.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from typing import Any

from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel.speaklater import LazyString
from sqlalchemy import ColumnElement, Select, func, select, update

from .. import jobs
from ..addresses import InvalidAddress, parse_address_for_app
from ..clock import iso_utc, utcnow
from ..extensions import db
from ..mail import queue_message_bytes
from ..meetings.calendar import freeze_calendar
from ..models import (
    BatchStatus,
    Delivery,
    DeliveryBatch,
    Issue,
    IssueStatus,
    MailingList,
    Subscription,
    SubscriptionStatus,
    User,
)
from .rendering import Recipient, render_issue, skeleton_for

SUBJECT_MAX = 200
PREHEADER_MAX = 200
BODY_MAX = 200_000

# Keyed by str: `Issue.status` holds the plain string, equal to its IssueStatus.
# Lazy: each is said in the language of the request (or mail) that shows it.
STATUS_LABELS: dict[str, LazyString] = {
    IssueStatus.DRAFT: _l("koncept"),
    IssueStatus.SCHEDULED: _l("naplánováno"),
    IssueStatus.SENDING: _l("odesílá se"),
    IssueStatus.PAUSED: _l("pozastaveno"),
    IssueStatus.SENT: _l("odesláno"),
    IssueStatus.CANCELLED: _l("zrušeno"),
}


class IssueStateError(Exception):
    """The issue is not in a state that allows this; the message is in the request's language."""

    status = 409


@dataclass
class IssueInput:
    subject: str
    body: str
    preheader: str = ""


def validate_fields(subject: Any, body: Any, preheader: Any = "") -> tuple[IssueInput, dict]:
    """Clean the editable fields; the second value maps field names to errors (in the
    request's language: the admin's editor and the API show them as they are)."""
    errors: dict[str, str] = {}
    subject = subject if isinstance(subject, str) else None
    body = body if isinstance(body, str) else None
    preheader = preheader if isinstance(preheader, str) else ("" if preheader is None else None)
    if subject is None or not subject.strip():
        errors["subject"] = _("Vyplňte předmět.")
    elif not _one_line(subject):
        errors["subject"] = _("Předmět musí být na jednom řádku a bez řídicích znaků.")
    elif len(subject.strip()) > SUBJECT_MAX:
        errors["subject"] = _("Předmět může mít nejvýše %(max)d znaků.", max=SUBJECT_MAX)
    if body is None or not body.strip():
        errors["body"] = _("Vyplňte text vydání.")
    elif len(body) > BODY_MAX:
        errors["body"] = _("Text vydání může mít nejvýše %(max)d znaků.", max=BODY_MAX)
    if preheader is None:
        errors["preheader"] = _("Perex musí být text.")
    elif not _one_line(preheader):
        errors["preheader"] = _("Perex musí být na jednom řádku a bez řídicích znaků.")
    elif len(preheader.strip()) > PREHEADER_MAX:
        errors["preheader"] = _("Perex může mít nejvýše %(max)d znaků.", max=PREHEADER_MAX)
    cleaned = IssueInput(
        subject=(subject or "").strip(),
        body=(body or "").replace("\r\n", "\n"),
        preheader=(preheader or "").strip(),
    )
    return cleaned, errors


def one_line(text: str) -> str:
    """`text` with what `_one_line` refuses made spaces (a preview of a field not yet valid)."""
    return "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text)


def _one_line(text: str) -> bool:
    """No line breaks of any kind (Word's manual break is \\x0b) and no control characters:
    they would end up in a mail header."""
    return not any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in text)


def create_issue(mailing_list: MailingList, fields: IssueInput, author: User | None) -> Issue:
    issue = Issue(
        mailing_list=mailing_list,
        subject=fields.subject,
        body=fields.body,
        preheader=fields.preheader,
        created_by=author,
        status=IssueStatus.DRAFT,
    )
    db.session.add(issue)
    db.session.flush()
    return issue


def update_issue(issue: Issue, fields: IssueInput) -> None:
    """Edit a draft; a scheduled issue goes back to draft when edited."""
    _refuse_unless(issue.back_to_draft(), _("Upravit lze jen koncept."))
    issue.subject, issue.body, issue.preheader = fields.subject, fields.body, fields.preheader
    issue.updated_at = utcnow()


def duplicate(issue: Issue, author: User | None) -> Issue:
    """A new draft with the same content, e.g. to send a corrected issue again."""
    return create_issue(
        issue.mailing_list, IssueInput(issue.subject, issue.body, issue.preheader), author
    )


def schedule(issue: Issue, at: datetime) -> None:
    """Send at `at` (aware, any zone; stored as naive UTC)."""
    _require(issue, Issue.EDITABLE, _("Naplánovat lze jen koncept."))
    at_utc = at.astimezone(UTC).replace(tzinfo=None)
    if at_utc <= utcnow():
        raise IssueStateError(_("Čas odeslání musí být v budoucnosti."))
    _refuse_unless(issue.schedule(at_utc), _("Naplánovat lze jen koncept."))
    jobs.after_commit(jobs.enqueue_scheduled_start, issue.id, at_utc)


def unschedule(issue: Issue) -> None:
    """Back to draft; the scheduled job finds the issue not due and does nothing."""
    _refuse_unless(issue.unschedule(), _("Vydání není naplánované."))


def send_now(issue: Issue) -> None:
    """Snapshot the recipients now and hand the issue to the workers."""
    _refuse_unless(issue.start_sending(), _("Odeslat lze jen koncept nebo naplánované vydání."))
    begin_delivery(issue)


def begin_delivery(issue: Issue) -> None:
    """Freeze the content and the moment of the snapshot; the fan-out job does the rest.

    Counting and numbering are cheap; creating the delivery rows is not (a
    large list means many of them), so that happens in the worker, in
    batches that go out while the next ones are being created.
    """
    now = utcnow()
    issue.status = IssueStatus.SENDING
    issue.scheduled_at = issue.scheduled_at or now
    # Numbers are per list: lock the list so two issues starting at once
    # cannot take the same one (SQLite serialises writers anyway).
    db.session.execute(
        select(MailingList.id).where(MailingList.id == issue.list_id).with_for_update()
    )
    issue.snapshot_at = now
    issue.started_at = now
    issue.finished_at = None
    if issue.number is None:
        last = db.session.scalar(
            select(func.max(Issue.number)).where(Issue.list_id == issue.list_id)
        )
        issue.number = (last or 0) + 1
    rendered = render_issue(issue)
    issue.rendered_html, issue.rendered_text = rendered.html, rendered.text
    # The invitation's calendar is frozen with the body (and its reminder scheduled).
    freeze_calendar(issue)
    issue.recipient_count = db.session.scalar(recipients_query(issue, count=True)) or 0
    issue.fanout_cursor, issue.fanout_done, issue.fanout_heartbeat = 0, False, None
    issue.fanout_job_id = jobs.new_fan_out_job_id(issue.id)
    db.session.flush()
    jobs.after_commit(jobs.enqueue_fan_out, issue.id, issue.fanout_job_id)


def recipients_condition(issue: Issue) -> ColumnElement[bool]:
    """Who the issue goes to: confirmed on its list at the snapshot."""
    return (
        (Subscription.list_id == issue.list_id)
        & (Subscription.status == SubscriptionStatus.CONFIRMED)
        & (Subscription.confirmed_at <= issue.snapshot_at)
    )


def recipients_query(
    issue: Issue, *, count: bool = False, after: int = 0, limit: int = 0
) -> Select[int]:
    """Subscribers the issue goes to (`recipients_condition`), by id."""
    condition = recipients_condition(issue)
    if count:
        # At the snapshot every confirmed subscription was confirmed before it, so the
        # count leaves out `confirmed_at` and reads the (list, status, subscriber) index
        # alone: a million recipients counted without visiting their rows.
        return (
            select(func.count())
            .select_from(Subscription)
            .where(
                Subscription.list_id == issue.list_id,
                Subscription.status == SubscriptionStatus.CONFIRMED,
            )
        )
    query = (
        select(Subscription.subscriber_id)
        .where(condition, Subscription.subscriber_id > after)
        .order_by(Subscription.subscriber_id)
    )
    return query.limit(limit) if limit else query


def pause(issue: Issue) -> None:
    """Stop sending after the message in flight; nothing is lost, resume continues."""
    _refuse_unless(issue.pause(), _("Pozastavit lze jen vydání, které se odesílá."))


def resume(issue: Issue) -> None:
    _refuse_unless(issue.resume(), _("Pokračovat lze jen v pozastaveném vydání."))
    _enqueue_unfinished(issue)


def cancel(issue: Issue) -> None:
    """Stop for good: nobody else gets it; what was sent stays sent.

    The deliveries are cancelled by a job that walks the issue's batches, one
    per transaction (workers/delivery.py `cancel_batches`): the editor's request
    stays short whatever the issue's size, and the counts show the unreached
    as cancelled at once (`delivery_counts`).
    """
    if issue.status == IssueStatus.CANCELLED:
        raise IssueStateError(_("Vydání už je zrušené."))
    _refuse_unless(issue.cancel(), _("Odeslané vydání už zrušit nelze."))
    jobs.after_commit(jobs.enqueue_cancel, issue.id)


def resend_unreached(issue: Issue) -> int:
    """Send again to those not reached (failed, cancelled, pending); never to the sent.

    Returns how many deliveries go out again. Only the batches are touched
    here (a few thousand rows for a million recipients): each batch with
    someone unreached is queued again, marked `resend`, and its own job puts
    its deliveries back before sending. The sent ones are untouched, and a
    delivery is sent at most once by its claim, so nobody gets the issue twice.
    """
    _require(issue, Issue.FINISHED, _("Znovu odeslat lze jen dokončené nebo zrušené vydání."))
    unreached = DeliveryBatch.total_count - DeliveryBatch.sent_count - DeliveryBatch.skipped_count
    count, created = db.session.execute(
        select(
            func.coalesce(func.sum(unreached), 0),
            func.coalesce(func.sum(DeliveryBatch.total_count), 0),
        ).where(DeliveryBatch.issue_id == issue.id)
    ).one()
    if not issue.fanout_done:
        # Cancelled before the fan-out reached everyone: those without a row yet go too.
        count += max(issue.recipient_count - created, 0)
    if not count and issue.fanout_done:
        raise IssueStateError(_("Vydání dostali všichni, komu šlo doručit."))
    _refuse_unless(issue.resend(), _("Znovu odeslat lze jen dokončené nebo zrušené vydání."))
    db.session.execute(
        update(DeliveryBatch)
        .where(DeliveryBatch.issue_id == issue.id, unreached > 0)
        .values(status=BatchStatus.QUEUED, owner=None, heartbeat=None, attempts=0, resend=True)
    )
    _enqueue_unfinished(issue)
    return int(count)


def _enqueue_unfinished(issue: Issue) -> None:
    """After commit: the fan-out if it did not finish, and every queued batch."""
    lease = timedelta(seconds=current_app.config["BATCH_LEASE_SECONDS"])
    fan_out_active = (
        issue.fanout_heartbeat is not None and issue.fanout_heartbeat > utcnow() - lease
    )
    if not issue.fanout_done and not fan_out_active:
        issue.fanout_job_id = jobs.new_fan_out_job_id(issue.id)
        jobs.after_commit(jobs.enqueue_fan_out, issue.id, issue.fanout_job_id)
    batches = []
    for batch in db.session.scalars(
        select(DeliveryBatch).where(
            DeliveryBatch.issue_id == issue.id,
            DeliveryBatch.status.in_((BatchStatus.QUEUED, BatchStatus.RUNNING)),
        )
    ):
        if batch.status == BatchStatus.QUEUED:
            batch.job_id = jobs.new_batch_job_id(batch.id)
            batches.append((batch.id, batch.job_id))
    if batches:
        jobs.after_commit(jobs.enqueue_batches, batches)


def _require(issue: Issue, allowed: tuple[IssueStatus, ...], message: str) -> None:
    if issue.status not in allowed:
        raise IssueStateError(message)


def _refuse_unless(moved: bool, message: str) -> None:
    """A refused transition of the issue (models.Issue) is a 409 with a translated message."""
    if not moved:
        raise IssueStateError(message)


# --- progress ---------------------------------------------------------------


# The recent rate is read from the issue's last sends, at most this many: a bounded
# read whatever the issue's size and its rate (ix_delivery_issue_sent_at, newest first).
# Each delivery's `sent_at` already says how many went out in the last minute; the
# per-batch counters keep no time, and a sample of counts kept in Redis would be a
# second record of the sends, written on the per-message path and lost with Redis.
RATE_SAMPLE = 200


def delivery_counts(issue: Issue) -> dict[str, int]:
    """total, sent, failed, pending (+ skipped and cancelled) for the issue.

    Summed from the per-batch counters (service/batch_counts.py): one row per
    few hundred recipients, so a poll costs the same whatever the issue's size.
    """
    return _counts_and_recent(issue)[0]


def _counts_and_recent(
    issue: Issue, since: datetime | None = None
) -> tuple[dict[str, int], int, datetime | None]:
    """The counts, and (with `since`) how many of the last RATE_SAMPLE sends came after
    `since` and the oldest of those: one round trip for the whole progress bar."""
    if issue.delivery_summary is not None:
        # Retention replaced the delivery rows by these final counts (workers/retention.py).
        return dict(issue.delivery_summary), 0, None
    columns: list[ColumnElement[Any]] = [
        func.sum(DeliveryBatch.total_count),
        func.sum(DeliveryBatch.sent_count),
        func.sum(DeliveryBatch.failed_count),
        func.sum(DeliveryBatch.skipped_count),
        func.sum(DeliveryBatch.cancelled_count),
    ]
    if since is not None:
        last_sends = (
            select(Delivery.sent_at)
            .where(Delivery.issue_id == issue.id, Delivery.sent_at.is_not(None))
            .order_by(Delivery.sent_at.desc())
            .limit(RATE_SAMPLE)
            .subquery()
        )
        recent = select(last_sends.c.sent_at).where(last_sends.c.sent_at >= since).subquery()
        columns += [
            select(func.count()).select_from(recent).scalar_subquery(),
            select(func.min(recent.c.sent_at)).scalar_subquery(),
        ]
    row = db.session.execute(select(*columns).where(DeliveryBatch.issue_id == issue.id)).one()
    created, sent, failed, skipped, cancelled = (int(n or 0) for n in row[:5])
    total = created if issue.fanout_done else max(issue.recipient_count, created)
    pending = max(total - sent - failed - skipped - cancelled, 0)
    if issue.status == IssueStatus.CANCELLED:
        # Nobody still pending will get it: cancelled, even before the cancel job
        # reached their batch or the fan-out gave them a delivery.
        cancelled, pending = cancelled + pending, 0
    counts = {
        "total": total,
        "sent": sent,
        "failed": failed,
        "pending": pending,
        "skipped": skipped,
        "cancelled": cancelled,
    }
    if since is None:
        return counts, 0, None
    oldest: datetime | None = row[6]
    return counts, int(row[5] or 0), oldest


def recent_rate(sent: int, oldest: datetime | None, now: datetime) -> float:
    """Messages per second over the last window, from the `sent` sends inside it, the
    oldest of them at `oldest` (at most RATE_SAMPLE, the newest).

    Measured from the window's first send, not from the window's start: an issue
    that began sending two seconds ago has sent for two seconds, not for a
    minute, and dividing by the whole window made its rate thirty times too low
    and its time left thirty times too long. (A resumed issue's window starts
    at the resume: see `progress`.) The sends after the first one are what that
    span holds (n sends, n - 1 gaps); a single send tells no rate yet. The span
    is at least a second, so a batch sent in one burst does not promise an
    instant end.
    """
    if sent < 2 or oldest is None:
        return 0.0
    span = max((now - oldest).total_seconds(), 1.0)
    return (sent - 1) / span


def progress(issue: Issue) -> dict[str, Any]:
    """Counts plus the recent rate (messages per minute) and an estimate of the time left,
    read in one statement.

    The rate's window is the last PROGRESS_RATE_WINDOW_SECONDS, but starts no earlier
    than the issue last started or resumed sending: the sends before a pause, and the
    pause itself, say nothing of the rate now.
    """
    rate_window = timedelta(seconds=current_app.config["PROGRESS_RATE_WINDOW_SECONDS"])
    now = utcnow()
    since = None
    if issue.status == IssueStatus.SENDING:
        since = now - rate_window
        if issue.sending_resumed_at is not None:
            since = max(since, issue.sending_resumed_at)
    counts, recent, oldest = _counts_and_recent(issue, since)
    per_second = recent_rate(recent, oldest, now)
    eta = round(counts["pending"] / per_second) if per_second and counts["pending"] else None
    done = counts["total"] - counts["pending"]
    return {
        "id": issue.id,
        "status": issue.status,
        "status_label": str(STATUS_LABELS[issue.status]),
        "counts": counts,
        "percent": round(100 * done / counts["total"], 1) if counts["total"] else 100.0,
        "rate_per_minute": round(per_second * 60),
        "eta_seconds": eta,
        "started_at": iso_utc(issue.started_at),
        "finished_at": iso_utc(issue.finished_at),
        "scheduled_at": iso_utc(issue.scheduled_at),
    }


# --- previews and test sends ------------------------------------------------

TEST_SUBJECT_PREFIX = "[TEST] "
MAX_TEST_ADDRESSES = 10


@dataclass
class Preview:
    """The mail exactly as a subscriber would get it, parsed back into its parts."""

    subject: str
    html: str
    text: str
    raw: bytes


def preview(issue: Issue) -> Preview:
    """Build a sample copy through the same skeleton the workers use, then read it back."""
    skeleton = skeleton_for(issue)
    raw = skeleton.personalise(
        Recipient(address="ukazka@example.org", name="Ukázkový odběratel"),
        skeleton.new_message_id(),
    )
    msg = message_from_bytes(raw, policy=policy.default)
    text, html = msg.get_body(("plain",)), msg.get_body(("html",))
    if text is None or html is None:
        raise ValueError("the issue's skeleton built a mail without its text or HTML part")
    return Preview(
        subject=str(msg["Subject"]), html=html.get_content(), text=text.get_content(), raw=raw
    )


def parse_test_addresses(value: Any) -> tuple[list[str], str | None]:
    """Addresses for a test send (comma, semicolon, space or newline separated), or an error."""
    if isinstance(value, list):
        parts = [p for p in value if isinstance(p, str)]
        if len(parts) != len(value):
            return [], _("Adresy musí být text.")
    elif isinstance(value, str):
        parts = value.replace(";", ",").replace("\n", ",").replace(" ", ",").split(",")
    else:
        return [], _("Zadejte alespoň jednu adresu.")
    parts = [p.strip() for p in parts if p.strip()]
    if not parts:
        return [], _("Zadejte alespoň jednu adresu.")
    if len(parts) > MAX_TEST_ADDRESSES:
        return [], _(
            "Najednou lze poslat zkoušku nejvýše na %(max)d adres.", max=MAX_TEST_ADDRESSES
        )
    addresses = []
    for part in parts:
        try:
            address = parse_address_for_app(part)
        except InvalidAddress:
            return [], _("Neplatný e-mail: %(address)s", address=part)
        addresses.append(address.ascii_email or address.email)
    return list(dict.fromkeys(addresses)), None


def send_test(issue: Issue, addresses: list[str]) -> int:
    """Queue a test copy (subject marked [TEST], sample personal links) to each address."""
    skeleton = skeleton_for(issue, subject_prefix=TEST_SUBJECT_PREFIX)
    for address in addresses:
        message_id = skeleton.new_message_id()
        raw = skeleton.personalise(Recipient(address=address), message_id)
        queue_message_bytes(raw, message_id=message_id, kind="issue_test", recipient=address)
    return len(addresses)
