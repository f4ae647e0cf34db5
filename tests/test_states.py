"""States and transitions of the models: each legal step moves, an illegal one is refused,
and two actors racing for the same step move the row once."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.exc import IntegrityError

from service.clock import utcnow
from service.extensions import db
from service.models import (
    Delivery,
    DeliveryBatch,
    Issue,
    IssueStatus,
    MailingList,
    OutgoingMail,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    guarded_transition,
)
from tests.waiting import wait_until

S = SubscriptionStatus
I = IssueStatus  # noqa: E741


def a_list(slug: str = "zpravodaj") -> MailingList:
    return db.session.scalar(select(MailingList).filter_by(slug=slug))


def subscription_in(status: SubscriptionStatus, slug: str = "zpravodaj") -> Subscription:
    subscriber = Subscriber(email="jana@example.org", email_key="jana@example.org")
    subscription = Subscription(mailing_list=a_list(slug), status=status)
    subscriber.subscriptions.append(subscription)
    db.session.add(subscriber)
    db.session.commit()
    return subscription


def issue_in(status: IssueStatus) -> Issue:
    issue = Issue(mailing_list=a_list(), subject="Vydání", body="Text", status=status)
    db.session.add(issue)
    db.session.commit()
    return issue


SUBSCRIPTION_STEPS = {
    "confirm": ({S.PENDING}, S.CONFIRMED),
    "unsubscribe": ({S.PENDING, S.CONFIRMED}, S.UNSUBSCRIBED),
    "remove": ({S.PENDING, S.REQUESTED, S.CONFIRMED}, S.UNSUBSCRIBED),
    "await_approval": ({S.PENDING}, S.REQUESTED),
    "approve": ({S.REQUESTED}, S.CONFIRMED),
    "decline": ({S.REQUESTED}, S.DECLINED),
    "mark_bounced": ({S.PENDING, S.REQUESTED, S.CONFIRMED}, S.BOUNCED),
}


@pytest.mark.parametrize("step", SUBSCRIPTION_STEPS)
@pytest.mark.parametrize("start", list(S))
def test_a_subscription_moves_only_from_the_states_its_step_allows(app, step, start):
    allowed, target = SUBSCRIPTION_STEPS[step]
    subscription = subscription_in(start)
    moved = getattr(subscription, step)()
    db.session.commit()
    db.session.expire_all()
    assert moved is (start in allowed)
    assert subscription.status == (target if start in allowed else start)


def test_confirming_stamps_the_moment_and_unsubscribing_too(app):
    subscription = subscription_in(S.PENDING)
    assert subscription.confirm()
    assert subscription.confirmed_at is not None and subscription.unsubscribed_at is None
    assert subscription.unsubscribe()
    assert subscription.unsubscribed_at is not None


def test_restart_brings_any_subscription_back_to_a_fresh_pending(app):
    subscription = subscription_in(S.UNSUBSCRIBED)
    subscription.confirmed_at = subscription.unsubscribed_at = utcnow()
    subscription.restart(utcnow())
    db.session.commit()
    db.session.expire_all()
    assert subscription.status == S.PENDING
    assert subscription.confirmed_at is None and subscription.unsubscribed_at is None


ISSUE_STEPS = {
    "back_to_draft": ({I.DRAFT, I.SCHEDULED}, I.DRAFT),
    "unschedule": ({I.SCHEDULED}, I.DRAFT),
    "start_sending": ({I.DRAFT, I.SCHEDULED}, I.SENDING),
    "pause": ({I.SENDING}, I.PAUSED),
    "resume": ({I.PAUSED}, I.SENDING),
    "cancel": ({I.DRAFT, I.SCHEDULED, I.SENDING, I.PAUSED}, I.CANCELLED),
    "resend": ({I.SENT, I.CANCELLED}, I.SENDING),
}


@pytest.mark.parametrize("step", ISSUE_STEPS)
@pytest.mark.parametrize("start", list(I))
def test_an_issue_moves_only_from_the_states_its_step_allows(app, step, start):
    allowed, target = ISSUE_STEPS[step]
    issue = issue_in(start)
    moved = getattr(issue, step)()
    db.session.commit()
    db.session.expire_all()
    assert moved is (start in allowed)
    assert issue.status == (target if start in allowed else start)


def test_scheduling_sets_the_time_and_cancelling_the_end(app):
    issue = issue_in(I.DRAFT)
    at = utcnow().replace(microsecond=0)
    assert issue.schedule(at)
    assert (issue.status, issue.scheduled_at) == (I.SCHEDULED, at)
    assert issue.cancel()
    assert issue.finished_at is not None
    assert not issue.schedule(at)  # cancelled for good


def test_a_scheduled_start_waits_until_due(app):
    issue = issue_in(I.SCHEDULED)
    issue.scheduled_at = utcnow()
    db.session.commit()
    assert not Issue.start_if_due(issue.id, utcnow().replace(year=2000))
    assert Issue.start_if_due(issue.id, utcnow())
    assert not Issue.start_if_due(issue.id, utcnow())  # started already
    db.session.commit()
    assert db.session.get(Issue, issue.id).status == I.SENDING


def test_an_issue_is_finished_only_when_every_batch_is_done(app):
    issue = issue_in(I.SENDING)
    batch = DeliveryBatch(issue_id=issue.id)
    db.session.add(batch)
    db.session.commit()
    assert not Issue.finish_if_complete(issue.id)  # the fan-out has not finished
    issue.fanout_done = True
    db.session.commit()
    assert not Issue.finish_if_complete(issue.id)  # a batch is still queued
    batch.status = "done"
    db.session.commit()
    assert Issue.finish_if_complete(issue.id)
    db.session.commit()
    db.session.expire_all()
    assert issue.status == I.SENT and issue.finished_at is not None


def test_a_stale_second_actor_does_not_move_the_row_again(app):
    """Both loaded the row while it allowed the step; the later one finds it moved."""
    subscription = subscription_in(S.REQUESTED, slug="ostrava-psb")
    issue = issue_in(I.SENDING)
    with app.app_context():  # another request: its own session, its own snapshot
        theirs = db.session.get(Subscription, subscription.id)
        their_issue = db.session.get(Issue, issue.id)
        assert theirs.status == S.REQUESTED and their_issue.status == I.SENDING
        with app.app_context():
            assert db.session.get(Subscription, subscription.id).approve()
            assert db.session.get(Issue, issue.id).pause()
            db.session.commit()
        assert theirs.status == S.REQUESTED  # stale in memory
        assert not theirs.decline()
        assert theirs.status == S.CONFIRMED  # read back after the refusal
        assert not their_issue.pause()
        assert their_issue.status == I.PAUSED
        db.session.commit()


@pytest.mark.parametrize("step", ["confirm", "unsubscribe"])
def test_two_concurrent_clicks_move_the_subscription_once(app, step):
    """Two requests at once, both holding the row as it was (pending): the first moves it and
    keeps its transaction open until the second has tried too, and only then commits.

    The order is made, not hoped for: the second tries only after the first's UPDATE,
    and the first commits only once the second's UPDATE is issued (on PostgreSQL,
    once it waits for the first's row lock). Anything the second reads on its way
    was read while the first had not committed. So a step that trusted what it read
    (its loaded row, or a SELECT before an unconditional UPDATE) would move the row
    twice. The guarded UPDATE waits for the first to commit, then matches nothing
    (PostgreSQL re-reads the row it waited for; SQLite's write lock orders the two).
    """
    subscription_id = subscription_in(S.PENDING).id
    postgresql = db.engine.dialect.name == "postgresql"
    both_loaded = threading.Barrier(2)
    first_moved = threading.Event()
    second_tried = threading.Event()
    second_backend: list[int] = []  # its PostgreSQL backend's pid
    results: dict[str, bool] = {}
    errors: list[BaseException] = []

    def second_is_waiting() -> bool:
        """The second click's UPDATE is issued (and, on PostgreSQL, waits for the row)."""
        if not second_tried.is_set():
            return False
        if not postgresql or "second" in results:
            return True  # it returned: the first's commit won't change its answer now
        with db.engine.connect() as connection:
            waits_on = connection.scalar(
                text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"),
                {"pid": second_backend[0]},
            )
        return waits_on == "Lock"

    def first() -> None:
        with app.app_context():
            mine = db.session.get(Subscription, subscription_id)
            both_loaded.wait(timeout=60)
            results["first"] = getattr(mine, step)()
            first_moved.set()
            wait_until(second_is_waiting, "the second click to try while the first holds the row")
            db.session.commit()
            db.session.remove()

    def second() -> None:
        with app.app_context():
            mine = db.session.get(Subscription, subscription_id)
            connection = db.session.connection()  # the one its step's UPDATE goes through
            if postgresql:
                second_backend.append(connection.scalar(text("SELECT pg_backend_pid()")))

            def issued(conn, cursor, statement: str, *args) -> None:
                if statement.lstrip().upper().startswith("UPDATE SUBSCRIPTION"):
                    second_tried.set()

            event.listen(connection, "before_cursor_execute", issued)
            both_loaded.wait(timeout=60)
            assert first_moved.wait(timeout=60), "the first click never moved the row"
            results["second"] = getattr(mine, step)()
            second_tried.set()  # a step that issued no UPDATE has tried all the same
            event.remove(connection, "before_cursor_execute", issued)
            db.session.commit()
            db.session.remove()

    def reported(click: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                click()
            except BaseException as exc:  # reported in the main thread
                errors.append(exc)
                first_moved.set()  # neither waits for good on the other
                second_tried.set()

        return run

    # Daemons: a thread stuck for good fails this test, not the exit of the test process.
    threads = [threading.Thread(target=reported(click), daemon=True) for click in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a click is stuck after 120 s"
    assert not errors
    assert results == {"first": True, "second": False}
    db.session.expire_all()
    assert db.session.get(Subscription, subscription_id).status == SUBSCRIPTION_STEPS[step][1]


def test_guarded_transition_reports_whether_the_row_moved(app):
    issue = issue_in(I.PAUSED)
    assert not guarded_transition(Issue, issue.id, (I.SENDING,), I.SENT)
    assert guarded_transition(Issue, issue.id, (I.PAUSED,), I.SENDING)
    assert not guarded_transition(Issue, issue.id + 1000, (I.SENDING,), I.SENT)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Subscription(
            mailing_list=a_list(),
            subscriber=Subscriber(email="a@b.cz", email_key="a@b.cz"),
            status="archived",
        ),
        lambda: Issue(mailing_list=a_list(), subject="x", status="published"),
        lambda: Issue(mailing_list=a_list(), subject="x", meeting_method="PUBLISH"),
        lambda: MailingList(slug="x", name="x", kind="forum"),
        lambda: MailingList(slug="x", name="x", visibility="secret"),
        lambda: OutgoingMail(
            kind="x", sender="a@b.cz", recipient="c@d.cz", message_id="<m>", raw=b"", status="lost"
        ),
    ],
    ids=["subscription", "issue", "meeting_method", "list_kind", "visibility", "mail"],
)
def test_the_database_refuses_an_unknown_status(app, make):
    db.session.add(make())
    with pytest.raises(IntegrityError, match=r"(?i)check"):
        db.session.commit()
    db.session.rollback()


def test_the_database_refuses_an_unknown_delivery_status(app):
    issue = issue_in(I.SENDING)
    batch = DeliveryBatch(issue_id=issue.id)
    subscriber = Subscriber(email="a@b.cz", email_key="a@b.cz")
    db.session.add_all([batch, subscriber])
    db.session.commit()
    db.session.add(
        Delivery(issue_id=issue.id, batch_id=batch.id, subscriber_id=subscriber.id, status="lost")
    )
    with pytest.raises(IntegrityError, match=r"(?i)check"):
        db.session.commit()
    db.session.rollback()
