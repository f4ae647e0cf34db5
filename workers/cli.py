"""`zpravodaj worker`: an RQ worker with the scheduler, inside the app context."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

import click
from flask import current_app
from redis.exceptions import ConnectionError, TimeoutError

from service import bytecode, metrics
from service.cli import with_worker_app
from service.cli_language import lazy_gettext as _l
from service.cli_language import option
from service.deliverability.dkim import DkimKeyError, signer_from_config
from service.jobs import ALL_QUEUES

from .app_worker import AppSimpleWorker, AppWorker
from .redis_outage import patient_redis
from .smtp_recovery import SmtpWatcher, note_outage
from .transport import app_transport

logger = logging.getLogger(__name__)


@click.command("worker", help=_l("Spustí workera RQ (s plánovačem) pro fronty pošty."))
@option("--burst", is_flag=True, help=_l("Pracuje, dokud fronty nejsou prázdné, pak skončí."))
@option(
    "--queue", "queues", multiple=True, default=ALL_QUEUES, show_default=True,
    help=_l("Fronta, ze které brát úlohy (lze opakovat)."),
)  # fmt: skip
@option("--simple", is_flag=True, help=_l("Spouští úlohy v tomto procesu, bez forku."))
@metrics.port_options
@with_worker_app
def worker_command(
    burst: bool,
    queues: tuple[str, ...],
    simple: bool,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """An RQ worker with the scheduler and the reconciler; its log lines stay English."""
    # The app itself, to hand to another thread: Flask's type hints describe
    # current_app as the app, so they do not know the proxy's method.
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    _check_bytecode()
    metrics.start_port(metrics_host, metrics_port, app.config)
    _probe_smtp()
    _warm_dkim(app.config)
    interval = app.config["RECONCILE_INTERVAL"]
    worker_class = AppSimpleWorker if simple else AppWorker
    worker = worker_class(
        list(queues),
        # RQ's bookkeeping waits out a Redis outage (workers/redis_outage.py).
        connection=patient_redis(app.config["REDIS_URL"]),
        app=app,
        # The maintenance loop runs the reconciler; RQ blocks on the queues
        # for worker_ttl - 15 s, so this keeps it running every `interval`.
        maintenance_interval=interval,
        worker_ttl=interval + 15,
        exception_handlers=[note_outage],
    )
    watcher = SmtpWatcher(app, worker.name)
    if not burst:
        watcher.start()
    try:
        worker.work(burst=burst, with_scheduler=True, logging_level=app.config["LOG_LEVEL"])
    except (ConnectionError, TimeoutError) as exc:
        # Only when stopping: until then the connection waits for Redis.
        logger.warning("stopped while Redis was unreachable (%s)", exc)
    finally:
        watcher.stop()


def _check_bytecode() -> None:
    """Under PYTHONOPTIMIZE, warn when modules had no bytecode for that level.

    Python then compiled them from source, whose leftovers take back about half of what
    the optimisation saves (service/bytecode.py).
    """
    if not sys.flags.optimize:
        return
    missing = bytecode.compiled_from_source()
    if missing:
        logger.warning(
            "%d modules had no current bytecode for optimisation level %d and were compiled "
            "from source (%s, ...), which costs memory: run `python -m service.bytecode` as "
            "the worker's user, or rebuild the image (README.md, Deploying and scaling)",
            len(missing), sys.flags.optimize, ", ".join(missing[:3]),
        )  # fmt: skip


def _warm_dkim(config: Mapping[str, Any]) -> None:
    """With DKIM on, the key and dkimpy loaded once here, for every work horse to inherit."""
    signer = signer_from_config(config)
    if signer is None:
        return
    try:
        signer.warm()
    except DkimKeyError as exc:  # the sends report it, and retry until it is fixed
        logger.warning("DKIM key not usable at start (%s); mails wait until it is", exc)


def _probe_smtp() -> None:
    """Connect once at start: logs a broken SMTP_URL early and publishes SMTPUTF8 support."""
    try:
        with app_transport() as transport:
            transport.connect()
    except Exception as exc:
        logger.warning("SMTP server not reachable at start (%s); mails wait until it is", exc)
