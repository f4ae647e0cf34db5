"""The lease keeper's thread (service/lease.py) never holds its holder up for ever."""

from __future__ import annotations

import logging
import threading

import service.lease
from service.lease import LeaseKeeper


class StuckRenewal:
    """A renewal that waits on a lock it will not get until the test allows it, as a
    renewal would behind the holder's own open transaction."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.closed = threading.Event()

    def __call__(self) -> bool:
        self.entered.set()
        assert self.release.wait(60), "the test never released the renewal"
        return True

    def close(self) -> None:
        self.closed.set()


def test_stop_returns_while_a_renewal_is_stuck(monkeypatch, caplog):
    monkeypatch.setattr(service.lease, "STOP_GRACE_SECONDS", 0.1)
    renewal = StuckRenewal()
    keeper = LeaseKeeper(renewal, 0.5, name="batch-1-lease")
    keeper.start()
    assert renewal.entered.wait(60), "the keeper never renewed"
    with caplog.at_level(logging.WARNING, logger="service.lease"):
        keeper.stop()  # before the fix: joined the stuck thread for ever
    assert keeper.is_alive()
    assert "still under way" in caplog.text
    renewal.release.set()
    keeper.join(60)
    assert not keeper.is_alive()
    assert renewal.closed.is_set()
