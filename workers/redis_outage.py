"""Riding out a Redis outage: the worker's own Redis connection waits for Redis to return.

RQ's worker quits on a Redis error anywhere outside its dequeue loop (a
heartbeat while a job runs, the job's status after it, registry cleaning): it
logs "found an unhandled exception, quitting..." and the worker is gone until
a person restarts it. Rather than patch each of those places, the connection
RQ works through retries every command on a connection error or timeout, with
exponential backoff capped at `MAX_BACKOFF_SECONDS`, for as long as the outage
lasts; the worker simply pauses. One warning per outage and process, one line
when Redis is back.

Redis restarted empty loses only transport: the reconciler re-enqueues from
the database what is unfinished (workers/reconcile.py).

The job code itself keeps the app's Redis connection (short timeouts, no
retries): a job blocked on Redis while it holds a claimed delivery would let
another worker send that message too once Redis returns.

When the worker is asked to stop, waiting ends at the shutdown deadline
(`give_up_at`): a worker must exit even while Redis stays away.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError
from redis.retry import Retry

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_BACKOFF_SECONDS = 10.0
RETRIED_ERRORS = (ConnectionError, TimeoutError, OSError)


class Outage:
    """This process's view of Redis: since when it is away, and when to stop waiting.

    After a restart every pooled connection still holds a socket to the old
    server and fails once on its next use: failures within RELAPSE_SECONDS of
    Redis answering again belong to the same outage and are not logged again.
    """

    RELAPSE_SECONDS = 10.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.since: float | None = None
        self.began = 0.0
        self.back_at: float | None = None
        self.quiet = False
        self.give_up_at: float | None = None

    def failed(self, error: Exception) -> None:
        with self._lock:
            if self.since is not None:
                return
            now = time.monotonic()
            relapse = self.back_at is not None and now - self.back_at < self.RELAPSE_SECONDS
            self.since, self.quiet = now, relapse
            if not relapse:
                self.began = now
        if not relapse:
            log.warning(
                "Redis unreachable (%s); waiting for it, retrying up to every %.0f s",
                error,
                MAX_BACKOFF_SECONDS,
            )

    def answered(self) -> None:
        if self.since is None:  # the common case: no lock, no work
            return
        with self._lock:
            if self.since is None:
                return
            self.since, self.back_at = None, time.monotonic()
            quiet = self.quiet
        if not quiet:
            log.warning("Redis is back after %.0f s", self.back_at - self.began)

    def keep_waiting(self) -> bool:
        return self.give_up_at is None or time.monotonic() < self.give_up_at

    def stop_waiting_after(self, seconds: float) -> None:
        """From now on, give up on Redis `seconds` from now (the worker is stopping)."""
        self.give_up_at = time.monotonic() + seconds


outage = Outage()


class PatientRetry(Retry):
    """Retries a Redis command for as long as the outage lasts (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__(ExponentialBackoff(cap=MAX_BACKOFF_SECONDS, base=0.25), -1, RETRIED_ERRORS)

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        failures = 0
        while True:
            try:
                result = do()
            except RETRIED_ERRORS as error:
                if is_retryable is not None and not is_retryable(error):
                    raise
                failures += 1
                # `fail` drops the broken connection (and re-raises what may not be retried).
                if with_failure_count:
                    fail(error, failures)
                else:
                    fail(error)
                if not outage.keep_waiting():
                    raise
                outage.failed(error)
                time.sleep(self._backoff.compute(failures))
                continue
            outage.answered()
            return result


def patient_redis(url: str) -> Redis:
    """The worker's connection for RQ's own bookkeeping: it waits out Redis outages."""
    return Redis.from_url(
        url,
        retry=PatientRetry(),
        retry_on_error=[ConnectionError, TimeoutError],
        socket_connect_timeout=2,
        health_check_interval=30,
    )
