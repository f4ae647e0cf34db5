"""Health for load balancers, orchestrators and operators.

- `/healthz` (liveness, cheap): 200 when the database and Redis answer, 503
  naming what is down.
- `/readyz` (readiness): the database, Redis, the schema at the migrations'
  head, at least one worker heartbeat within the window, and the SMTP relay as
  the workers last saw it (the web process never talks SMTP itself; the
  workers record what they see, service/worker_status.py), with the version.
  JSON with a status per check; 200 when every check passes, else 503.
- `zpravodaj status`: the same report for an operator; exit 1 when not ready.
"""

from __future__ import annotations

import ast
import functools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import click
from flask import Blueprint, Flask, current_app, jsonify
from flask.cli import with_appcontext
from flask.typing import ResponseReturnValue
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from . import worker_status
from .cli_language import lazy_gettext as _l
from .cli_language import option
from .extensions import db
from .jobs import redis_connection
from .paths import resource_dir

bp = Blueprint("health", __name__)

# The relay's state counts as current for this long: workers refresh it every
# minute (workers/smtp_recovery.py), so a record this old means nobody checks.
SMTP_REPORT_MAX_AGE = 300


def init_app(app: Flask) -> None:
    """Register the probes; `zpravodaj status` is added with the other commands (commands.py)."""
    app.register_blueprint(bp)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    checks = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        db.session.rollback()
        checks["database"] = f"down: {type(exc).__name__}"
    try:
        redis_connection().ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"down: {type(exc).__name__}"
    healthy = all(value == "ok" for value in checks.values())
    return jsonify(status="ok" if healthy else "down", checks=checks), 200 if healthy else 503


@bp.get("/readyz")
def readyz():
    report = readiness()
    return jsonify(report.as_json()), 200 if report.ready else 503


# --- the checks -------------------------------------------------------------


@dataclass
class Check:
    """One line of the report: `detail` says what was seen, in words for an operator."""

    ok: bool
    detail: str
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass
class Readiness:
    version: str
    checks: dict[str, Check]

    @property
    def ready(self) -> bool:
        return all(check.ok for check in self.checks.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "status": "ready" if self.ready else "not ready",
            "version": self.version,
            "checks": {
                name: {"status": "ok" if c.ok else "fail", "detail": c.detail, **c.facts}
                for name, c in self.checks.items()
            },
        }


def readiness() -> Readiness:
    """Run every check; one failing never stops the others from being reported."""
    checks: dict[str, Check] = {}
    checks["database"] = _guarded(_check_database)
    checks["redis"] = _guarded(_check_redis)
    if checks["database"].ok:
        checks["migrations"] = _guarded(_check_migrations)
    else:
        checks["migrations"] = Check(False, "database unreachable")
    if checks["redis"].ok:
        checks["workers"] = _guarded(_check_workers)
        checks["smtp"] = _guarded(_check_smtp)
    else:
        checks["workers"] = Check(False, "Redis unreachable")
        checks["smtp"] = Check(False, "Redis unreachable")
    return Readiness(version=service_version(), checks=checks)


def _guarded(check: Callable[[], Check]) -> Check:
    try:
        return check()
    except Exception as exc:
        db.session.rollback()
        return Check(False, f"down: {type(exc).__name__}")


def _check_database() -> Check:
    db.session.execute(text("SELECT 1"))
    db.session.commit()
    return Check(True, "ok")


def _check_redis() -> Check:
    redis_connection().ping()
    return Check(True, "ok")


@functools.cache
def _heads(directory: str) -> tuple[str, ...]:
    """The migrations' heads, read from the scripts once per process (they never change).

    Read with `ast` rather than Alembic's ScriptDirectory: the web and worker
    processes never migrate and do not load Alembic (service/schema.py).
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in Path(directory, "versions").glob("*.py"):
        for node in ast.parse(script.read_text(encoding="utf-8")).body:
            if not (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)):
                continue
            name = node.targets[0].id
            if name == "revision":
                revisions.add(ast.literal_eval(node.value))
            elif name == "down_revision":
                value = ast.literal_eval(node.value)
                parents.update([value] if isinstance(value, str) else value or ())
    return tuple(sorted(revisions - parents))


def _check_migrations() -> Check:
    heads = _heads(str(resource_dir("migrations")))
    try:
        rows = db.session.execute(text("SELECT version_num FROM alembic_version")).scalars()
        current = tuple(sorted(rows))
    except SQLAlchemyError:  # no version table: never migrated
        db.session.rollback()
        current = ()
    db.session.commit()
    facts = {"current": list(current), "head": list(heads)}
    if current == heads:
        return Check(True, f"at head {', '.join(heads)}", facts)
    shown = ", ".join(current) or "none (run `zpravodaj db upgrade`)"
    return Check(False, f"schema at {shown}, head is {', '.join(heads)}", facts)


def worker_window() -> int:
    """Seconds within which a live worker has beaten: RQ beats once per dequeue timeout
    (RECONCILE_INTERVAL, workers/cli.py) and every 30 s during a job."""
    return max(60, 2 * current_app.config["RECONCILE_INTERVAL"])


def _check_workers() -> Check:
    window = worker_window()
    seen = worker_status.read_heartbeats(redis_connection(), window)
    facts: dict[str, float] = {"alive": seen.alive, "window_seconds": window}
    if seen.newest_age is not None:
        facts["last_heartbeat_seconds"] = round(seen.newest_age, 1)
    if seen.alive:
        age = seen.newest_age
        return Check(True, f"{seen.alive} alive (last heartbeat {age:.0f} s ago)", facts)
    if seen.newest_age is None:
        return Check(False, "no worker is running; start `zpravodaj worker`", facts)
    return Check(False, f"no heartbeat for {seen.newest_age:.0f} s (over {window} s)", facts)


def _check_smtp() -> Check:
    report = worker_status.read_smtp(redis_connection())
    if report is None:
        return Check(False, "no worker has connected to the SMTP server yet")
    facts: dict[str, Any] = {"checked_seconds": round(report.checked_age, 1)}
    if report.last_success_age is not None:
        facts["last_success_seconds"] = round(report.last_success_age, 1)
    if report.checked_age > SMTP_REPORT_MAX_AGE:
        return Check(False, f"not checked for {report.checked_age:.0f} s (workers down?)", facts)
    if not report.ok:
        facts["error"] = report.error
        return Check(False, f"unreachable: {report.error}", facts)
    return Check(True, f"answers (checked {report.checked_age:.0f} s ago)", facts)


def service_version() -> str:
    """The installed distribution's version; in a bare checkout, the package's own."""
    try:
        return metadata.version("zpravodaj")
    except metadata.PackageNotFoundError:
        return getattr(sys.modules[__package__], "__version__", "unknown")


# --- zpravodaj status ---------------------------------------------------------


@click.command(
    "status",
    help=_l(
        "Co říká /readyz: databáze, Redis, migrace, workery, SMTP. Když služba není připravena, "
        "skončí kódem 1."
    ),
)
@option("--json", "as_json", is_flag=True, help=_l("Vypíše místo toho JSON z /readyz."))
@with_appcontext
def status_command(as_json: bool) -> None:
    """/readyz's report for an operator, in its own (English) words, as the JSON has them."""
    report = readiness()
    if as_json:
        click.echo(json.dumps(report.as_json(), ensure_ascii=False, indent=2))
    else:
        click.echo(f"zpravodaj {report.version}: {'ready' if report.ready else 'NOT READY'}")
        for name, check in report.checks.items():
            click.echo(f"  {name:<11} {'ok  ' if check.ok else 'FAIL'}  {check.detail}")
    if not report.ready:
        sys.exit(1)
