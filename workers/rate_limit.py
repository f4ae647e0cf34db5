"""Sending rate limits shared by every worker, counted in Redis.

SEND_RATE caps messages per second across all workers (a relay's quota);
SEND_RATE_PER_DOMAIN caps them per recipient domain (e.g. `seznam.cz=5,*=20`:
large providers throttle bursts from one sender). Fixed one-second windows
with INCR: simple, atomic, and a worker that dies holds nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from redis import Redis

KEY_PREFIX = "zpravodaj:send-rate"


def parse_domain_rates(spec: str) -> dict[str, float]:
    """`seznam.cz=5,gmail.com=10,*=20` or a bare number for every domain."""
    spec = spec.strip()
    if not spec:
        return {}
    if "=" not in spec:
        return {"*": float(spec)}
    rates: dict[str, float] = {}
    for part in spec.split(","):
        if not part.strip():
            continue
        domain, _, value = part.partition("=")
        rates[domain.strip().lower()] = float(value)
    return rates


class SendRateLimiter:
    """Blocks in `wait(domain)` until sending one more message keeps within the limits."""

    def __init__(
        self,
        redis: Redis,
        per_second: float,
        per_domain: dict[str, float],
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.redis = redis
        self.per_second = per_second
        self.per_domain = per_domain
        self.clock = clock
        self.sleep = sleep

    @property
    def active(self) -> bool:
        return bool(self.per_second) or bool(self.per_domain)

    def _domain_limit(self, domain: str) -> float:
        return self.per_domain.get(domain, self.per_domain.get("*", 0))

    def wait(self, domain: str) -> None:
        if not self.active:
            return
        domain = domain.lower()
        limits = []
        if self.per_second:
            limits.append(("all", self.per_second))
        if limit := self._domain_limit(domain):
            limits.append((f"domain:{domain}", limit))
        for scope, limit in limits:
            self._take(scope, limit)

    def _take(self, scope: str, limit: float) -> None:
        # Limits below 1/s are counted in longer windows: 0.5/s is 1 per 2 s.
        window = max(1.0, 1.0 / limit)
        allowed = max(1, int(limit * window))
        while True:
            now = self.clock()
            slot = int(now // window)
            key = f"{KEY_PREFIX}:{scope}:{slot}"
            pipe = self.redis.pipeline()
            pipe.incr(key)
            pipe.expire(key, int(window) + 2)
            count = pipe.execute()[0]
            if count <= allowed:
                return
            self.sleep(max((slot + 1) * window - now, 0.001))
