"""The shared sending rate limit, counted in a real Redis with a controlled clock."""

from __future__ import annotations

import pytest
from redis import Redis

from workers.rate_limit import SendRateLimiter, parse_domain_rates


class FakeTime:
    """A clock that only moves when the limiter sleeps."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def redis(redis_url) -> Redis:
    connection = Redis.from_url(redis_url)
    connection.flushdb()
    yield connection
    connection.flushdb()


def test_global_limit_is_shared_by_every_limiter(redis):
    time = FakeTime()
    # Two workers, one Redis: together they stay within 5 messages a second.
    workers = [SendRateLimiter(redis, 5, {}, clock=time.clock, sleep=time.sleep) for _ in range(2)]
    for n in range(20):
        workers[n % 2].wait("seznam.cz")
    assert time.now - 1_000_000.0 >= 3  # 20 messages at 5/s span at least four windows
    assert len(time.slept) == 3


def test_domain_limit_throttles_only_that_domain(redis):
    time = FakeTime()
    limiter = SendRateLimiter(
        redis, 0, parse_domain_rates("seznam.cz=2"), clock=time.clock, sleep=time.sleep
    )
    for _ in range(10):
        limiter.wait("gmail.com")
    assert time.slept == []
    for _ in range(4):
        limiter.wait("Seznam.cz")
    assert len(time.slept) == 1


def test_no_limits_means_no_redis_traffic(redis):
    limiter = SendRateLimiter(redis, 0, {})
    limiter.wait("seznam.cz")
    assert redis.dbsize() == 0


def test_domain_rates_are_parsed_from_the_setting():
    assert parse_domain_rates("") == {}
    assert parse_domain_rates("10") == {"*": 10.0}
    assert parse_domain_rates("seznam.cz=5, *=20") == {"seznam.cz": 5.0, "*": 20.0}
