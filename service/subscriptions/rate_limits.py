"""A sign-up's Redis work in one round trip: its rate limits and its hand-off (issue 14).

`POST /subscribe` is limited per client IP (RATE_LIMIT_SUBSCRIBE_IP, every request
counts) and per address typed (RATE_LIMIT_SUBSCRIBE_ADDRESS, only accepted sign-ups
count: "abc" typed five times locks nothing). Each limit is a fixed window, as
Flask-Limiter's default strategy that served these limits before: a counter that
starts with the window's first request and expires with it.

Flask-Limiter spent several Redis round trips per request on these (a hit per IP
limit, a test of the address limit, two reads per response for its headers, the
address limit's hit after the response), and the hand-off of the stored sign-up to
the drain job was one more. Here one Lua script does it all, atomically: it tests
every limit, counts the request in those that count it, and, when a sign-up was
stored, sets the hand-off key (service/jobs.py, SIGNUP_DRAIN_QUEUED). Only when no
drain job was queued does the caller spend a second round trip on queueing one.
The view calls `check` once it knows its answer. On PostgreSQL that is after the
sign-up's INSERT and before its commit: a request over a limit rolls its row back and
gets the 429. On SQLite it is before the INSERT, so that no transaction stays open
across the round trip holding SQLite's one write lock, and the sign-up holds a lock
file the drain job waits for until it has committed (routes.py `_store`).

The script runs on the thread's own Redis connection (`jobs.command`), without
redis-py's client layer, which cost a third of the round trip's CPU.

Redis away: the limits are kept in this process's memory (as Flask-Limiter's
in-memory fallback did), the sign-up is stored all the same, and the reconciler
queues its drain job once Redis is back (the database is the source of truth).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from flask import current_app, g, request
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter
from redis.exceptions import NoScriptError, RedisError
from werkzeug.exceptions import TooManyRequests

from ..addresses import address_hash
from ..headers import add_missing
from ..jobs import (
    SIGNUP_DRAIN_QUEUED,
    SIGNUP_DRAIN_QUEUED_SECONDS,
    command,
    ensure_signup_drain,
    new_drain_job_id,
    queue_signup_drain,
    signal_signups,
)
from ..request_values import bound

log = logging.getLogger(__name__)

KEY_PREFIX = "zpravodaj-limits"

# KEYS: the limits' counters, then the hand-off key. ARGV[1]: the number of limits;
# ARGV[2]: the drain job's id to name in the hand-off key, '' for no hand-off; then per
# limit i: its amount, window (seconds) and cost (0: tested, not counted) at 3i .. 3i+2;
# last, the hand-off key's lifetime. All limits are tested before any is counted, so a
# refused request counts in none. Returns {refused limit's index or 0, the seconds left
# in that limit's (or else the first limit's) window, the first limit's remaining
# amount, 1 when this set the hand-off key}.
_SCRIPT = """
local count = tonumber(ARGV[1])
for i = 1, count do
  local current = tonumber(redis.call('GET', KEYS[i]) or '0')
  if current + 1 > tonumber(ARGV[3 * i]) then
    return {i, redis.call('TTL', KEYS[i]), 0, 0}
  end
end
local remaining, ttl = 0, 0
for i = count, 1, -1 do
  local amount, window, cost = tonumber(ARGV[3 * i]), tonumber(ARGV[3 * i + 1]),
    tonumber(ARGV[3 * i + 2])
  local current
  if cost > 0 then
    current = redis.call('INCRBY', KEYS[i], cost)
    if current == cost then
      redis.call('EXPIRE', KEYS[i], window)
    end
  else
    current = tonumber(redis.call('GET', KEYS[i]) or '0')
  end
  if i == 1 then
    remaining = amount - current
    ttl = redis.call('TTL', KEYS[i])
    if ttl < 0 then
      ttl = window
    end
  end
end
local queued = 0
if ARGV[2] ~= '' and redis.call('SET', KEYS[count + 1], ARGV[2], 'NX', 'EX',
    ARGV[3 * count + 3]) then
  queued = 1
end
return {0, ttl, remaining, queued}
"""

_SCRIPT_SHA = hashlib.sha1(_SCRIPT.encode()).hexdigest()
_FALLBACK_KEY = "zpravodaj_signup_limits_fallback"


@dataclass(frozen=True)
class Limit:
    item: RateLimitItem
    key: str
    counts: bool


class RateLimited(TooManyRequests):
    """A sign-up over one of its limits: the 429, with the limit's headers."""

    def __init__(self, headers: list[tuple[str, str]]) -> None:
        super().__init__()
        self.limit_headers = headers

    def get_headers(self, *args: Any, **kwargs: Any) -> list[tuple[str, str]]:
        return [*super().get_headers(*args, **kwargs), *self.limit_headers]


def _fallback() -> FixedWindowRateLimiter:
    return current_app.extensions.setdefault(_FALLBACK_KEY, FixedWindowRateLimiter(MemoryStorage()))


@lru_cache(maxsize=32)
def _parsed(text: str) -> tuple[RateLimitItem, ...]:
    return tuple(parse_many(text))


def _limits(typed_email: str, accepted: bool) -> list[Limit]:
    """The limits of this request, in the order Flask-Limiter took them (shortest window
    first): the first that refuses is the one the 429 names, and the first is the one
    the headers of an accepted request describe."""
    config = bound(current_app).config
    if not config["RATE_LIMITS"]:
        return []
    ip = bound(request).remote_addr or "127.0.0.1"
    # A keyed hash, not the address: the key lives in Redis for up to an hour, and
    # Redis is no place for personal data the privacy notice does not name.
    address = "subscribe-address:" + address_hash(typed_email.strip().casefold() or "-")
    found = [
        *_each(config["RATE_LIMIT_SUBSCRIBE_IP"], f"subscribe-ip/{ip}", counts=True),
        *_each(config["RATE_LIMIT_SUBSCRIBE_ADDRESS"], address, counts=accepted),
    ]
    return sorted(found, key=lambda limit: limit.item.GRANULARITY.seconds * limit.item.multiples)


def _each(text: str, scope: str, *, counts: bool) -> Iterable[Limit]:
    for item in _parsed(text):
        key = f"{KEY_PREFIX}/{scope}/{item.amount}/{item.multiples}/{item.GRANULARITY.name}"
        yield Limit(item, key, counts)


def check(typed_email: str, *, accepted: bool, hand_off: bool = False) -> None:
    """Test and count this request's limits and, with `hand_off` (a sign-up was stored
    in the open transaction), make sure a drain job is queued: one Redis round trip.

    `accepted`: the answer will be 202, so the request counts toward the address
    limit. Raises RateLimited (the caller's transaction is to be rolled back) when a
    limit refuses; the headers describing the limit go on the response either way.
    """
    limits = _limits(typed_email, accepted)
    if not limits and not hand_off:
        return  # limits off, nothing to hand over: no round trip
    job_id = new_drain_job_id() if hand_off else ""
    try:
        refused, ttl, remaining, queued = _run_script(limits, job_id)
    except RedisError:
        log.warning("Redis away: sign-up limits kept in memory, the hand-off to the reconciler")
        refused, ttl, remaining = _in_memory(limits)
        queued = 0
        if job_id:
            # The script may have run with its reply lost (a timeout, a dropped
            # connection): then the hand-off key names a job nobody queued, which would
            # hold the next sign-ups' hand-offs up until it expires. Queue one if so.
            with contextlib.suppress(Exception):
                ensure_signup_drain()
    if limits:
        limit = limits[refused - 1] if refused else limits[0]
        reset_at = int(time.time() + max(ttl, 0)) + 1
        g.signup_limit_headers = [
            ("X-RateLimit-Limit", str(limit.item.amount)),
            ("X-RateLimit-Remaining", str(max(remaining, 0))),
            ("X-RateLimit-Reset", str(reset_at)),
        ]
        if refused:
            headers = [
                *g.signup_limit_headers,
                ("Retry-After", str(max(int(reset_at - time.time()), 1))),
            ]
            log.info("sign-up rate limit %s exceeded", limit.item)
            raise RateLimited(headers)
    if queued:
        try:
            queue_signup_drain(job_id)
        except Exception:
            log.warning("could not queue the sign-up drain job; the reconciler will")


def hand_off() -> None:
    """Make sure a drain job is queued for a sign-up stored and committed already (SQLite
    without the sign-ups' lock file, see routes.py `_store`): one round trip, two when it
    queues the job. Redis away: the row waits for the reconciler,
    as any failed hand-off's does."""
    try:
        signal_signups()
    except Exception:
        log.warning("could not hand the sign-up over; the reconciler will")


def _run_script(limits: list[Limit], job_id: str) -> tuple[int, int, int, int]:
    """The script by its digest (EVALSHA), or by its text when Redis does not hold it yet
    (a new or restarted server: EVAL stores it for the next time)."""
    arguments: list[Any] = [len(limits), job_id]
    for limit in limits:
        arguments += [limit.item.amount, limit.item.get_expiry(), 1 if limit.counts else 0]
    arguments.append(SIGNUP_DRAIN_QUEUED_SECONDS)
    keys = [limit.key for limit in limits] + [SIGNUP_DRAIN_QUEUED]
    try:
        reply = command("EVALSHA", _SCRIPT_SHA, len(keys), *keys, *arguments)
    except NoScriptError:
        reply = command("EVAL", _SCRIPT, len(keys), *keys, *arguments)
    refused, ttl, remaining, queued = reply
    return int(refused), int(ttl), int(remaining), int(queued)


def _in_memory(limits: list[Limit]) -> tuple[int, int, int]:
    """The script's answer from this process's memory (Redis away)."""
    limiter = _fallback()
    for index, limit in enumerate(limits, start=1):
        if not limiter.test(limit.item, limit.key):
            reset, _ = limiter.get_window_stats(limit.item, limit.key)
            return index, int(reset - time.time()), 0
    for limit in limits:
        if limit.counts:
            limiter.hit(limit.item, limit.key)
    if not limits:
        return 0, 0, 0
    reset, remaining = limiter.get_window_stats(limits[0].item, limits[0].key)
    return 0, int(reset - time.time()), remaining


def add_headers(response: Any) -> Any:
    """The headers of the limit `check` saw, on the sign-up's answer (202, 400, 422)."""
    add_missing(response.headers, bound(g).pop("signup_limit_headers", None) or [])
    return response
