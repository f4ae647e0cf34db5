"""A lease renewed from a thread of its own while the job holding it works.

A batch (workers/delivery.py), a single mail (workers/mail.py) or an admin's
CSV import (service/subscriptions/import_jobs.py) is claimed with a lease: a
row whose heartbeat or claim time, once older than the lease, lets the
reconciler give the work to another worker. The job cannot renew it
while it waits on the SMTP server (up to SMTP_TIMEOUT per command and
SMTP_DATA_TIMEOUT for the answer to a whole message), and a lease that ran
out under a live holder gets the message in flight sent a second time by the
next holder. So the holder renews it from a `LeaseKeeper` thread for as long
as it works: a lease runs out only when its holder is gone (killed, or its
whole process frozen). It lives in `service` because the import job's code
does (and `service` never imports `workers`).
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

log = logging.getLogger(__name__)

# The shortest interval between two renewals, whatever the lease.
MIN_INTERVAL = 0.5
# How much longer than an interval `stop` waits for a renewal under way.
STOP_GRACE_SECONDS = 5.0


class Renewal(Protocol):
    """What renews one lease: called in the keeper's thread only, on a database
    connection of its own (opened on the first call, closed by `close`)."""

    def __call__(self) -> bool:
        """Renew the lease; False when it is no longer ours (another holder has it)."""
        ...

    def close(self) -> None: ...


class LeaseKeeper(threading.Thread):
    """Calls `renewal` every `interval` seconds until stopped or the lease is lost.

    `lost` is set once a renewal finds the lease taken: the holder stops at its
    next step. A renewal that fails (the database away a moment) is logged and
    tried again at the next interval.
    """

    def __init__(self, renewal: Renewal, interval: float, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.renewal = renewal
        self.interval = max(MIN_INTERVAL, interval)
        self.stopped = threading.Event()
        self.lost = False

    def run(self) -> None:
        try:
            while not self.stopped.wait(self.interval):
                try:
                    if not self.renewal():
                        self.lost = True
                        return
                except Exception as exc:
                    log.warning("%s: lease not renewed (%s); trying again", self.name, exc)
        finally:
            try:
                self.renewal.close()
            except Exception as exc:
                log.debug("%s: closing its connection failed: %s", self.name, exc)

    def stop(self) -> None:
        """Stop renewing, and wait a while for a renewal under way to end.

        Never for ever: a renewal may be waiting on a lock that the holder's own
        open transaction keeps, and would then never end while we wait. A late
        renewal is harmless: it matches only while the lease is still ours.
        """
        self.stopped.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(self.interval + STOP_GRACE_SECONDS)
            if self.is_alive():
                log.warning("%s: a renewal is still under way; not waiting for it", self.name)
