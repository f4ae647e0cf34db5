"""What the benchmarks share: the project on the path, the app they measure on a
private Redis and a temporary SQLite file, a counting SMTP sink, medians and ratios.

Imported first by each script (`import harness`), which puts the checkout on
sys.path: this one, or the one ZPRAVODAJ_ROOT names (to measure an older
checkout with today's script, e.g. profile_signup.py before/after).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import socket
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
from aiosmtpd.smtp import SMTP  # noqa: E402

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


def start_counting_sink(lean: bool = False, processes: int = 0) -> tuple[Any, int, Any]:
    """A counting sink on a free port of 127.0.0.1: (sink, port, its controller to stop).

    By default aiosmtpd in a thread of this process: one Python thread serves every
    connection, and its CPU per message (≈ 0.8–2 ms, parsing the message line by
    line) shares the GIL and the two cores with what is measured.
    `lean`: a minimal SMTP responder (LeanSmtp) in that thread instead of aiosmtpd.
    `processes` > 0: aiosmtpd in that many processes of its own, each serving one
    connection at a time from one listening socket (ProcessSink), as a real MTA's
    smtpd processes serve concurrent connections in parallel; then the sink is a
    SharedCountingSink.
    """
    port = free_port("127.0.0.1")
    if processes:
        shared = SharedCountingSink()
        pool = ProcessSink(shared, port, processes)
        pool.start()
        return shared, port, pool
    sink = CountingSink()
    controller: Any = (
        LeanSmtp(sink, port) if lean else Controller(sink, port=port, hostname="127.0.0.1")
    )
    controller.start()
    asyncio.set_event_loop(asyncio.new_event_loop())
    return sink, port, controller


def sink_thread_id(controller: Any) -> int | None:
    """The native id of the thread serving an in-process sink (None for ProcessSink)."""
    thread = getattr(controller, "_thread", None) or getattr(controller, "thread", None)
    return getattr(thread, "native_id", None)


class SharedCountingSink(CountingSink):
    """A CountingSink whose figures live in shared memory, written by ProcessSink's
    processes (forked after it is made) and read by the benchmark."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("fork")
        # count, signed, first_at (perf_counter: CLOCK_MONOTONIC, the same in every process)
        self._values = context.RawArray("d", 3)
        self.lock = context.Lock()  # type: ignore[assignment]
        self.reset()

    count = property(lambda self: int(self._values[0]))  # type: ignore[assignment]
    signed = property(lambda self: int(self._values[1]))  # type: ignore[assignment]
    first_at = property(lambda self: self._values[2] or None)  # type: ignore[assignment]

    def received(self, content: bytes) -> None:
        with self.lock:
            self._values[0] += 1
            self._values[1] += content.startswith(b"DKIM-Signature:")
            if not self._values[2]:
                self._values[2] = time.perf_counter()

    def reset(self) -> None:
        with self.lock:
            self._values[0] = self._values[1] = self._values[2] = 0.0


class _OneSession(SMTP):
    """aiosmtpd's session, telling its process when the connection is gone."""

    def __init__(self, handler: Any, closed: asyncio.Future, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._closed = closed

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        if not self._closed.done():
            self._closed.set_result(None)


def _die_with_parent() -> None:
    """Linux: this process gets SIGTERM when the benchmark ends, however it ends."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ProcessSink:
    """aiosmtpd in `processes` forked processes accepting from one listening socket, each
    serving one connection at a time (the kernel hands a new connection to a process
    waiting in accept()), as Postfix's smtpd processes do: concurrent connections are
    served in parallel, a lone connection by one process, as with one thread."""

    def __init__(self, sink: SharedCountingSink, port: int, processes: int) -> None:
        self.sink, self.port, self.processes = sink, port, processes
        self.pids: list[int] = []

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        for _ in range(self.processes):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the sink's process
                code = 0
                try:
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    _die_with_parent()
                    signal.signal(signal.SIGINT, signal.SIG_IGN)
                    self._serve(listener)
                except BaseException:
                    code = 1
                os._exit(code)
            self.pids.append(pid)
        listener.close()

    def _serve(self, listener: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        while True:
            connection, _ = listener.accept()
            closed = loop.create_future()
            session = _OneSession(
                self.sink, closed, hostname="sink.localhost", enable_SMTPUTF8=True, loop=loop
            )
            loop.run_until_complete(loop.connect_accepted_socket(lambda s=session: s, connection))
            loop.run_until_complete(closed)
            loop.run_until_complete(asyncio.sleep(0))  # the session's cancelled coroutine ends

    def stop(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in self.pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


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
