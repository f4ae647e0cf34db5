"""The Redis connection, enqueueing by dotted name, and enqueueing after commit.

The service never imports `workers`: it names job functions as strings, as
microblog's `launch_task` does, so the web process stays free of SMTP code.
Work is enqueued only after the transaction that created its rows commits,
so no job can point at a row that does not exist; an enqueue that fails
(Redis down) leaves the rows for the reconciler.

Redis's client and RQ are imported where a connection is made or a job queued, not
at the top: most `zpravodaj` commands (an export, `lists show`) import this module
and never queue a job, and the two weigh about 7 MB (issue 14, bench/README.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app
from sqlalchemy import event
from sqlalchemy.orm import Session

from .extensions import db
from .request_values import bound

if TYPE_CHECKING:
    from redis import Redis
    from rq import Queue, Retry
    from rq.job import Job

log = logging.getLogger(__name__)

# Queues named by purpose, listed in the order workers take them: a
# 100 000-recipient issue on `bulk` never delays someone's confirmation mail.
MAIL_QUEUE = "mail"  # sign-ups and single transactional mails: confirmations and the like
BULK_QUEUE = "bulk"  # issues and announcements: fan-out and delivery batches
DEFAULT_QUEUE = "default"  # housekeeping
ALL_QUEUES = (MAIL_QUEUE, BULK_QUEUE, DEFAULT_QUEUE)

# A job in these states will still run; the reconciler re-enqueues work whose job is in none.
# RQ's `JobStatus` members are these strings (a `str` enum: equal, and hashed alike).
LIVE_JOB_STATES = frozenset({"queued", "started", "scheduled", "deferred"})

RESULT_TTL = 3600
FAILURE_TTL = 7 * 24 * 3600


def init_app(app: Flask) -> None:
    """Give the app its Redis connection up front (the web app's and the workers': they
    use it at once). The commands' app gets one at its first use (`redis_connection`)."""
    app.extensions["redis"] = _connect(app.config["REDIS_URL"])


def _connect(url: str) -> Redis:
    from redis import Redis

    # Short socket timeouts: a dead Redis must not hang a web request.
    return Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)


def redis_connection() -> Redis:
    extensions = bound(current_app).extensions
    try:
        return extensions["redis"]
    except KeyError:  # an app without one up front (init_app): connect now, once
        connection = extensions["redis"] = _connect(current_app.config["REDIS_URL"])
        return connection


# This thread's own connection for `command`: (the client it belongs to, the process
# that opened it, the connection).
_own = threading.local()


def command(*args: Any) -> Any:
    """Run one Redis command on this thread's own connection to `redis_connection()`'s
    server, without redis-py's client layer: its pool, retry wrapper, response callbacks
    and telemetry hooks are about a third of a command's CPU (bench/README.md, eleventh
    round), which the sign-up pays on every request. The reply is RESP's as is (bytes,
    integers, lists); a server's error raises redis-py's (ResponseError, NoScriptError).

    A connection found broken (Redis restarted since its last use) is dropped and the
    command sent once more on a new one; a timeout is not retried, since the command may
    have run."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    client = redis_connection()
    own = getattr(_own, "held", None)
    if own is None or own[0] is not client or own[1] != os.getpid():
        if own is not None and own[1] == os.getpid():
            own[2].disconnect()
        pool = client.connection_pool  # its settings, not its count of connections
        own = _own.held = (client, os.getpid(), pool.connection_class(**pool.connection_kwargs))
    try:
        return _send(own[2], args)
    except RedisConnectionError:  # dropped by _send: the next send connects anew
        return _send(own[2], args)


def _send(connection: Any, args: tuple[Any, ...]) -> Any:
    from redis.exceptions import ResponseError

    try:
        connection.send_command(*args)
        return connection.read_response()
    except ResponseError:
        raise  # the server's whole reply was read: the connection stays good
    except BaseException:
        connection.disconnect()  # a reply may still be on its way: never read it as ours
        raise


def queue(name: str) -> Queue:
    from rq import Queue

    return Queue(name, connection=redis_connection())


def mail_retry() -> Retry:
    """Backoff for transient SMTP failures, from MAIL_RETRY_INTERVALS."""
    from rq import Retry

    intervals = current_app.config["MAIL_RETRY_INTERVALS"]
    return Retry(max=len(intervals), interval=intervals)


# Bulk jobs run as long as they need (a batch behind a slow relay or a low
# SEND_RATE, a fan-out of a million recipients): RQ's default 180 s timeout
# would kill them mid-send. A dead worker is noticed by the lease instead.
NO_TIMEOUT = -1


def enqueue(
    func_path: str,
    *args: Any,
    queue_name: str = DEFAULT_QUEUE,
    job_id: str | None = None,
    retry: Retry | None = None,
    at: datetime | None = None,
    timeout: int | None = None,
) -> Job:
    """Put a job, named by its dotted path, on a queue (at a UTC time when `at` is given)."""
    options = {
        "job_id": job_id,
        "retry": retry,
        "result_ttl": RESULT_TTL,
        "failure_ttl": FAILURE_TTL,
        "job_timeout": timeout,
    }
    if at is not None:
        return queue(queue_name).enqueue_at(_aware(at), func_path, *args, **options)
    return queue(queue_name).enqueue(func_path, *args, **options)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- enqueue after commit ---------------------------------------------------


def after_commit(enqueue_fn: Callable[..., Any], *args: Any) -> None:
    """Call `enqueue_fn(*args)` once the current transaction commits; drop it on rollback."""
    db.session.info.setdefault("enqueue_after_commit", []).append((enqueue_fn, args))


@event.listens_for(Session, "after_commit")
def _enqueue_committed_work(session: Session) -> None:
    for enqueue_fn, args in session.info.pop("enqueue_after_commit", []):
        try:
            enqueue_fn(*args)
        except Exception:
            # The rows are committed; the reconciler enqueues them once Redis is back.
            log.warning("could not run %s%r after commit; the reconciler will", enqueue_fn, args)


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back_work(session: Session) -> None:
    session.info.pop("enqueue_after_commit", None)


# --- the jobs of the service ------------------------------------------------


def outgoing_mail_job_id(mail_id: int) -> str:
    """One job id per outgoing mail, so the reconciler can tell whether it is in Redis."""
    return f"outgoing-mail-{mail_id}"


def enqueue_outgoing_mail(mail_id: int) -> Job:
    """The job that sends one stored mail. No RQ timeout: waiting up to
    SMTP_DATA_TIMEOUT (600 s) for the server's answer is right, and RQ's default
    180 s would kill the job in that wait, so the mail would go again; the claim
    renewed while the job runs (service/lease.py) is what notices a dead worker."""
    return enqueue(
        "workers.mail.send_outgoing",
        mail_id,
        queue_name=MAIL_QUEUE,
        job_id=outgoing_mail_job_id(mail_id),
        retry=mail_retry(),
        timeout=NO_TIMEOUT,
    )


# The sign-ups' hand-off (issue 14). A sign-up's request stores its row and, in the
# same Redis round trip as its rate limits (service/subscriptions/rate_limits.py), before
# its commit (on SQLite before its INSERT, holding a lock file the job waits for),
# makes sure that one job, `workers.signup.process_signups`,
# is queued to work through every stored row: this key names the job that is queued
# and has not started yet. The job deletes the key, then waits for the sign-up
# transactions in flight (signup.wait_for_sign_ups_in_flight), then reads the rows:
# a row handed over before the delete is committed by the time the job reads it, and
# a row handed over after it sets the key again and queues the next job, so no row is
# left without a job to read it. Under load one job serves many sign-ups. The key
# expires, so a job lost from Redis holds nothing up for long; the reconciler queues
# a job meanwhile when the job the key names is no longer queued.
SIGNUP_DRAIN_QUEUED = "zpravodaj:signups:drain-queued"
SIGNUP_DRAIN_QUEUED_SECONDS = 60


def new_drain_job_id() -> str:
    return f"signup-drain-{secrets.token_hex(4)}"


def signal_signups() -> bool:
    """Queue the job that processes stored sign-ups, unless one is queued already (one
    round trip then); whether this queued it. An enqueue that fails leaves the rows to
    the reconciler, as any failed enqueue does."""
    job_id = new_drain_job_id()
    connection = redis_connection()
    if not connection.set(SIGNUP_DRAIN_QUEUED, job_id, nx=True, ex=SIGNUP_DRAIN_QUEUED_SECONDS):
        return False
    queue_signup_drain(job_id)
    return True


def ensure_signup_drain() -> bool:
    """The reconciler's: queue a drain job unless the one the key names is still waiting
    in the queue (a job lost from Redis, or taken by a worker killed before the job
    started, leaves the key behind); whether this queued one."""
    connection = redis_connection()
    named = connection.get(SIGNUP_DRAIN_QUEUED)
    if named is not None and connection.lpos(queue(MAIL_QUEUE).key, _text(named)) is not None:
        return False
    job_id = new_drain_job_id()
    connection.set(SIGNUP_DRAIN_QUEUED, job_id, ex=SIGNUP_DRAIN_QUEUED_SECONDS)
    queue_signup_drain(job_id)
    return True


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def queue_signup_drain(job_id: str) -> None:
    """Enqueue the drain job the key names; unset the key if that fails."""
    try:
        enqueue_signup_drain(job_id)
    except Exception:
        with contextlib.suppress(Exception):  # Redis gone: the key expires by itself
            redis_connection().delete(SIGNUP_DRAIN_QUEUED)
        raise


def enqueue_signup_drain(job_id: str | None = None) -> Job:
    from rq import Queue

    job = Queue.prepare_data(
        "workers.signup.process_signups",
        job_id=job_id or new_drain_job_id(),
        result_ttl=RESULT_TTL,
        failure_ttl=FAILURE_TTL,
    )
    return queue(MAIL_QUEUE).enqueue_many([job])[0]


def drain_started() -> None:
    """First thing in `process_signups`, before it reads a row (see SIGNUP_DRAIN_QUEUED)."""
    redis_connection().delete(SIGNUP_DRAIN_QUEUED)


def new_fan_out_job_id(issue_id: int) -> str:
    """Fresh per job: a fan-out continues in a new job after each slice."""
    return f"issue-{issue_id}-fan-out-{secrets.token_hex(4)}"


def enqueue_fan_out(issue_id: int, job_id: str) -> Job:
    """The job that turns an issue's recipients into delivery batches (a slice per job)."""
    return enqueue(
        "workers.delivery.fan_out",
        issue_id,
        queue_name=BULK_QUEUE,
        job_id=job_id,
        retry=mail_retry(),
        timeout=NO_TIMEOUT,
    )


def enqueue_cancel(issue_id: int) -> Job:
    """The job that cancels a cancelled issue's unsent deliveries, a batch at a time."""
    return enqueue(
        "workers.delivery.cancel_batches",
        issue_id,
        queue_name=BULK_QUEUE,
        job_id=f"issue-{issue_id}-cancel-{secrets.token_hex(4)}",
        timeout=NO_TIMEOUT,
    )


def start_job_id(issue_id: int, at: datetime) -> str:
    # The time is part of the id: rescheduling adds a job instead of
    # overwriting one, and the stale job finds the issue not due and stops.
    return f"issue-{issue_id}-start-{int(_aware(at).timestamp())}"


def enqueue_scheduled_start(issue_id: int, at: datetime) -> Job:
    """Start a scheduled issue at `at` (RQ's scheduler, run by every worker, fires it)."""
    return enqueue(
        "workers.delivery.start_scheduled",
        issue_id,
        queue_name=BULK_QUEUE,
        job_id=start_job_id(issue_id, at),
        at=at,
    )


def new_batch_job_id(batch_id: int) -> str:
    """A fresh id per enqueue: a batch re-enqueued after a crash never shares an id
    with the dead worker's job, which RQ may still mark failed when it notices."""
    return f"issue-batch-{batch_id}-{secrets.token_hex(4)}"


def batch_job(batch_id: int, job_id: str) -> dict[str, Any]:
    """Arguments for `Queue.prepare_data`, so batches go to Redis with `enqueue_many`."""
    return {
        "func": "workers.delivery.deliver_batch",
        "args": (batch_id,),
        "job_id": job_id,
        "retry": mail_retry(),
        "result_ttl": RESULT_TTL,
        "failure_ttl": FAILURE_TTL,
        "timeout": NO_TIMEOUT,
    }


def enqueue_batches(batches: list[tuple[int, str]]) -> list[Job]:
    """Enqueue delivery batches, given as (batch id, job id), in one Redis round trip."""
    if not batches:
        return []
    from rq import Queue

    bulk = queue(BULK_QUEUE)
    return bulk.enqueue_many(
        [Queue.prepare_data(**batch_job(batch_id, job_id)) for batch_id, job_id in batches]
    )


def enqueue_batch_in(batch_id: int, job_id: str, seconds: float) -> Job:
    """A delivery batch's job, scheduled `seconds` from now (RQ's scheduler enqueues it)."""
    arguments = batch_job(batch_id, job_id)
    return queue(BULK_QUEUE).enqueue_in(
        timedelta(seconds=seconds),
        arguments["func"],
        *arguments["args"],
        job_id=arguments["job_id"],
        retry=arguments["retry"],
        result_ttl=arguments["result_ttl"],
        failure_ttl=arguments["failure_ttl"],
        job_timeout=arguments["timeout"],
    )


def new_import_job_id(import_id: int) -> str:
    """Fresh per enqueue, as for batches: a stale job never shares an id with its successor."""
    return f"subscriber-import-{import_id}-{secrets.token_hex(4)}"


def enqueue_subscriber_import(import_id: int, job_id: str) -> Job:
    """The job that imports an uploaded CSV (service/subscriptions/import_jobs.py).

    On the bulk queue: it is bulk work, and the mail queue's confirmations
    must not wait behind it. No timeout: a lease notices a dead worker.
    """
    return enqueue(
        "workers.imports.run_import",
        import_id,
        queue_name=BULK_QUEUE,
        job_id=job_id,
        retry=mail_retry(),
        timeout=NO_TIMEOUT,
    )
