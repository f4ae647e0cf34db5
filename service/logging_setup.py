"""The one logging set-up of the web app and the workers (`LOG_FORMAT=text|json`).

Every line names what it belongs to: the request (`request_id`) in the web
app, the RQ job (`job_id`) and the issue (`issue_id`) in a worker. Those ids
live in a context variable that the request hooks (`init_app`) and the
worker's job wrapper (workers/log.py) set, and `bind` extends, so code deep
in a flow never passes them around.

The handler sits on the root logger, writing to stderr: under gunicorn,
whose own loggers do not propagate, the service's INFO lines are no longer
lost to Python's last-resort handler (WARNING and up only); RQ's loggers find
it there too and add no handler of their own.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from flask import Flask, current_app, g, request

from .request_values import bound

LOG_FORMATS = ("text", "json")
# The ids a line may carry, in the order the text format shows them.
CONTEXT_FIELDS = ("request_id", "job_id", "issue_id")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s"
# Loggers whose INFO lines matter to an operator; everyone else's stay at WARNING.
SERVICE_LOGGERS = ("service", "workers", "rq.worker")
# A request id from the proxy is copied into every line and header: keep it tame.
REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
# Paths polled by load balancers and Prometheus: logged at DEBUG, not once a second at INFO.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

_OUTSIDE: Mapping[str, Any] = MappingProxyType({})  # no request, no job: no ids to bind
_context: ContextVar[Mapping[str, Any]] = ContextVar("zpravodaj_log_context", default=_OUTSIDE)
access_log = logging.getLogger("service.access")


# --- the ids of the current request or job -----------------------------------


def current_context() -> Mapping[str, Any]:
    """The ids bound to the code running now (empty outside requests and jobs)."""
    return _context.get()


@contextmanager
def log_context(**ids: Any) -> Iterator[None]:
    """Bind `ids` to every line logged inside the block (a request, a job)."""
    token = _context.set({**_context.get(), **ids})
    try:
        yield
    finally:
        _context.reset(token)


def bind(**ids: Any) -> None:
    """Add ids to the current request's or job's lines from here on (e.g. the issue
    a delivery batch belongs to, known only once its row is read).

    Outside a request or job (a job function called directly) it does nothing:
    with no scope to end, the ids would stick to every later line of the thread.
    """
    current = _context.get()
    if current is not _OUTSIDE:
        _context.set({**current, **ids})


class ContextFilter(logging.Filter):
    """Copies the bound ids onto each record, so both formats (and tests) can read them."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get()
        for field in CONTEXT_FIELDS:
            if not hasattr(record, field):
                setattr(record, field, context.get(field))
        return True


# --- formats ----------------------------------------------------------------


class TextFormatter(logging.Formatter):
    """`2026-11-30 07:10:57,123 INFO service.access [request 5f2c…]: GET /subscribe 200`."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        # The last second written and its text: `time.strftime` once a second, not once
        # a line (one pair, replaced whole, so threads never read a mismatched one).
        self._second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second, text = self._second
        if second != int(record.created):
            second = int(record.created)
            text = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = (second, text)
        return f"{text},{int(record.msecs):03d}"  # Formatter's default_msec_format

    def format(self, record: logging.LogRecord) -> str:
        ids = [
            f"{field.removesuffix('_id')} {value}"
            for field in CONTEXT_FIELDS
            if (value := getattr(record, field, None)) is not None
        ]
        record.context = context = f" [{', '.join(ids)}]" if ids else ""
        if record.exc_info or record.exc_text or record.stack_info:
            return super().format(record)
        # TEXT_FORMAT written out: Formatter's way (the style object, the record's
        # attributes as a dictionary) cost more than the rest of an access line.
        record.message = record.getMessage()
        record.asctime = self.formatTime(record)
        return f"{record.asctime} {record.levelname} {record.name}{context}: {record.message}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the ids.

    Hand-written rather than a library's: the fields are fixed and few, and
    this is on the delivery path (bench/observability_overhead.py).
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in CONTEXT_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def formatter_from_environment() -> logging.Formatter:
    """The formatter LOG_FORMAT names, for gunicorn's own lines (service/gunicorn_conf.py),
    which are set up before the app and its configuration exist."""
    if os.environ.get("LOG_FORMAT", "").strip().lower() == "json":
        return JsonFormatter()
    return TextFormatter()


class StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a line is logged (as Python's last-resort
    handler does), so a redirected or captured stderr gets the lines."""

    # Marks the service's own handler, which a later `configure` replaces.
    zpravodaj = False

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass  # always the current sys.stderr


def configure(log_format: str = "text", level: str | int = "INFO") -> logging.Handler:
    """Install the service's handler on the root logger, replacing an earlier one.

    Idempotent: every `create_app` (tests build many) leaves exactly one.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "zpravodaj", False)]:
        root.removeHandler(old)
    handler = StderrHandler()
    handler.zpravodaj = True
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    root.addHandler(handler)
    for name in SERVICE_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        # An earlier set-up (the worker's before this one) may have cut them off the root.
        logger.propagate = True
        for old in [h for h in logger.handlers if getattr(h, "zpravodaj", False)]:
            logger.removeHandler(old)
    return handler


# --- requests ---------------------------------------------------------------


def init_app(app: Flask) -> None:
    """Configure logging from LOG_FORMAT / LOG_LEVEL and give every request an id."""
    configure(app.config["LOG_FORMAT"], app.config["LOG_LEVEL"])
    app.before_request(_begin_request)
    app.after_request(_end_request)
    app.teardown_request(_forget_request)


def request_id_from(trusted_proxy: bool) -> str:
    """The proxy's X-Request-ID when a trusted proxy sent the request, else a fresh one.

    Without a proxy in front anybody could set the header, and put whatever
    they like into the logs; a proxy we trust (PROXY_FIX) overwrites it.
    """
    if trusted_proxy:  # (only then read: a header not sent costs Werkzeug an exception)
        given = request.headers.get("X-Request-ID", "")
        if REQUEST_ID.fullmatch(given):
            return given
    return os.urandom(16).hex()  # 32 hex digits, as uuid4's, at a seventh of its cost


# The request hooks below bind `g` and `request` once (`bound`): each read through
# Flask's proxies looks the object up again (issue 14, bench/README.md, eighth round).


def _begin_request() -> None:
    request_globals = bound(g)
    request_id = request_globals.request_id = request_id_from(
        bound(current_app).config["PROXY_FIX"] > 0
    )
    request_globals.request_started = time.perf_counter()
    request_globals.log_context_token = _context.set({**_context.get(), "request_id": request_id})


def _end_request(response):
    request_globals = bound(g)
    request_id = request_globals.get("request_id")
    if request_id is None:  # a request that failed before its first hook
        return response
    response.headers["X-Request-ID"] = request_id
    elapsed = time.perf_counter() - request_globals.request_started
    current = bound(request)
    path = current.path
    level = logging.DEBUG if path in QUIET_PATHS else logging.INFO
    # The route, not the path: paths carry the tokens of personal links, and a
    # log must not hold what unsubscribes or exports someone.
    rule = current.url_rule
    route = rule.rule if rule is not None else path[:200]
    if access_log.isEnabledFor(level):
        # The record made directly: `Logger.log` would also walk the stack for the
        # caller's file and line, which no format shows (issue 14, thirteenth round).
        args = (current.method, route, response.status_code, elapsed * 1000)
        access_log.handle(
            access_log.makeRecord(
                access_log.name, level, *_ACCESS_SOURCE, _ACCESS_LINE, args, None, _ACCESS_FUNCTION
            )
        )
    return response


_ACCESS_LINE = "%s %s %s %.1f ms"
# Where the access line comes from, for formats that show it: this hook.
_ACCESS_SOURCE = (__file__, _end_request.__code__.co_firstlineno)
_ACCESS_FUNCTION = _end_request.__name__


def _forget_request(_error: BaseException | None) -> None:
    token = bound(g).pop("log_context_token", None)
    if token is not None:
        try:
            _context.reset(token)
        except ValueError:  # torn down in another context (a streamed response): let it go
            _context.set({})
