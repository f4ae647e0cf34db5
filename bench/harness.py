"""What the benchmarks share: the project on the path, the app they measure on a
private Redis and a temporary SQLite file, a counting SMTP sink, medians and ratios.

Imported first by each script (`import harness`), which puts the checkout on
sys.path: this one, or the one ZPRAVODAJ_ROOT names (to measure an older
checkout with today's script, e.g. profile_signup.py before/after).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(os.environ.get("ZPRAVODAJ_ROOT") or Path(__file__).resolve().parent.parent)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiosmtpd.controller import Controller  # noqa: E402

from service import create_app  # noqa: E402
from service.dev.processes import free_port  # noqa: E402
from service.dev.redis_server import PrivateRedis  # noqa: E402
from service.extensions import db  # noqa: E402
from service.models import MailingList  # noqa: E402

# A closed port on loopback: where no worker runs, nothing is ever sent.
NO_SMTP = "smtp://127.0.0.1:9"
LIST_NAME = "Zpravodaj sociálního bydlení"


@contextmanager
def signup_app(smtp_url: str = NO_SMTP, **settings: Any) -> Iterator[tuple[Any, PrivateRedis]]:
    """(app, redis): the app on a temporary SQLite file and a private Redis, inside its
    context, with the `zpravodaj` list; no rate limits, and no hourly cap on confirmation
    mails (it would shorten a repeated address's path: measure the paths themselves)."""
    with PrivateRedis() as redis, tempfile.TemporaryDirectory() as tmp:
        app = create_app(
            {
                "DATABASE_URL": f"sqlite:///{tmp}/bench.sqlite3",
                "REDIS_URL": redis.url,
                "SMTP_URL": smtp_url,
                "SECRET_KEY": "bench",
                "RATE_LIMITS": False,
                "CONFIRMATION_MAILS_PER_HOUR": 10**9,
                **settings,
            }
        )
        with app.app_context():
            db.create_all()
            db.session.add(MailingList(slug="zpravodaj", name=LIST_NAME))
            db.session.commit()
            yield app, redis


class CountingSink:
    """Accepts every message and only counts it, noting when the first one came."""

    def __init__(self) -> None:
        self.count = 0
        self.signed = 0
        self.first_at: float | None = None
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:
        self.received(envelope.content)
        return "250 OK"

    def received(self, content: bytes) -> None:
        with self.lock:
            self.count += 1
            self.signed += content.startswith(b"DKIM-Signature:")
            if self.first_at is None:
                self.first_at = time.perf_counter()

    def reset(self) -> None:
        with self.lock:
            self.count, self.signed, self.first_at = 0, 0, None


def start_counting_sink(lean: bool = False) -> tuple[CountingSink, int, Any]:
    """A CountingSink on a free port of 127.0.0.1: (sink, port, its controller to stop).

    `lean`: a minimal SMTP responder (LeanSmtp) instead of aiosmtpd, whose own
    CPU per message (≈ 1–2 ms, parsing the message line by line in Python)
    shares the two cores with what is measured and caps both the baseline and
    the pipeline (two workers cannot beat one when one already fills it).
    """
    sink = CountingSink()
    port = free_port("127.0.0.1")
    controller: Any = (
        LeanSmtp(sink, port) if lean else Controller(sink, port=port, hostname="127.0.0.1")
    )
    controller.start()
    asyncio.set_event_loop(asyncio.new_event_loop())
    return sink, port, controller


class _LeanSession(asyncio.Protocol):
    """Answers 250 to everything, 354 to DATA, and counts each message at its final dot."""

    def __init__(self, sink: CountingSink) -> None:
        self.sink = sink
        self.buffer = b""
        self.in_data = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(b"220 lean sink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.in_data:
                end = self.buffer.find(b"\r\n.\r\n")
                if end < 0:
                    return
                content, self.buffer = self.buffer[: end + 2], self.buffer[end + 5 :]
                self.in_data = False
                self.sink.received(content)
                self.transport.write(b"250 OK\r\n")
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                return
            verb, self.buffer = self.buffer[:4].upper(), self.buffer[end + 2 :]
            if verb == b"EHLO":
                self.transport.write(b"250-lean\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 0\r\n")
            elif verb == b"DATA":
                self.in_data = True
                self.transport.write(b"354 go on\r\n")
            elif verb == b"QUIT":
                self.transport.write(b"221 bye\r\n")
                self.transport.close()
                return
            else:  # HELO, MAIL, RCPT, RSET, NOOP
                self.transport.write(b"250 OK\r\n")


class LeanSmtp:
    """_LeanSession's server in a thread of its own (start/stop like aiosmtpd's Controller)."""

    def __init__(self, sink: CountingSink, port: int) -> None:
        self.sink, self.port = sink, port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(
            self.loop.create_server(lambda: _LeanSession(self.sink), "127.0.0.1", self.port),
            self.loop,
        ).result(30)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


def delivery_config(database_url: str, redis_url: str, smtp_port: int) -> dict[str, Any]:
    """The settings of the delivery benchmarks' app and workers."""
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "SECRET_KEY": "bench",
        "BASE_URL": "https://zpravodaj.example",
    }


def database_kind(database_url: str) -> str:
    return "PostgreSQL" if database_url.startswith("postgres") else "SQLite"


def median_of(results: list[Mapping[str, float]]) -> dict[str, float]:
    """The median of each figure over runs (dicts with the same keys)."""
    return {key: statistics.median(result[key] for result in results) for key in results[0]}


def ratio(numerator: float, denominator: float) -> str:
    """The ratio as the benchmarks print it: two decimals."""
    return f"{numerator / denominator:.2f}"
