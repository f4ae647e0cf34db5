"""What the workers tell the web process through Redis: that they live, and whether the
SMTP relay answers them.

The web process never talks SMTP (README, "How the parts fit"), so `/readyz`
and `zpravodaj status` learn the relay's state from the workers: every worker
writes a heartbeat on each of RQ's heartbeats, and records the outcome of every
SMTP connection it opens (a send or a probe). Both live in Redis: they only
matter while Redis answers, and a Redis restarted empty is refilled within a
heartbeat. The workers write with `record_*`, the web reads with `read_*`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only the connection's types: `zpravodaj status` imports this module
    from redis import Redis
    from redis.client import Pipeline
    from redis.typing import EncodableT, FieldT

# A sorted set: worker name -> time of its last heartbeat (Unix seconds).
HEARTBEATS_KEY = "zpravodaj:worker-heartbeats"
# A hash: ok ("1"/"0"), checked_at, last_success_at (Unix seconds), error, worker.
SMTP_KEY = "zpravodaj:smtp"
# Heartbeats older than this are dropped from the set by the workers themselves.
FORGET_AFTER_SECONDS = 24 * 3600


def record_heartbeat(connection: Redis | Pipeline, worker: str, now: float | None = None) -> None:
    """Note that `worker` is alive (and forget workers silent for a day)."""
    now = time.time() if now is None else now
    # `connection` may be a pipeline of RQ's heartbeat: then these go with it.
    connection.zadd(HEARTBEATS_KEY, {worker: now})
    connection.zremrangebyscore(HEARTBEATS_KEY, "-inf", now - FORGET_AFTER_SECONDS)


def forget_worker(connection: Redis, worker: str) -> None:
    """A worker that stops takes itself off the list."""
    connection.zrem(HEARTBEATS_KEY, worker)


def record_smtp(
    connection: Redis, error: str | None, worker: str = "", now: float | None = None
) -> None:
    """Record one SMTP connection's outcome: `error` None when the relay answered."""
    now = time.time() if now is None else now
    fields: dict[FieldT, EncodableT] = {
        "ok": "0" if error else "1",
        "checked_at": repr(now),
        "worker": worker,
    }
    fields["error"] = (error or "")[:500]
    if error is None:
        fields["last_success_at"] = repr(now)
    connection.hset(SMTP_KEY, mapping=fields)


@dataclass(frozen=True)
class Heartbeats:
    """The workers seen within the window, and the age of the freshest heartbeat."""

    alive: int
    newest_age: float | None  # seconds; None: no worker ever reported


def read_heartbeats(connection: Redis, window: float, now: float | None = None) -> Heartbeats:
    now = time.time() if now is None else now
    newest = connection.zrange(HEARTBEATS_KEY, -1, -1, withscores=True)
    alive = connection.zcount(HEARTBEATS_KEY, now - window, "+inf")
    return Heartbeats(alive=alive, newest_age=now - float(newest[0][1]) if newest else None)


@dataclass(frozen=True)
class SmtpReport:
    """The relay as the workers last saw it."""

    ok: bool
    checked_age: float  # seconds since the last connection or probe
    last_success_age: float | None
    error: str


def _text(value: bytes | str) -> str:
    """A Redis reply as text, whether or not the connection decodes replies itself."""
    return value.decode() if isinstance(value, bytes) else value


def read_smtp(connection: Redis, now: float | None = None) -> SmtpReport | None:
    """The last recorded SMTP outcome; None when no worker has connected yet."""
    now = time.time() if now is None else now
    raw = {_text(k): _text(v) for k, v in connection.hgetall(SMTP_KEY).items()}
    if "checked_at" not in raw:
        return None
    success = raw.get("last_success_at")
    return SmtpReport(
        ok=raw.get("ok") == "1",
        checked_age=now - float(raw["checked_at"]),
        last_success_age=now - float(success) if success else None,
        error=raw.get("error", ""),
    )
