"""gunicorn's production settings: `gunicorn --config python:service.gunicorn_conf`.

Part of the package, so an installed wheel has it too (the top-level
gunicorn.conf.py of a checkout imports this). Each default can be changed
through the environment (README.md, Deployment):

- `WEB_BIND`: where to listen, comma-separated (default `127.0.0.1:8000`: the
  reverse proxy on the same host is the only client).
- `WEB_CONCURRENCY`: processes (default 2 × cores + 1, gunicorn's advice);
  `WEB_THREADS`: threads per process (default 1).
- `WEB_TIMEOUT`: seconds a request may take before its process is replaced
  (default 30; sending is the workers' job, so no request needs long).
- `FORWARDED_ALLOW_IPS`: the addresses of the reverse proxies (default
  loopback). `X-Forwarded-*`, `Forwarded` and `X-Real-IP` from any other peer
  are dropped before the app sees them, so the app's ProxyFix (`PROXY_FIX`
  hops) believes only what a configured proxy wrote.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from . import __version__

if TYPE_CHECKING:  # gunicorn imports this module: no gunicorn imports at run time
    from gunicorn.arbiter import Arbiter
    from gunicorn.http.message import Request
    from gunicorn.workers.base import Worker


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


wsgi_app = "service:create_app()"
proc_name = "zpravodaj-web"
bind = [part.strip() for part in os.environ.get("WEB_BIND", "127.0.0.1:8000").split(",")]
workers = _int("WEB_CONCURRENCY", 2 * (os.cpu_count() or 1) + 1)
threads = _int("WEB_THREADS", 1)
timeout = _int("WEB_TIMEOUT", 30)
# On SIGTERM (a deploy, systemd stop) requests in flight get this long to finish.
graceful_timeout = 30
# Behind a proxy that keeps connections open; longer than most proxies' own idle timeout.
keepalive = 75
# A process is replaced after this many requests (with jitter so not all at once):
# bounds the memory a slow leak in any library could take. Its successor takes about
# a second of CPU to import the app, so under load a replacement costs capacity: every
# 2,000 requests with a 10 % jitter, processes serving alike were replaced together,
# and every sign-up in that second waited (issue 14: p99 0.85 s at 900 sign-ups/s, 30 ms
# with these). The wide jitter keeps the processes' replacements apart.
max_requests = 10000
max_requests_jitter = 5000

# Forwarded headers: trusted only from the configured proxies (see pre_request).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
TRUSTED_PROXIES = frozenset(part.strip() for part in forwarded_allow_ips.split(",") if part)
# X-Request-ID too: the app takes it for its log lines only when a trusted proxy set it.
FORWARDED_HEADERS = ("X-FORWARDED-", "FORWARDED", "X-REAL-IP", "X-REQUEST-ID")

# Logs to stderr for journald or the container runtime, in the app's format
# (LOG_FORMAT: text or JSON lines, service/logging_setup.py). No access log of
# gunicorn's own: the app logs one line per request (`service.access`) with its
# request id and the route, where gunicorn could only write the path, and the
# paths of personal links carry their tokens (an unsubscribe token never expires).
accesslog = None
# gunicorn would write its access line anyway (the logging configuration below is
# enough for that): this logger class writes none (service/gunicorn_logging.py).
logger_class = "service.gunicorn_logging.ServiceLogger"
errorlog = "-"
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "app": {"()": "service.logging_setup.formatter_from_environment"},
    },
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "app"},
    },
    # gunicorn merges this over its defaults key by key: its root names its own handler.
    # None here: the app installs its own on the root (service/logging_setup.py), and a
    # second would print every line of the app twice.
    "root": {"level": "WARNING", "handlers": []},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
    },
}


def on_starting(server: Arbiter) -> None:
    """Say which release starts: the one line an operator looks for after an upgrade."""
    server.log.info("zpravodaj %s: %d processes on %s", __version__, workers, ", ".join(bind))


def pre_request(worker: Worker, req: Request) -> None:
    """Drop forwarded headers that did not come from a configured proxy."""
    peer = req.peer_addr[0] if isinstance(req.peer_addr, tuple) else None
    if "*" in TRUSTED_PROXIES or (peer is not None and peer in TRUSTED_PROXIES):
        return
    req.headers = [
        (name, value)
        for name, value in req.headers
        if not name.upper().startswith(FORWARDED_HEADERS)
    ]
