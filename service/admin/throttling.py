"""Slowing down password guessing without locking the owner out.

Three layers, each keyed so that a guesser cannot lock anyone else out:

- Flask-Limiter limits every sign-in POST per client address
  (`RATE_LIMIT_LOGIN_IP`) and per account *and* client address
  (`RATE_LIMIT_LOGIN_ACCOUNT`), see service/admin/auth.py.
- A growing delay per account and client address (exponential backoff, kept
  in Redis): after `FREE_FAILURES` wrong passwords in a row, that client must
  wait 2, 4, 8 … up to `MAX_DELAY_SECONDS` before trying the account again.
  The password is not even checked while it waits. A success resets it.
- Every failed sign-in is logged (account and client address, never the
  password typed) and counted per account for the admin's account list.

A limit per account alone (what this replaced) let anyone lock the owner out
with five wrong passwords a minute; here the owner's own browser and network
keep their own count. The cost: a guesser with many addresses gets a budget
per address (README, Security, residual risks).

Redis holds only counters that may be lost: if it is unreachable or flushed,
sign-in still works (the limits fail open, as Flask-Limiter's do here).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
import uuid

from flask import current_app
from flask_limiter.util import get_remote_address
from redis import RedisError

from ..jobs import redis_connection
from ..models import User

FREE_FAILURES = 3
MAX_DELAY_SECONDS = 15 * 60
# Consecutive failures are remembered this long after the last one.
FAILURE_MEMORY_SECONDS = 24 * 3600
# The admin shows failed sign-ins of the last day.
FAILURE_WINDOW_SECONDS = 24 * 3600
_PREFIX = "zpravodaj-login"


def client_address() -> str:
    """The address rate limits key on (the real client behind PROXY_FIX proxies)."""
    return get_remote_address() or "unknown"


def _pair(email: str, client: str) -> str:
    # Hashed: typed addresses (or passwords typed into the address field) stay out of Redis keys.
    digest = hashlib.sha256(f"{email}\0{client}".encode()).hexdigest()[:32]
    return f"{_PREFIX}:pair:{digest}"


def wait_seconds(email: str, client: str) -> int:
    """How long this client must wait before trying this account again (0: go ahead)."""
    try:
        remaining_ms = redis_connection().pttl(_pair(email, client) + ":wait")
    except RedisError:
        current_app.logger.warning("sign-in backoff unavailable: Redis does not answer")
        return 0
    return -(-remaining_ms // 1000) if remaining_ms > 0 else 0


def delay_after(failures: int) -> int:
    """Seconds to wait after this many failures in a row: 0, 0, 0, 2, 4, 8, … 900."""
    if failures <= FREE_FAILURES:
        return 0
    return min(2 ** (failures - FREE_FAILURES), MAX_DELAY_SECONDS)


def record_failure(email: str, client: str, user: User | None) -> int:
    """Count a wrong password; returns the delay now imposed on this client for this account."""
    if user is not None:
        current_app.logger.warning(
            "admin sign-in failed for account %s (%s) from %s", user.id, user.email, client
        )
    else:
        # The typed text is not logged: it may be a password typed into the wrong field.
        current_app.logger.warning("admin sign-in failed for an unknown account from %s", client)
    key = _pair(email, client)
    try:
        connection = redis_connection()
        with connection.pipeline() as pipe:
            pipe.incr(key + ":failures")
            pipe.expire(key + ":failures", FAILURE_MEMORY_SECONDS)
            failures = pipe.execute()[0]
        delay = delay_after(failures)
        if delay:
            connection.set(key + ":wait", 1, ex=delay)
        if user is not None:
            now = time.time()
            counted = f"{_PREFIX}:failed:{user.id}"
            with connection.pipeline() as pipe:
                pipe.zadd(counted, {f"{now:.6f}:{uuid.uuid4().hex[:8]}": now})
                pipe.zremrangebyscore(counted, "-inf", now - FAILURE_WINDOW_SECONDS)
                pipe.expire(counted, FAILURE_WINDOW_SECONDS)
                pipe.execute()
    except RedisError:
        current_app.logger.warning("sign-in backoff unavailable: Redis does not answer")
        return 0
    return delay


def record_success(email: str, client: str) -> None:
    """The right password: this client's count for this account starts again."""
    key = _pair(email, client)
    with contextlib.suppress(RedisError):
        redis_connection().delete(key + ":failures", key + ":wait")


def failures_last_day(user_ids: list[int]) -> dict[int, int]:
    """Failed sign-ins of each account over the last 24 hours (0 when Redis does not answer)."""
    since = time.time() - FAILURE_WINDOW_SECONDS
    try:
        with redis_connection().pipeline() as pipe:
            for user_id in user_ids:
                pipe.zcount(f"{_PREFIX}:failed:{user_id}", since, "+inf")
            counts = pipe.execute()
    except RedisError:
        return dict.fromkeys(user_ids, 0)
    return dict(zip(user_ids, counts, strict=True))
