"""The Redis connection and enqueueing by dotted name.

The service never imports `workers`: it names job functions as strings, as
microblog's `launch_task` does, so the web process stays free of SMTP code.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app
from redis import Redis
from rq import Queue, Retry
from rq.job import Job

# Queues named by purpose: a flood of one kind never delays the other.
MAIL_QUEUE = "mail"  # single transactional mails: confirmations and the like
DEFAULT_QUEUE = "default"  # housekeeping
ALL_QUEUES = (MAIL_QUEUE, DEFAULT_QUEUE)


def init_app(app: Flask) -> None:
    # Short socket timeouts: a dead Redis must not hang a web request.
    app.extensions["redis"] = Redis.from_url(
        app.config["REDIS_URL"], socket_connect_timeout=2, socket_timeout=5
    )


def redis_connection() -> Redis:
    return current_app.extensions["redis"]


def queue(name: str) -> Queue:
    return Queue(name, connection=redis_connection())


def mail_retry() -> Retry:
    """Backoff for transient SMTP failures, from MAIL_RETRY_INTERVALS."""
    intervals = current_app.config["MAIL_RETRY_INTERVALS"]
    return Retry(max=len(intervals), interval=intervals)


def enqueue(
    func_path: str,
    *args: Any,
    queue_name: str = DEFAULT_QUEUE,
    job_id: str | None = None,
    retry: Retry | None = None,
) -> Job:
    """Put a job, named by its dotted path, on a queue."""
    return queue(queue_name).enqueue(
        func_path,
        *args,
        job_id=job_id,
        retry=retry,
        result_ttl=3600,
        failure_ttl=7 * 24 * 3600,
    )


def outgoing_mail_job_id(mail_id: int) -> str:
    """One job id per outgoing mail, so the reconciler can tell whether it is in Redis."""
    return f"outgoing-mail-{mail_id}"


def enqueue_outgoing_mail(mail_id: int) -> Job:
    return enqueue(
        "workers.mail.send_outgoing",
        mail_id,
        queue_name=MAIL_QUEUE,
        job_id=outgoing_mail_job_id(mail_id),
        retry=mail_retry(),
    )
