"""The data model. The database is the source of truth; Redis only carries work.

Every piece of work (a mail to send) is a row here before it is enqueued, so a
reconciler can always find what is unfinished (DESIGN.md §3).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    ColumnElement,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    exists,
    false,
    select,
    text,
    update,
)
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, Session, UOWTransaction, mapped_column, relationship
from sqlalchemy.schema import CreateIndex
from sqlalchemy.sql.compiler import DDLCompiler
from sqlalchemy.sql.dml import UpdateBase

from .clock import utcnow
from .extensions import Model, db


class ListKind(StrEnum):
    """What a list is: a newsletter (public sign-up) or a working group (members only)."""

    NEWSLETTER = "newsletter"
    GROUP = "group"


LIST_KINDS = tuple(k.value for k in ListKind)
SLUG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
SLUG_MAX = 64


def is_valid_slug(slug: str) -> bool:
    """Lowercase letters, digits and hyphens: what a list's slug may be (and URLs may name)."""
    return 0 < len(slug) <= SLUG_MAX and set(slug) <= SLUG_CHARS


class SubscriptionStatus(StrEnum):
    """Where a subscription (or a working group membership) stands.

    Newsletter: pending -> confirmed -> unsubscribed; bounced when the address
    stopped accepting mail. A working group's extra states: an invitation not
    yet accepted is "pending"; a join request with a confirmed address awaits
    the coordinator ("requested") and ends "confirmed" or "declined".
    """

    PENDING = "pending"
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    REQUESTED = "requested"
    DECLINED = "declined"


# The statuses a newsletter subscription can have (counted on the dashboard and the API).
SUBSCRIPTION_STATUSES = tuple(
    s.value
    for s in (
        SubscriptionStatus.PENDING,
        SubscriptionStatus.CONFIRMED,
        SubscriptionStatus.UNSUBSCRIBED,
        SubscriptionStatus.BOUNCED,
    )
)


class GroupVisibility(StrEnum):
    """Whether a working group is listed with a join request, or reached by invitation only."""

    PUBLIC = "public"
    INVITE = "invite"


GROUP_VISIBILITIES = tuple(v.value for v in GroupVisibility)
# Who members represent (issue 4); keys are stored, labels shown.
INSTITUTION_TYPES = {
    "obec-socialni": "obecní úřad – sociální odbor",
    "obec-bytovy": "obecní úřad – bytový/majetkový odbor",
    "ospod": "OSPOD",
    "urad-prace": "Úřad práce",
    "nno": "nezisková organizace",
    "poskytovatel": "poskytovatel sociálních služeb",
    "zdravotnictvi": "zdravotnické zařízení",
    "pronajimatel": "soukromý pronajímatel",
    "domovnik": "domovník",
    "apk": "asistent prevence kriminality",
    "skola": "škola",
    "verejnost": "veřejnost",
    "politika": "politická reprezentace",
    "spolek": "spolek občanů",
    "zastupce": "zástupce lidí v bytové nouzi",
    "jine": "jiné",
}


class UserRole(StrEnum):
    ADMIN = "admin"
    EDITOR = "editor"
    COORDINATOR = "coordinator"


USER_ROLES = tuple(r.value for r in UserRole)


class IssueStatus(StrEnum):
    """draft -> (scheduled ->) sending <-> paused -> sent; cancelled from any but sent."""

    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    SENT = "sent"
    CANCELLED = "cancelled"


class DeliveryStatus(StrEnum):
    """pending -> sending -> sent | failed; skipped when suppressed at send time;
    cancelled when the issue was cancelled before reaching it."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class BatchStatus(StrEnum):
    """queued -> running (leased by a worker) -> done; back to queued when the lease lapses."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"


class MailStatus(StrEnum):
    """An outgoing mail: queued -> sending -> sent | failed (queued again after a 4xx)."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class ImportStatus(StrEnum):
    """A subscriber import from the admin: queued -> running (leased by a worker) -> done
    or failed; back to queued when the lease lapses."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class SuppressionReason(StrEnum):
    ERASED = "erased"
    BOUNCED = "bounced"
    WITHDRAWN = "withdrawn"


class BounceKind(StrEnum):
    HARD = "hard"
    SOFT = "soft"


class ConsentTextKind(StrEnum):
    """The newsletter form's consent text, a working group join form's, or the privacy notice."""

    CONSENT = "consent"
    GROUP_CONSENT = "group_consent"
    PRIVACY = "privacy"


class MeetingMethod(StrEnum):
    """The iCalendar METHOD an announcement about a meeting carries."""

    REQUEST = "REQUEST"
    CANCEL = "CANCEL"


class PartStat(StrEnum):
    """A member's answer to a meeting invitation, as iCalendar's PARTSTAT names it."""

    NEEDS_ACTION = "NEEDS-ACTION"
    ACCEPTED = "ACCEPTED"
    TENTATIVE = "TENTATIVE"
    DECLINED = "DECLINED"


class ResponseChannel(StrEnum):
    """Where an answer came from: the RSVP page, a calendar app's REPLY, the coordinator."""

    WEB = "web"
    CALENDAR = "calendar"
    COORDINATOR = "coordinator"


def one_of(column: str, values: Iterable[str], name: str | None = None) -> CheckConstraint:
    """A CHECK that `column` holds one of `values` (NULL passes, as SQL's IN has it).

    Named `ck_<table>_<name or column>` by the naming convention, so a
    migration can drop it again on SQLite too.
    """
    allowed = ", ".join(f"'{value}'" for value in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=name or column)


def partial_index(name: str, *columns: str, where: str, unique: bool = False) -> Index:
    """An index of the rows that match `where` (SQLite and PostgreSQL both have them).

    Not written `sqlite_where=…, postgresql_where=…`: SQLAlchemy checks such
    arguments by importing their dialects, which loaded the PostgreSQL dialect
    (~2.5 MB) into every process on SQLite and SQLite's into every one on
    PostgreSQL. The WHERE is added to the index's CREATE by `_create_index`;
    the migrations, which run only in `zpravodaj db`, keep the dialects' words.
    """
    return Index(name, *columns, unique=unique, info={"where": text(where)})


@compiles(CreateIndex)
def _create_index(create: CreateIndex, compiler: DDLCompiler, **kw: Any) -> str:
    """CREATE INDEX as the dialect writes it, with a `partial_index`'s WHERE."""
    ddl = compiler.visit_create_index(create, **kw)
    where = create.element.info.get("where")
    if where is None:
        return ddl
    condition = compiler.sql_compiler.process(where, include_table=False, literal_binds=True)
    return f"{ddl} WHERE {condition}"


class TransitionRefused(Exception):
    """A status change the row's current status does not allow."""


def guarded_transition(
    model: type[Any],
    row_id: int,
    allowed: Iterable[str],
    new: str,
    *conditions: ColumnElement[bool],
    **values: Any,
) -> bool:
    """Set the row's status to `new` (and `values`) only while it is one of `allowed`.

    One conditional UPDATE rather than read-then-write: two clicks on a link,
    two coordinators, the API and a worker may act on one row at the same
    moment, and only one of them matches it; the UPDATE holds the row (on
    SQLite the database) until commit. `conditions` narrow it further. Returns
    whether the row moved. Objects already loaded are not touched: see `transition`.
    """
    statement = (
        update(model)
        .where(model.id == row_id, model.status.in_(tuple(allowed)), *conditions)
        .values(status=new, **values)
        .execution_options(synchronize_session=False)
    )
    return rows_matched(statement) == 1


def rows_matched(statement: UpdateBase) -> int:
    """Run an UPDATE or DELETE in the session and return how many rows it matched."""
    # Session.execute is typed to return a plain Result whatever the
    # statement; for DML it is the CursorResult, which has the count.
    return cast(CursorResult[Any], db.session.execute(statement)).rowcount


def transition(row: Any, allowed: Iterable[str], new: str, **values: Any) -> bool:
    """`guarded_transition` of a loaded row, which is then read back (whether it moved or not)."""
    moved = guarded_transition(type(row), row.id, allowed, new, **values)
    db.session.refresh(row)
    return moved


def new_public_key() -> str:
    """An opaque random id for signed links: tokens never carry the address or a row id."""
    return secrets.token_urlsafe(12)


class MailingList(Model):
    """A newsletter (public sign-up) or a working group (members only)."""

    __tablename__ = "mailing_list"
    __table_args__ = (one_of("kind", ListKind), one_of("visibility", GroupVisibility))
    # `language` comes from its server default, read when first used (see Subscriber).
    __mapper_args__ = {"eager_defaults": False}  # noqa: RUF012

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16), default=ListKind.NEWSLETTER)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Working groups only (kind "group").
    municipality: Mapped[str] = mapped_column(String(120), default="")
    theme: Mapped[str] = mapped_column(String(200), default="")
    department: Mapped[str] = mapped_column(String(300), default="")  # who organises it
    meeting_place: Mapped[str] = mapped_column(String(300), default="")
    meeting_rhythm: Mapped[str] = mapped_column(String(200), default="")  # "every 2nd Tuesday"
    visibility: Mapped[str] = mapped_column(String(16), default=GroupVisibility.PUBLIC)
    # The language its issues are written in ("cs" or "en", service/i18n.py): their
    # mails' fixed parts (footer, meeting box), the meeting announcements and the
    # coordinators' notices follow it, whatever the reader's own language.
    language: Mapped[str] = mapped_column(String(8), server_default="cs")

    def __repr__(self) -> str:
        return f"<MailingList {self.slug}>"


class Subscriber(Model):
    """One person, identified by the case-folded normalised address."""

    __tablename__ = "subscriber"
    # `language` comes from its server default and is read when first used, not
    # returned by every INSERT (which would name it even to an older schema).
    __mapper_args__ = {"eager_defaults": False}  # noqa: RUF012

    id: Mapped[int] = mapped_column(primary_key=True)
    public_key: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_key)
    # As email-validator normalises it (Unicode domain): what the person sees.
    email: Mapped[str] = mapped_column(String(320))
    # Case-folded `email`: one subscriber per address whatever the capitals.
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    # What goes to the SMTP server: ASCII domain (IDNA); None when the local
    # part itself is non-ASCII and the mail needs SMTPUTF8.
    ascii_email: Mapped[str | None] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200), default="")
    # "cs" or "en": the language of every mail to them and of their personal pages;
    # the page they signed up on sets it, the preferences page changes it.
    language: Mapped[str] = mapped_column(String(8), server_default="cs")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Bounces before this moment no longer count (an administrator reactivated
    # the address after fixing the cause).
    bounce_reset_at: Mapped[datetime | None]

    subscriptions: Mapped[list[Subscription]] = relationship(
        back_populates="subscriber", cascade="all, delete-orphan"
    )

    @property
    def envelope_address(self) -> str:
        """The address for RCPT TO."""
        return self.ascii_email or self.email

    def __repr__(self) -> str:
        return f"<Subscriber {self.id}>"


class Subscription(Model):
    """A subscriber's membership of one list, with its current status."""

    __tablename__ = "subscription"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "list_id"),
        # Keyset pagination of an issue's recipients walks this index.
        Index("ix_subscription_list_status_subscriber", "list_id", "status", "subscriber_id"),
        one_of("status", SubscriptionStatus),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscriber.id", ondelete="CASCADE"))
    list_id: Mapped[int] = mapped_column(ForeignKey("mailing_list.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default=SubscriptionStatus.PENDING)
    subscribed_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]
    # A working group member's details (empty for newsletters).
    organization: Mapped[str] = mapped_column(String(200), default="")
    institution: Mapped[str] = mapped_column(String(32), default="")  # INSTITUTION_TYPES key
    function: Mapped[str] = mapped_column(String(200), default="")

    subscriber: Mapped[Subscriber] = relationship(back_populates="subscriptions")
    mailing_list: Mapped[MailingList] = relationship()

    # Guarded transitions: each is one conditional UPDATE (`guarded_transition`)
    # and returns whether this call moved the row; a repeated or concurrent
    # second call finds it moved already and returns False.

    def confirm(self, now: datetime | None = None) -> bool:
        """Double opt-in done (the confirmation link, or an accepted invitation)."""
        return transition(
            self,
            (SubscriptionStatus.PENDING,),
            SubscriptionStatus.CONFIRMED,
            confirmed_at=now or utcnow(),
            unsubscribed_at=None,
        )

    def unsubscribe(self, now: datetime | None = None) -> bool:
        """The person leaves (link, one-click); a join request waiting for a coordinator stays."""
        return transition(
            self,
            (SubscriptionStatus.PENDING, SubscriptionStatus.CONFIRMED),
            SubscriptionStatus.UNSUBSCRIBED,
            unsubscribed_at=now or utcnow(),
        )

    def remove(self) -> bool:
        """A coordinator takes a member, an open invitation or a join request out of a group."""
        return transition(
            self,
            ACTIVE_SUBSCRIPTION_STATUSES,
            SubscriptionStatus.UNSUBSCRIBED,
            unsubscribed_at=utcnow(),
        )

    def await_approval(self) -> bool:
        """A join request's address is confirmed: now it waits for a coordinator."""
        return transition(self, (SubscriptionStatus.PENDING,), SubscriptionStatus.REQUESTED)

    def approve(self) -> bool:
        """A coordinator accepts a join request."""
        return transition(
            self,
            (SubscriptionStatus.REQUESTED,),
            SubscriptionStatus.CONFIRMED,
            confirmed_at=utcnow(),
            unsubscribed_at=None,
        )

    def decline(self) -> bool:
        """A coordinator turns a join request down."""
        return transition(self, (SubscriptionStatus.REQUESTED,), SubscriptionStatus.DECLINED)

    def mark_bounced(self) -> bool:
        """The address stopped accepting mail: every active subscription of it ends."""
        return transition(self, ACTIVE_SUBSCRIPTION_STATUSES, SubscriptionStatus.BOUNCED)

    # Unguarded changes of a row the caller has just created or holds locked
    # (the subscriber's row lock of a sign-up, a savepoint of an import): plain
    # attribute changes, flushed with the rest of the unit of work.

    def restart(self, now: datetime) -> None:
        """Back to pending for a fresh double opt-in (sign-up again, invitation, join request)."""
        self.status = SubscriptionStatus.PENDING
        self.subscribed_at = now
        self.confirmed_at = None
        self.unsubscribed_at = None

    def confirm_directly(self, now: datetime) -> None:
        """Confirmed without a confirmation mail: the consent is proven otherwise
        (the signed preferences link, an import of already-consented subscribers)."""
        self.status = SubscriptionStatus.CONFIRMED
        self.confirmed_at = now
        self.unsubscribed_at = None

    def leave(self, now: datetime) -> None:
        """Unsubscribed from the preferences page (the caller checked it was active)."""
        self.status = SubscriptionStatus.UNSUBSCRIBED
        self.unsubscribed_at = now


# Subscriptions that still get (or may soon get) mail.
ACTIVE_SUBSCRIPTION_STATUSES = (
    SubscriptionStatus.PENDING,
    SubscriptionStatus.REQUESTED,
    SubscriptionStatus.CONFIRMED,
)


class ConsentText(Model):
    """A version of a text shown to people (consent, privacy notice), stored whole and hashed.

    Versions are numbered per kind; a change of the template makes a new
    version the next time the text is shown, and old versions stay for evidence.
    """

    __tablename__ = "consent_text"
    __table_args__ = (
        UniqueConstraint("kind", "version"),
        UniqueConstraint("kind", "sha256"),
        one_of("kind", ConsentTextKind),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default=ConsentTextKind.CONSENT)
    version: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConsentEvent(Model):
    """One step of consent (sign-up, confirmation, withdrawal, ...).

    Append-only, in the database itself, and chained by hashes: service/ledger.py.
    """

    __tablename__ = "consent_event"
    # The dashboard's weekly chart reads a list's recent steps (admin/dashboard.py).
    __table_args__ = (Index("ix_consent_event_list_occurred", "list_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscriber.id", ondelete="CASCADE"), index=True
    )
    list_id: Mapped[int | None] = mapped_column(ForeignKey("mailing_list.id", ondelete="SET NULL"))
    # signup, confirm, unsubscribe, import, preferences_add, preferences_remove
    action: Mapped[str] = mapped_column(String(32))
    # page, embed, api, import, link, one-click, preferences
    channel: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    origin: Mapped[str | None] = mapped_column(String(255))
    consent_text_id: Mapped[int | None] = mapped_column(ForeignKey("consent_text.id"))
    # The privacy notice version the form linked to when consent was given.
    privacy_text_id: Mapped[int | None] = mapped_column(ForeignKey("consent_text.id"))
    # The Message-ID of the confirmation mail sent for this sign-up.
    message_id: Mapped[str | None] = mapped_column(String(255))
    # Free text, e.g. the consent source of an import.
    detail: Mapped[str | None] = mapped_column(Text)
    # The hash chain (service/ledger.py, set on insert): the `event_hash` of the
    # subscriber's previous event (none for the first), and this event's own.
    previous_hash: Mapped[str | None] = mapped_column(String(64))
    event_hash: Mapped[str] = mapped_column(String(64))

    subscriber: Mapped[Subscriber] = relationship()
    consent_text: Mapped[ConsentText | None] = relationship(foreign_keys=[consent_text_id])
    privacy_text: Mapped[ConsentText | None] = relationship(foreign_keys=[privacy_text_id])
    mailing_list: Mapped[MailingList | None] = relationship()


class OutgoingMail(Model):
    """A fully built message waiting to be sent, being sent, sent, or failed.

    Built in the web process, sent by a worker; the row outlives Redis, so the
    reconciler re-enqueues what a flushed Redis or a killed worker left behind.
    """

    __tablename__ = "outgoing_mail"
    __table_args__ = (
        Index("ix_outgoing_mail_status_created", "status", "created_at"),
        one_of("status", MailStatus),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscriber.id", ondelete="CASCADE"), index=True
    )
    sender: Mapped[str] = mapped_column(String(320))
    recipient: Mapped[str] = mapped_column(String(320))
    smtputf8: Mapped[bool] = mapped_column(default=False)
    message_id: Mapped[str] = mapped_column(String(255))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), default=MailStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]

    # The worker holds the mail claimed ("sending") while it sets one of these.

    # A worker's outcome is recorded only while the mail is still its claim (the
    # `claimed_at` it set or last renewed): a worker whose claim ran out (its
    # process frozen) must not undo what the next holder recorded; a late
    # "try later" over a "sent" would mail the person a third time. Each
    # returns whether the outcome was recorded.

    def mark_sent(self, claimed_at: datetime) -> bool:
        return self._settle(claimed_at, MailStatus.SENT, sent_at=utcnow(), last_error=None)

    def mark_failed(self, error: str, claimed_at: datetime) -> bool:
        return self._settle(claimed_at, MailStatus.FAILED, last_error=error[:2000])

    def requeue(self, error: str, claimed_at: datetime) -> bool:
        """A temporary refusal: queued again for a later try."""
        return self._settle(claimed_at, MailStatus.QUEUED, last_error=error[:2000])

    def _settle(self, claimed_at: datetime, new: MailStatus, **values: Any) -> bool:
        model = type(self)
        moved = guarded_transition(
            model, self.id, (MailStatus.SENDING,), new, model.claimed_at == claimed_at, **values
        )
        db.session.refresh(self)
        return moved


class SignupRequest(Model):
    """A sign-up as the form posted it, waiting for the job that acts on it.

    The web request stores only this row and enqueues one job, whatever the
    address: the work that differs between a new, a pending, a confirmed or a
    suppressed address (subscriber, subscriptions, the consent event, the
    confirmation mail) happens in the job, so the answer's time tells nothing
    about the address (issue 11, finding 8). The job deletes the row in the
    transaction that does the work: a row still here is unprocessed, and the
    reconciler enqueues it again. Rows are never updated.
    """

    __tablename__ = "signup_request"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The validated address (service.addresses.Address) and the name as typed.
    email: Mapped[str] = mapped_column(String(320))
    email_key: Mapped[str] = mapped_column(String(320), index=True)
    ascii_email: Mapped[str | None] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200), default="")
    # Ids of the newsletters asked for, in the order given.
    list_ids: Mapped[list[int]] = mapped_column(JSON)
    # The consent text the form showed (the ledger records it with the sign-up).
    consent_text_id: Mapped[int] = mapped_column(ForeignKey("consent_text.id"))
    # Who asked, from where (consent.RequestInfo), and when: the ledger's evidence.
    channel: Mapped[str] = mapped_column(String(32))
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    origin: Mapped[str | None] = mapped_column(String(255))
    language: Mapped[str] = mapped_column(String(8), default="cs")
    requested_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class SubscriberImport(Model):
    """A CSV of subscribers uploaded in the admin, imported by a worker in chunks.

    The row exists before its job is enqueued (the reconciler finds it if
    Redis loses the job) and holds the file until the import is done; each
    chunk's commit moves `rows_done` and the counts with the chunk's rows, so
    the progress bar reads committed work and a killed import resumes after
    the last chunk that landed (service/subscriptions/importing.py).
    """

    __tablename__ = "subscriber_import"
    __table_args__ = (one_of("status", ImportStatus),)

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("mailing_list.id", ondelete="CASCADE"))
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    filename: Mapped[str] = mapped_column(String(255), default="")
    consent_source: Mapped[str] = mapped_column(String(500))
    # The uploaded CSV (UTF-8), emptied when the import ends: it is personal data.
    data: Mapped[bytes | None] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), default=ImportStatus.QUEUED)
    total_rows: Mapped[int] = mapped_column(default=0)  # data rows, counted at the upload
    rows_done: Mapped[int] = mapped_column(default=0)  # rows read and committed
    imported: Mapped[int] = mapped_column(default=0)
    unchanged: Mapped[int] = mapped_column(default=0)
    skipped: Mapped[int] = mapped_column(default=0)
    attempts: Mapped[int] = mapped_column(default=0)
    job_id: Mapped[str | None] = mapped_column(String(64))
    heartbeat: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)  # why it failed, in Czech

    mailing_list: Mapped[MailingList] = relationship()


class ImportProblem(Model):
    """A line of an admin import that was skipped, and why (Czech): the per-line report."""

    __tablename__ = "import_problem"

    id: Mapped[int] = mapped_column(primary_key=True)
    import_id: Mapped[int] = mapped_column(
        ForeignKey("subscriber_import.id", ondelete="CASCADE"), index=True
    )
    line: Mapped[int]
    problem: Mapped[str] = mapped_column(Text)


class Suppression(Model):
    """An address that must not be mailed or imported, kept only as a keyed hash."""

    __tablename__ = "suppression"
    __table_args__ = (one_of("reason", SuppressionReason),)

    id: Mapped[int] = mapped_column(primary_key=True)
    address_hash: Mapped[str] = mapped_column(String(64), unique=True)
    reason: Mapped[str] = mapped_column(String(32))  # SuppressionReason
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Bounce(Model):
    """One bounce received for a subscriber: the evidence behind a bounce suppression.

    A hard bounce suppresses the address at once; soft bounces are scored
    (service/bounces/recording.py). `raw` keeps the report itself for the
    subscriber's page, BOUNCE_RAW_DAYS long (workers/retention.py empties it).
    """

    __tablename__ = "bounce"
    __table_args__ = (
        Index("ix_bounce_subscriber_received", "subscriber_id", "received_at"),
        one_of("kind", BounceKind),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscriber.id", ondelete="CASCADE"))
    # What bounced, when the VERP address told us (else None).
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("delivery.id", ondelete="SET NULL"), index=True
    )
    outgoing_mail_id: Mapped[int | None] = mapped_column(
        ForeignKey("outgoing_mail.id", ondelete="SET NULL"), index=True
    )
    kind: Mapped[str] = mapped_column(String(8))  # BounceKind
    status: Mapped[str] = mapped_column(String(16), default="")  # DSN status, e.g. 5.1.1
    diagnostic: Mapped[str] = mapped_column(String(500), default="")
    # Why it failed (classify.Reason): address, mailbox_full, blocked, spam...
    reason: Mapped[str] = mapped_column(String(16), default="", server_default="")
    raw: Mapped[str | None] = mapped_column(Text)  # the report, until BOUNCE_RAW_DAYS
    # A block of one issue by many domains at once: about us, never counted.
    about_us: Mapped[bool] = mapped_column(default=False, server_default="0")
    # sha256 of (bounce message, subscriber): the same bounce processed twice
    # (a mailbox read again, an MTA retrying the pipe) counts once.
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)

    subscriber: Mapped[Subscriber] = relationship()


class Complaint(Model):
    """A spam complaint (ARF feedback report) about our mail: not a bounce.

    The person is unsubscribed from the list complained about and marketing
    to them stops (the consent ledger has the step); this row counts it for
    the complaint rate of the issue and of the last 30 days.
    """

    __tablename__ = "complaint"
    __table_args__ = (Index("ix_complaint_received", "received_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscriber.id", ondelete="SET NULL"), index=True
    )
    list_id: Mapped[int | None] = mapped_column(ForeignKey("mailing_list.id", ondelete="SET NULL"))
    issue_id: Mapped[int | None] = mapped_column(
        ForeignKey("issue.id", ondelete="SET NULL"), index=True
    )
    feedback_type: Mapped[str] = mapped_column(String(32), default="abuse")
    # sha256 of (report, subscriber): the same report read twice counts once.
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class MailboxMessage(Model):
    """A message of the bounce mailbox already processed (`zpravodaj bounces poll`).

    Recorded in the same transaction as the message's bounce, so a poller
    killed before it flagged the message on the server does not count it
    twice: (mailbox, UIDVALIDITY, UID) names it on that server, the
    Message-ID across a mailbox rebuilt with new UIDs.
    """

    __tablename__ = "mailbox_message"
    __table_args__ = (UniqueConstraint("mailbox", "uidvalidity", "uid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox: Mapped[str] = mapped_column(String(255))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[str] = mapped_column(String(255), default="", index=True)
    processed_at: Mapped[datetime] = mapped_column(default=utcnow)


user_list = Table(
    "user_list",
    db.metadata,
    Column("user_id", ForeignKey("user_account.id", ondelete="CASCADE"), primary_key=True),
    Column("list_id", ForeignKey("mailing_list.id", ondelete="CASCADE"), primary_key=True),
)


class User(Model):
    """An editor, administrator or group coordinator of the admin UI and API.

    What Flask-Login asks of a user, written out as its UserMixin would give it
    (importing flask_login here would load it, and the test client it imports,
    into every worker): is_active follows the `active` column (a disabled
    account cannot sign in), and get_id names the session generation too.
    """

    __tablename__ = "user_account"
    __table_args__ = (one_of("role", UserRole),)
    # Server defaults are read when first used, not RETURNed by every insert
    # (tests/test_migrations.py inserts users into schemas older than them).
    __mapper_args__ = {"eager_defaults": False}  # noqa: RUF012

    id: Mapped[int] = mapped_column(primary_key=True)
    # Case-folded: logins are case-insensitive.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))  # UserRole
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]
    # Stored in each admin session at sign-in and compared on every request;
    # raising it (sign-out, new password, account disabled) ends every session
    # of the account at once, copied cookies included. (A server default only:
    # an insert that does not name it also works on a schema before the column.)
    session_generation: Mapped[int] = mapped_column(server_default="0")

    # A coordinator's groups; empty (and unused) for admins and editors.
    lists: Mapped[list[MailingList]] = relationship(secondary=user_list)
    tokens: Mapped[list[ApiToken]] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )

    # Equal by get_id, hashed by identity: Flask-Login's UserMixin's rules.
    __hash__ = object.__hash__
    is_anonymous = False

    @property
    def is_active(self) -> bool:  # a column-backed flag
        return self.active

    @property
    def is_authenticated(self) -> bool:
        return self.is_active

    def __eq__(self, other: object) -> bool:
        if isinstance(other, User):
            return self.get_id() == other.get_id()
        return NotImplemented

    def get_id(self) -> str:
        """What Flask-Login keeps in the session: the account and its session
        generation, checked on every request (service/admin/auth.py)."""
        return f"{self.id}:{self.session_generation}"

    def may_manage(self, mailing_list: MailingList) -> bool:
        """Admins and editors handle every list; a coordinator only their own groups."""
        if self.role == UserRole.COORDINATOR:
            return mailing_list.kind == ListKind.GROUP and any(
                own.id == mailing_list.id for own in self.lists
            )
        return True

    def __repr__(self) -> str:
        return f"<User {self.email} {self.role}>"


class ApiToken(Model):
    """A bearer token of the JSON API, kept only as its SHA-256."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters, shown so a person can tell their tokens apart.
    prefix: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="tokens")


class Issue(Model):
    """A newsletter issue or a working group's announcement, from draft to sent."""

    __tablename__ = "issue"
    __table_args__ = (
        UniqueConstraint("list_id", "number"),
        Index("ix_issue_status_scheduled", "status", "scheduled_at"),
        one_of("status", IssueStatus),
        one_of("meeting_method", MeetingMethod),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("mailing_list.id", ondelete="CASCADE"))
    # Numbered per list when sending starts: the archive counts what went out.
    number: Mapped[int | None]
    subject: Mapped[str] = mapped_column(String(200))
    preheader: Mapped[str] = mapped_column(String(200), default="")
    body: Mapped[str] = mapped_column(Text, default="")  # Markdown
    status: Mapped[str] = mapped_column(String(16), default=IssueStatus.DRAFT)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    scheduled_at: Mapped[datetime | None]  # UTC
    # The moment of "send": confirmed subscribers up to here get the issue.
    snapshot_at: Mapped[datetime | None]
    # Confirmed subscribers at the snapshot: the total shown while fanning out.
    recipient_count: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime | None]
    # When sending last started or went on (resumed, or sent again to the unreached):
    # the recent rate counts no sends from before it, nor the pause.
    sending_resumed_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # The mail as rendered at send time (placeholders for personal links),
    # so every batch sends the same content whatever happens to the draft.
    rendered_html: Mapped[str | None] = mapped_column(Text)
    rendered_text: Mapped[str | None] = mapped_column(Text)
    # Fan-out progress: the last subscriber id given a delivery row, and
    # whether every recipient has one (then only batches remain).
    fanout_cursor: Mapped[int] = mapped_column(default=0)
    fanout_done: Mapped[bool] = mapped_column(default=False)
    fanout_heartbeat: Mapped[datetime | None]
    # The RQ job that is to continue the fan-out (each job writes a slice,
    # then hands over to a fresh one queued behind the batches it wrote).
    fanout_job_id: Mapped[str | None] = mapped_column(String(64))
    # An announcement about a meeting: what the attached iCalendar says.
    meeting_id: Mapped[int | None] = mapped_column(ForeignKey("meeting.id", ondelete="SET NULL"))
    # REQUEST (invitation, update, reminder) or CANCEL; the meeting's sequence when
    # the issue was sent, so the invitation it carries never changes afterwards.
    meeting_method: Mapped[str | None] = mapped_column(String(16))
    meeting_sequence: Mapped[int | None]
    # An announcement about one date of a series (its change, cancellation or
    # reminder): that date's RECURRENCE-ID, the start the rule gives, naive UTC.
    meeting_occurrence: Mapped[datetime | None]
    # Final counts kept when retention deletes the per-recipient delivery rows
    # (DELIVERY_DETAIL_DAYS after sending); None while the rows exist.
    delivery_summary: Mapped[dict | None] = mapped_column(JSON)

    mailing_list: Mapped[MailingList] = relationship()
    created_by: Mapped[User | None] = relationship()
    meeting: Mapped[Meeting | None] = relationship()
    attachments: Mapped[list[Attachment]] = relationship(
        cascade="all, delete-orphan", order_by="Attachment.id"
    )

    def __repr__(self) -> str:
        return f"<Issue {self.id} {self.status}>"

    # Where an issue may go from. Each transition below is one conditional
    # UPDATE (`guarded_transition`), refused at once when the status read in
    # this transaction already forbids it; it returns whether the issue moved,
    # and the caller (issues/sending.py) turns a refusal into a Czech error.
    EDITABLE = (IssueStatus.DRAFT, IssueStatus.SCHEDULED)
    DELIVERING = (IssueStatus.SENDING, IssueStatus.PAUSED)
    CANCELLABLE = (*EDITABLE, *DELIVERING)
    FINISHED = (IssueStatus.SENT, IssueStatus.CANCELLED)
    # Reached (some) readers: shown in the archive and to members. A cancelled
    # issue is left out even if partly sent, since its editor withdrew it.
    PUBLISHED = (IssueStatus.SENDING, IssueStatus.PAUSED, IssueStatus.SENT)

    def _move_from(self, allowed: tuple[IssueStatus, ...], new: IssueStatus, **values: Any) -> bool:
        return self.status in allowed and transition(self, allowed, new, **values)

    def back_to_draft(self) -> bool:
        """Edited: a scheduled issue is a draft again (its schedule dropped)."""
        return self._move_from(self.EDITABLE, IssueStatus.DRAFT, scheduled_at=None)

    def schedule(self, at: datetime) -> bool:
        """To be sent at `at` (naive UTC)."""
        return self._move_from(self.EDITABLE, IssueStatus.SCHEDULED, scheduled_at=at)

    def unschedule(self) -> bool:
        return self._move_from((IssueStatus.SCHEDULED,), IssueStatus.DRAFT, scheduled_at=None)

    def start_sending(self) -> bool:
        """Sent now, by an editor (a draft, or a scheduled one ahead of its time)."""
        return self._move_from(self.EDITABLE, IssueStatus.SENDING, sending_resumed_at=utcnow())

    def pause(self) -> bool:
        return self._move_from((IssueStatus.SENDING,), IssueStatus.PAUSED)

    def resume(self) -> bool:
        return self._move_from(
            (IssueStatus.PAUSED,), IssueStatus.SENDING, sending_resumed_at=utcnow()
        )

    def cancel(self) -> bool:
        """Stopped for good, from any state but sent."""
        return self._move_from(self.CANCELLABLE, IssueStatus.CANCELLED, finished_at=utcnow())

    def resend(self) -> bool:
        """A finished or cancelled issue sends again to those it did not reach."""
        return self._move_from(
            self.FINISHED, IssueStatus.SENDING, finished_at=None, sending_resumed_at=utcnow()
        )

    @classmethod
    def start_if_due(cls, issue_id: int, due: datetime) -> bool:
        """The scheduled start: only if still scheduled, for no later than `due`."""
        return guarded_transition(
            cls,
            issue_id,
            (IssueStatus.SCHEDULED,),
            IssueStatus.SENDING,
            cls.scheduled_at <= due,
            sending_resumed_at=utcnow(),
        )

    @classmethod
    def finish_if_complete(cls, issue_id: int) -> bool:
        """Sent, once every recipient has a batch and every batch is done."""
        unfinished = exists().where(
            DeliveryBatch.issue_id == issue_id, DeliveryBatch.status != BatchStatus.DONE
        )
        return guarded_transition(
            cls,
            issue_id,
            (IssueStatus.SENDING,),
            IssueStatus.SENT,
            cls.fanout_done.is_(True),
            ~unfinished,
            finished_at=utcnow(),
        )


class Meeting(Model):
    """A working group's meeting: one iCalendar UID for its whole life.

    Each invitation, update, cancellation and reminder is an Issue pointing
    here; an update raises `sequence`, so calendars replace the old event.
    """

    __tablename__ = "meeting"

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("mailing_list.id", ondelete="CASCADE"))
    uid: Mapped[str] = mapped_column(String(255), unique=True)
    start: Mapped[datetime]  # UTC
    end: Mapped[datetime]  # UTC
    location: Mapped[str] = mapped_column(String(300), default="")
    online_url: Mapped[str] = mapped_column(String(500), default="")
    agenda: Mapped[str] = mapped_column(Text, default="")  # Markdown
    sequence: Mapped[int] = mapped_column(default=0)
    cancelled_at: Mapped[datetime | None]
    reminder_sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The calendar's SUMMARY: the invitation's subject without "Pozvánka:", its date
    # following the meeting when it moves (rules.py). Empty: the group's name.
    title: Mapped[str] = mapped_column(String(200), default="", server_default="")
    # A series (one UID): RFC 5545 RRULE from `start`, e.g. FREQ=MONTHLY;BYDAY=2TU.
    rrule: Mapped[str] = mapped_column(String(200), default="", server_default="")
    # A series split from this one on ("move this and all later dates", series.py): the
    # series it continues. Calendars get RELATED-TO (RFC 9253) both ways.
    follows_id: Mapped[int | None] = mapped_column(ForeignKey("meeting.id", ondelete="SET NULL"))

    mailing_list: Mapped[MailingList] = relationship()

    @property
    def started(self) -> bool:
        """Answers can change until the meeting starts."""
        return self.start <= utcnow()

    def previous_series(self) -> Meeting | None:
        """The series this one continues, if it was split off one."""
        return db.session.get(Meeting, self.follows_id) if self.follows_id else None

    def next_series(self) -> Meeting | None:
        """The series that continues this one, if it was split (none for a meeting not yet
        stored, such as the live preview's: `follows_id == None` would match every series)."""
        if not self.rrule or self.id is None:
            return None
        return db.session.scalar(
            select(Meeting).where(Meeting.follows_id == self.id).order_by(Meeting.id).limit(1)
        )

    def first_series(self) -> Meeting:
        """The first series of its line (itself unless it continues another)."""
        first, seen = self, {self.id}
        while first.follows_id is not None and first.follows_id not in seen:
            earlier = db.session.get(Meeting, first.follows_id)
            if earlier is None:
                break
            first = earlier
            seen.add(first.id)
        return first


class MeetingOccurrence(Model):
    """One date of a series kept apart: moved or cancelled alone (an exception the
    calendar writes with RECURRENCE-ID), or only reminded.

    `recurrence_id` is the start the rule gives that date (naive UTC), which
    names it for good; `start`/`end`/`location`/… are what holds now. `sequence`
    is the exception's own SEQUENCE (above the series' when it changed), so a
    change of one date leaves answers to the series current.
    """

    __tablename__ = "meeting_occurrence"
    __table_args__ = (UniqueConstraint("meeting_id", "recurrence_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    meeting_id: Mapped[int] = mapped_column(ForeignKey("meeting.id", ondelete="CASCADE"))
    recurrence_id: Mapped[datetime]  # UTC
    start: Mapped[datetime]  # UTC
    end: Mapped[datetime]  # UTC
    location: Mapped[str] = mapped_column(String(300), default="")
    online_url: Mapped[str] = mapped_column(String(500), default="")
    agenda: Mapped[str] = mapped_column(Text, default="")
    sequence: Mapped[int] = mapped_column(default=0)
    # Set when the date was moved or changed alone: then it is an exception.
    changed_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    reminder_sent_at: Mapped[datetime | None]

    meeting: Mapped[Meeting] = relationship()

    @property
    def is_exception(self) -> bool:
        """Whether calendars must be told of it (a VEVENT with RECURRENCE-ID)."""
        return self.changed_at is not None or self.cancelled_at is not None

    @property
    def started(self) -> bool:
        return self.start <= utcnow()


class MeetingResponse(Model):
    """One member's answer to one meeting, and whether they came (the attendance sheet).

    `sequence` is the invitation's SEQUENCE the answer was given to: a calendar
    REPLY to an older version of the meeting is stale and ignored. In a series,
    `occurrence` None is the answer to the whole series; a row with an
    `occurrence` (its RECURRENCE-ID) is the answer to, and attendance at, that
    date alone, and wins over the series' answer there.
    """

    __tablename__ = "meeting_response"
    __table_args__ = (
        # One answer per member to the series, and one per member and date: NULLs
        # are distinct in a unique constraint, hence two partial indexes.
        partial_index(
            "uq_meeting_response_series",
            "meeting_id",
            "subscriber_id",
            unique=True,
            where="occurrence IS NULL",
        ),
        partial_index(
            "uq_meeting_response_occurrence",
            "meeting_id",
            "subscriber_id",
            "occurrence",
            unique=True,
            where="occurrence IS NOT NULL",
        ),
        one_of("partstat", PartStat),
        one_of("channel", ResponseChannel),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    meeting_id: Mapped[int] = mapped_column(ForeignKey("meeting.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscriber.id", ondelete="CASCADE"))
    occurrence: Mapped[datetime | None]  # a series' date (RECURRENCE-ID, UTC); None: all
    partstat: Mapped[str] = mapped_column(String(16), default=PartStat.NEEDS_ACTION)
    note: Mapped[str] = mapped_column(String(500), default="")
    channel: Mapped[str] = mapped_column(String(16), default=ResponseChannel.WEB)
    sequence: Mapped[int] = mapped_column(default=0)
    responded_at: Mapped[datetime | None]
    # Ticked by the coordinator after the meeting: None until then.
    attended: Mapped[bool | None]

    meeting: Mapped[Meeting] = relationship()
    subscriber: Mapped[Subscriber] = relationship()

    def answer(
        self, partstat: PartStat, channel: ResponseChannel, sequence: int, note: str | None
    ) -> None:
        """Record an answer; `note` None keeps the one given before (a calendar REPLY has none)."""
        self.partstat, self.channel, self.sequence = partstat, channel, sequence
        self.responded_at = utcnow()
        if note is not None:
            self.note = note


class Attachment(Model):
    """A document sent with an announcement (minutes, materials); stored once."""

    __tablename__ = "attachment"

    id: Mapped[int] = mapped_column(primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issue.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeliveryBatch(Model):
    """A few hundred deliveries of one issue: the unit of work of one RQ job.

    `owner` and `heartbeat` form a lease: a worker claims the batch, renews
    the heartbeat while sending, and the reconciler hands a batch whose
    heartbeat went stale (its worker was killed) to another worker.
    """

    __tablename__ = "delivery_batch"
    __table_args__ = (
        Index("ix_delivery_batch_issue_status", "issue_id", "status"),
        one_of("status", BatchStatus),
    )
    __mapper_args__ = {"eager_defaults": False}  # noqa: RUF012  (see the counters below)

    id: Mapped[int] = mapped_column(primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issue.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default=BatchStatus.QUEUED)
    # The RQ job last enqueued for it: the reconciler asks Redis whether it lives.
    job_id: Mapped[str | None] = mapped_column(String(64))
    owner: Mapped[str | None] = mapped_column(String(64))
    heartbeat: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Its deliveries by status, kept by triggers on `delivery` (service/batch_counts.py):
    # an issue's progress sums these, never the deliveries. Pending = the rest of total.
    # (Server defaults only, as User.session_generation: tests/test_migrations.py
    # inserts batches into schemas older than these columns.)
    total_count: Mapped[int] = mapped_column(server_default="0")
    sent_count: Mapped[int] = mapped_column(server_default="0")
    failed_count: Mapped[int] = mapped_column(server_default="0")
    skipped_count: Mapped[int] = mapped_column(server_default="0")
    cancelled_count: Mapped[int] = mapped_column(server_default="0")
    # "Send again to those not reached": the batch's next run first puts its
    # unreached deliveries back (workers/delivery.py), a batch at a time.
    resend: Mapped[bool] = mapped_column(server_default=false())


class Delivery(Model):
    """One issue to one subscriber: claimed before sending, marked sent after."""

    __tablename__ = "delivery"
    # The fan-out writes one of these per recipient (a million for a large
    # list), so every index here costs at that moment: the two partial ones
    # below hold only rows that were sent or failed, and cost nothing until then.
    __table_args__ = (
        UniqueConstraint("issue_id", "subscriber_id"),
        Index("ix_delivery_batch_status", "batch_id", "status"),
        # The progress bar's recent rate: the messages sent in the last minute.
        partial_index(
            "ix_delivery_issue_sent_at", "issue_id", "sent_at", where="sent_at IS NOT NULL"
        ),
        # The issue page's list of failed deliveries.
        partial_index("ix_delivery_issue_failed", "issue_id", where="status = 'failed'"),
        # Deleting a subscriber (erasure, purge) deletes their deliveries: without
        # an index that would scan every delivery ever made per deletion.
        Index("ix_delivery_subscriber", "subscriber_id"),
        one_of("status", DeliveryStatus),
    )

    # No foreign keys on these three: PostgreSQL checks a foreign key row by
    # row (a lookup and a share lock on the parent per row), which was 60 % of
    # the time of writing a million deliveries (bench/README.md, "Fan-out").
    # The fan-out takes them from the batch it has just written and from
    # confirmed subscriptions; deleting a subscriber or a batch (an issue's
    # batches go with it) deletes their deliveries through triggers
    # (service/delivery_cascade.py), as ON DELETE CASCADE did.
    id: Mapped[int] = mapped_column(primary_key=True)
    issue_id: Mapped[int]
    batch_id: Mapped[int]
    subscriber_id: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    message_id: Mapped[str | None] = mapped_column(String(255))
    last_error: Mapped[str | None] = mapped_column(Text)
    claimed_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]

    subscriber: Mapped[Subscriber] = relationship(
        primaryjoin="foreign(Delivery.subscriber_id) == Subscriber.id"
    )


class AppendOnlyViolation(RuntimeError):
    """Consent evidence may be added, never edited or deleted one by one."""


@event.listens_for(Session, "before_flush")
def _keep_consent_events_append_only(
    session: Session, flush_context: UOWTransaction, instances: object
) -> None:
    for obj in session.dirty:
        if isinstance(obj, ConsentEvent) and session.is_modified(obj):
            raise AppendOnlyViolation("consent events are append-only")
    for obj in session.deleted:
        if isinstance(obj, ConsentEvent):
            raise AppendOnlyViolation("consent events are append-only")
