"""Prometheus metrics: what the service counts, and `/metrics` that serves them.

Two kinds of figures:

- **Events** (sign-ups, mails sent, SMTP latency, HTTP requests…) are counted
  where they happen, by the web processes and by the workers' forked work
  horses. With `PROMETHEUS_MULTIPROC_DIR` set (required under gunicorn and for
  the workers) every process writes its counts to files there and `/metrics`
  adds them up, so one scrape sees every gunicorn process and every worker of
  the host (README, "Metrics and logs").
- **Facts** of the database and Redis (queue depths, the oldest queued job,
  issue progress) are read when Prometheus scrapes, by `StateCollector`: a
  gauge kept up to date by whichever process happened to change it last would
  be wrong after any crash, and these facts are cheap to query.

Counting is switched off by `METRICS=off` (then `/metrics` is 404), which is
also what bench/observability_overhead.py compares against.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import click
from flask import Blueprint, Flask, Response, abort, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    make_wsgi_app,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session, scoped_session

from .cli_language import lazy_gettext as _l
from .cli_language import option
from .extensions import db
from .jobs import ALL_QUEUES, queue
from .models import Delivery, Issue, MailingList, MailStatus, OutgoingMail
from .request_values import bound

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# --- which process writes which files -------------------------------------------

_work_horse_of: int | None = None


def _process_identity() -> int | str:
    """The name of this process's files in the multiprocess directory.

    prometheus-client names them by pid, which would leave one set of files
    per RQ job (a worker forks a work horse for every job) and make every
    scrape read thousands of them within weeks. A worker's horses run one at
    a time, so they share one set, named after their worker; the files stay
    a few per process whatever the number of jobs.
    """
    if _work_horse_of is not None:
        return f"{_work_horse_of}-horse"
    return os.getpid()


def become_work_horse(worker_pid: int) -> None:
    """Called first thing in a forked work horse: write to the horses' shared files."""
    global _work_horse_of
    _work_horse_of = worker_pid


_multiprocess = bool(os.environ.get(MULTIPROC_ENV))
if _multiprocess:
    # Must happen before the first metric below is built (else: follow_environment).
    values.ValueClass = values.MultiProcessValue(process_identifier=_process_identity)

# --- the metrics ----------------------------------------------------------------

# No `_created` series: multiprocess mode has none, and the two modes should read alike.
disable_created_metrics()

# Our metrics live in a registry of their own: not mixed with other libraries' into
# prometheus-client's global one, and never registered twice by a re-imported module.
EVENTS = CollectorRegistry(auto_describe=True)

SIGNUPS = Counter(
    "zpravodaj_signups", "Sign-ups to a list (double opt-in started), by channel",
    ["channel"], registry=EVENTS,
)  # fmt: skip
CONFIRMATIONS = Counter(
    "zpravodaj_confirmations", "Subscriptions confirmed (lists and groups), by channel",
    ["channel"], registry=EVENTS,
)  # fmt: skip
UNSUBSCRIBES = Counter(
    "zpravodaj_unsubscribes", "Subscriptions ended by the person, by channel",
    ["channel"], registry=EVENTS,
)  # fmt: skip
MAILS = Counter(
    "zpravodaj_mails",
    "Mails handed to the SMTP server, by kind (issue, confirmation…) and result: sent, "
    "failed (refused for good, 5xx) or deferred (4xx or server unavailable: retried later)",
    ["kind", "result"], registry=EVENTS,
)  # fmt: skip
SMTP_SECONDS = Histogram(
    "zpravodaj_smtp_send_seconds", "Time of one message's SMTP exchange (with a connect if due)",
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=EVENTS,
)  # fmt: skip
BOUNCES = Counter(
    "zpravodaj_bounces", "Bounces recorded (reports and SMTP refusals), by class: hard or soft",
    ["kind"], registry=EVENTS,
)  # fmt: skip
COMPLAINTS = Counter(
    "zpravodaj_complaints",
    "Spam complaints (ARF feedback reports), by result: unsubscribed, or unmatched (no VERP)",
    ["result"], registry=EVENTS,
)  # fmt: skip
JOBS = Counter(
    "zpravodaj_jobs", "RQ jobs run by the workers, by job function and result (ok, failed)",
    ["job", "result"], registry=EVENTS,
)  # fmt: skip
JOB_LAG = Histogram(
    "zpravodaj_job_lag_seconds",
    "From a job's enqueue to a worker starting it; job=deliver_batch is the batch lag",
    ["job"], buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600),
    registry=EVENTS,
)  # fmt: skip
RECONCILED = Counter(
    "zpravodaj_reconciler_actions",
    "Work the reconciler put back into Redis (or finished), by kind",
    ["kind"], registry=EVENTS,
)  # fmt: skip
HTTP_REQUESTS = Counter(
    "zpravodaj_http_requests", "HTTP requests answered, by endpoint, method and status",
    ["endpoint", "method", "status"], registry=EVENTS,
)  # fmt: skip
HTTP_SECONDS = Histogram(
    "zpravodaj_http_request_duration_seconds", "Time to answer an HTTP request, by endpoint",
    ["endpoint", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=EVENTS,
)  # fmt: skip

# Consent steps (consent.record) and the counter each one moves.
CONSENT_COUNTERS: dict[str, Counter] = {
    "signup": SIGNUPS,
    "confirm": CONFIRMATIONS,
    "join_confirm": CONFIRMATIONS,
    "accept_invitation": CONFIRMATIONS,
    "unsubscribe": UNSUBSCRIBES,
    "preferences_remove": UNSUBSCRIBES,
    "complaint": UNSUBSCRIBES,  # a spam complaint takes the person off marketing lists
}

_enabled = True  # METRICS; set by configure, inherited by forked work horses


def empty_directory(directory: Path) -> None:
    """Make `directory` and remove what is in it: only while no process counts into it
    (`zpravodaj dev` at its start; systemd and the image's entrypoint do the same)."""
    directory.mkdir(parents=True, exist_ok=True)
    for entry in directory.iterdir():
        entry.unlink()


def follow_environment() -> None:
    """Count into PROMETHEUS_MULTIPROC_DIR when it was set after this module was imported.

    The `zpravodaj` command imports the service before it reads a running dev
    instance's env file or `zpravodaj dev` chooses its directory, but counts
    nothing until then: the metrics are rebuilt on the directory's values.
    """
    global _multiprocess
    if _multiprocess or not os.environ.get(MULTIPROC_ENV):
        return
    _multiprocess = True
    values.ValueClass = values.MultiProcessValue(process_identifier=_process_identity)
    _request_series.clear()  # children of the values counted into memory until now
    for metric in (m for m in globals().values() if isinstance(m, Counter | Histogram)):
        if metric._labelnames:
            metric.clear()  # its children are made, with the new values, on first use
        else:
            metric._metric_init()  # prometheus-client's own re-initialisation of the values


# --- counting -------------------------------------------------------------------


def count_after_commit(
    session: Session | scoped_session[Any], counter: Counter, *labels: str
) -> None:
    """Count an event of the current transaction once it commits (a rolled-back
    sign-up, or one retried after a deadlock, counts once or not at all)."""
    if _enabled:
        session.info.setdefault("metrics_after_commit", []).append((counter, labels))


@event.listens_for(Session, "after_commit")
def _count_committed(session: Session) -> None:
    for counter, labels in session.info.pop("metrics_after_commit", ()):
        (counter.labels(*labels) if labels else counter).inc()


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back(session: Session) -> None:
    session.info.pop("metrics_after_commit", None)


def consent_step(session: Session | scoped_session[Any], action: str, channel: str) -> None:
    """A consent step was recorded (consent.record): sign-up, confirmation, unsubscribe."""
    counter = CONSENT_COUNTERS.get(action)
    if counter is not None:
        count_after_commit(session, counter, channel)


def mail_result(kind: str, result: str, seconds: float | None) -> None:
    """One message handed to SMTP (workers/smtp.py), and how long the exchange took
    (None: it never reached the server, e.g. DKIM signing failed)."""
    if _enabled:
        MAILS.labels(kind, result).inc()
        if seconds is not None:
            SMTP_SECONDS.observe(seconds)


def job_started(job_name: str, lag_seconds: float | None) -> None:
    if _enabled and lag_seconds is not None:
        JOB_LAG.labels(job_name).observe(max(0.0, lag_seconds))


def job_finished(job_name: str, ok: bool) -> None:
    if _enabled:
        JOBS.labels(job_name, "ok" if ok else "failed").inc()


def reconciled(counts: Mapping[str, int]) -> None:
    """What one reconciler run did (workers/reconcile.py), by kind."""
    if _enabled:
        for kind, count in counts.items():
            if count:
                RECONCILED.labels(kind).inc(count)


# --- the HTTP side and /metrics ---------------------------------------------------

bp = Blueprint("metrics", __name__)


def init_app(app: Flask) -> None:
    """Count requests and serve /metrics, unless METRICS=off."""
    configure(app)
    if not _enabled:
        return
    app.before_request(_start_timer)
    app.after_request(_count_request)
    app.register_blueprint(bp)


def configure(app: Flask) -> None:
    """METRICS on or off, and METRICS_ALLOW read, for this process and its work horses
    (the web app's and the worker's)."""
    global _enabled
    _enabled = app.config["METRICS"]
    if _enabled:
        app.config["METRICS_ALLOW_NETWORKS"] = parse_networks(app.config["METRICS_ALLOW"])


def parse_networks(text: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """METRICS_ALLOW's networks; a bad one raises ValueError naming it."""
    return [ipaddress.ip_network(part, strict=False) for part in text]


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


def _count_request(response: Response) -> Response:
    started = bound(g).get("metrics_started")
    if started is not None:
        # The endpoint, not the path: paths carry tokens and would make a series per link.
        current = bound(request)  # read once, not through the proxy each time
        endpoint = current.endpoint or "unmatched"
        method = current.method
        if method not in _METHODS:
            method = "other"  # any token is a method to HTTP: one series for them all
        status = response.status_code
        series = _request_series.get((endpoint, method, status))
        if series is None:
            series = _request_series[endpoint, method, status] = (
                HTTP_REQUESTS.labels(endpoint, method, str(status)),
                HTTP_SECONDS.labels(endpoint, method),
            )
        series[0].inc()
        series[1].observe(time.perf_counter() - started)
    return response


# (endpoint, method, status) -> the two series a request of that kind counts in:
# `labels()` checks and joins its label values and takes a lock on every call. The
# keys are the app's endpoints, methods and statuses, a bounded set.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_request_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}


@bp.get("/metrics")
def metrics_page() -> Response:
    _check_access()
    registry = CollectorRegistry(auto_describe=False)
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        multiprocess.MultiProcessCollector(registry, path=directory)
    else:
        registry.register(_Forward(EVENTS))
    registry.register(StateCollector())
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def _check_access() -> None:
    """METRICS_ALLOW (the client's address) and METRICS_TOKEN (a bearer token), both when set.

    The address is the one the rate limits see: behind PROXY_FIX proxies, the
    client's, so a request through the public proxy is not "internal".
    """
    config = current_app.config
    status = access_status(
        request.remote_addr,
        request.headers.get("Authorization", ""),
        config["METRICS_ALLOW_NETWORKS"],
        config["METRICS_TOKEN"],
    )
    if status == 401:
        abort(Response(TOKEN_MISSING, 401, {"WWW-Authenticate": "Bearer"}))
    if status != 200:
        abort(status)


TOKEN_MISSING = "Chybí platný token. (A valid bearer token is required.)\n"


def access_status(
    address: str | None, authorization: str, networks: Iterable[Any], token: str
) -> int:
    """200 when a client at `address` sending `authorization` may read the metrics,
    403 for an address outside `networks`, 401 for a missing or wrong token."""
    try:
        client = ipaddress.ip_address(address or "")
    except ValueError:
        return 403
    if client.version == 6 and client.ipv4_mapped is not None:  # a dual-stack socket's IPv4
        client = client.ipv4_mapped
    if not any(client in network for network in networks):
        return 403
    if token and not hmac.compare_digest(authorization.encode(), f"Bearer {token}".encode()):
        return 401
    return 200


def port_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--metrics-port` and `--metrics-host` of `zpravodaj worker` and `bounces serve`.

    Also read from METRICS_PORT and METRICS_HOST, so that a container (its own
    host for the metrics, Dockerfile) runs the same command as everywhere else.
    """
    command = option(
        "--metrics-host", default="127.0.0.1", show_default=True, envvar="METRICS_HOST",
        show_envvar=True,
        help=_l("Adresa pro --metrics-port (vnitřní, pro Prometheus na jiném stroji)."),
    )(command)  # fmt: skip
    return option(
        "--metrics-port", type=int, default=None, envvar="METRICS_PORT", show_envvar=True,
        help=_l(
            "Na tomto portu nabízí metriky tohoto stroje (PROMETHEUS_MULTIPROC_DIR): pro stroj "
            "bez webové aplikace, jeden proces na stroj (nebo na kontejner)."
        ),
    )(command)  # fmt: skip


def start_port(host: str, port: int | None, config: Mapping[str, Any]) -> None:
    """What `--metrics-port` asks for, if anything; a clear message when it cannot be."""
    if port is None:
        return
    try:
        serve_host_metrics(host, port, config)
    except (RuntimeError, OSError) as exc:
        raise click.ClickException(f"metrics: {exc}") from exc


def serve_host_metrics(host: str, port: int, config: Mapping[str, Any]) -> None:
    """Serve this host's multiprocess directory on host:port from a daemon thread
    (`zpravodaj worker --metrics-port`, for hosts that run no web process), with
    the same METRICS_ALLOW and METRICS_TOKEN checks as /metrics.

    Only the events: the database's and Redis's facts are the web app's /metrics'
    to report, once, not once per host.
    """
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        raise RuntimeError(
            f"--metrics-port needs {MULTIPROC_ENV}: a directory this host's workers share "
            "(a work horse's counts would die with it otherwise)"
        )
    registry = CollectorRegistry(auto_describe=False)
    multiprocess.MultiProcessCollector(registry, path=directory)
    inner = make_wsgi_app(registry)
    networks, token = parse_networks(config["METRICS_ALLOW"]), config["METRICS_TOKEN"]

    def guarded(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        status = access_status(
            environ.get("REMOTE_ADDR"), environ.get("HTTP_AUTHORIZATION", ""), networks, token
        )
        if status == 200:
            return inner(environ, start_response)
        headers = [("Content-Type", "text/plain; charset=utf-8")]
        if status == 401:
            headers.append(("WWW-Authenticate", "Bearer"))
        start_response(f"{status} {'Unauthorized' if status == 401 else 'Forbidden'}", headers)
        return [TOKEN_MISSING.encode() if status == 401 else b"Forbidden\n"]

    server = make_server(host, port, guarded, _ThreadingServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Prometheus asks every few seconds: no line per scrape."""


class _Forward(Collector):
    """Collects another registry (our events in single-process mode) into this scrape."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Any]:
        yield from self.registry.collect()


# --- facts of the database and Redis, read at scrape time ----------------------------


class StateCollector(Collector):
    """Queue depths, the oldest queued job and issue progress, asked at each scrape.

    A source that does not answer is reported by `zpravodaj_source_up` = 0
    instead of failing the scrape: the event counters still come through.
    """

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily(
            "zpravodaj_source_up", "1 when the database or Redis answered this scrape",
            labels=["source"],
        )  # fmt: skip
        for source, read in (("redis", _redis_facts), ("database", _database_facts)):
            try:
                families = list(read())
            except Exception:
                if source == "database":
                    db.session.rollback()
                up.add_metric([source], 0)
                continue
            up.add_metric([source], 1)
            yield from families
        yield up


def _redis_facts() -> Iterator[GaugeMetricFamily]:
    depth = GaugeMetricFamily(
        "zpravodaj_queue_jobs", "RQ jobs by queue and state (queued, started, scheduled, failed)",
        labels=["queue", "state"],
    )  # fmt: skip
    oldest = GaugeMetricFamily(
        "zpravodaj_queue_oldest_job_age_seconds",
        "Age of the oldest job waiting in the queue (0 when empty)", labels=["queue"],
    )  # fmt: skip
    now = time.time()
    for name in ALL_QUEUES:
        q = queue(name)
        depth.add_metric([name, "queued"], q.count)
        depth.add_metric([name, "started"], q.started_job_registry.get_job_count(cleanup=False))
        depth.add_metric([name, "scheduled"], q.scheduled_job_registry.get_job_count(cleanup=False))
        depth.add_metric([name, "failed"], q.failed_job_registry.get_job_count(cleanup=False))
        age = 0.0
        first = q.get_job_ids(0, 1)
        if first:
            from rq.job import Job  # here: the CLI counts its events without RQ (jobs.py)

            job = Job.fetch(first[0], connection=q.connection)
            if job.enqueued_at is not None:
                age = max(0.0, now - job.enqueued_at.timestamp())
        oldest.add_metric([name], age)
    yield depth
    yield oldest


def _database_facts() -> Iterator[GaugeMetricFamily]:
    progress = GaugeMetricFamily(
        "zpravodaj_issue_deliveries",
        "Recipients of each issue being sent or paused, by delivery status",
        labels=["issue", "list", "status"],
    )  # fmt: skip
    rows = db.session.execute(
        select(Delivery.issue_id, MailingList.slug, Delivery.status, func.count())
        .join(Issue, Issue.id == Delivery.issue_id)
        .join(MailingList, MailingList.id == Issue.list_id)
        .where(Issue.status.in_(Issue.DELIVERING))
        .group_by(Delivery.issue_id, MailingList.slug, Delivery.status)
    ).all()
    for issue_id, slug, status, count in rows:
        progress.add_metric([str(issue_id), slug, str(status)], count)
    waiting = GaugeMetricFamily(
        "zpravodaj_outgoing_mails_waiting",
        "Single mails (confirmations…) not yet sent, by kind: the database's view of the queue",
        labels=["kind"],
    )  # fmt: skip
    for kind, count in db.session.execute(
        select(OutgoingMail.kind, func.count())
        .where(OutgoingMail.status.in_((MailStatus.QUEUED, MailStatus.SENDING)))
        .group_by(OutgoingMail.kind)
    ).all():
        waiting.add_metric([kind], count)
    db.session.commit()
    yield progress
    yield waiting
