"""`/readyz` and `zpravodaj status`: each check passing and failing, with real parts.

The workers' side of the report (heartbeats, the SMTP relay as they see it)
comes from real worker processes where the test is about a worker; a worker
long silent, or an SMTP report long stale, is written into Redis with an old
time, as such a worker would have left it.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from importlib import metadata

import pytest
from alembic.script import ScriptDirectory
from flask_migrate import stamp
from sqlalchemy import text

from service import worker_status
from service.dev.processes import free_port
from service.extensions import db
from service.jobs import redis_connection
from service.schema import init_migrations
from tests.test_health import build_app, database_down_url, nobody_listens  # noqa: F401
from tests.waiting import wait_until
from tests.workers.test_outgoing_mail import worker_env


def ready(app):
    response = app.test_client().get("/readyz")
    assert response.mimetype == "application/json"
    return response


def status_of(app, check: str) -> dict:
    return ready(app).json["checks"][check]


def start_worker(app, smtp_url: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "service", "worker"],
        env=worker_env(app, smtp_url),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(60)


def forget_migrations() -> None:
    """No Alembic version table: on PostgreSQL the tables outlive a test (truncated only)."""
    db.session.execute(text("DROP TABLE IF EXISTS alembic_version"))
    db.session.commit()


@pytest.fixture
def migrated(app):
    """The schema stamped at the migrations' head, as `zpravodaj db upgrade` leaves it."""
    init_migrations(app)  # the web app never binds Flask-Migrate (service/schema.py)
    stamp()
    yield app
    forget_migrations()


def test_everything_up_is_ready_and_a_stopped_worker_is_not(migrated, outbox, runner):
    app = migrated
    worker = start_worker(app, outbox.url)
    try:
        wait_until(
            lambda: ready(app).status_code == 200, "/readyz to answer 200",
            interval=0.3, details=lambda: str(ready(app).json),
        )  # fmt: skip
        body = ready(app).json
        assert body["status"] == "ready"
        assert body["version"] == metadata.version("zpravodaj")
        assert {name: c["status"] for name, c in body["checks"].items()} == {
            "database": "ok",
            "redis": "ok",
            "migrations": "ok",
            "workers": "ok",
            "smtp": "ok",
        }
        assert body["checks"]["workers"]["alive"] == 1
        assert body["checks"]["migrations"]["current"] == body["checks"]["migrations"]["head"]
        result = runner.invoke(args=["status"])
        assert result.exit_code == 0, result.output
        assert result.output.startswith(f"zpravodaj {body['version']}: ready\n")
        assert "  smtp        ok    answers (checked" in result.output
    finally:
        stop(worker)
    # A worker that stops takes itself off: nobody is left to send.
    response = ready(app)
    assert response.status_code == 503
    assert response.json["checks"]["workers"]["status"] == "fail"
    assert response.json["checks"]["workers"]["detail"].startswith("no worker is running")


def test_workers_that_cannot_reach_the_relay_make_it_not_ready(migrated, runner):
    port = free_port()  # nobody listens
    worker = start_worker(migrated, f"smtp://127.0.0.1:{port}")
    try:
        # The worker tries the relay as it starts, before its first heartbeat: wait for
        # both, the worker counted alive and its SMTP failure recorded.
        wait_until(lambda: status_of(migrated, "smtp")["status"] == "fail" and
                   "error" in status_of(migrated, "smtp") and
                   status_of(migrated, "workers")["status"] == "ok",
                   "the live worker's SMTP failure", interval=0.3)  # fmt: skip
        smtp = status_of(migrated, "smtp")
        assert smtp["detail"].startswith(f"unreachable: cannot connect to 127.0.0.1:{port}")
        assert "last_success_seconds" not in smtp
        result = runner.invoke(args=["status"])
        assert result.exit_code == 1
        assert "NOT READY" in result.output
        assert "  smtp        FAIL  unreachable: cannot connect" in result.output
    finally:
        stop(worker)


def test_no_worker_is_not_ready_and_says_what_to_start(migrated, runner):
    response = ready(migrated)
    assert response.status_code == 503
    checks = response.json["checks"]
    assert checks["workers"] == {
        "status": "fail",
        "detail": "no worker is running; start `zpravodaj worker`",
        "alive": 0,
        "window_seconds": 60,
    }
    assert checks["smtp"] == {
        "status": "fail",
        "detail": "no worker has connected to the SMTP server yet",
    }
    assert [checks[n]["status"] for n in ("database", "redis", "migrations")] == ["ok"] * 3
    result = runner.invoke(args=["status", "--json"])
    assert result.exit_code == 1
    assert '"status": "not ready"' in result.output


def test_a_worker_silent_for_longer_than_the_window_does_not_count(migrated):
    worker_status.record_heartbeat(redis_connection(), "old-worker", now=time.time() - 300)
    worker_status.record_smtp(redis_connection(), None)
    workers = status_of(migrated, "workers")
    assert workers["status"] == "fail"
    # 300 s, or a little more when the machine is slow between the write and the read
    silent = re.fullmatch(r"no heartbeat for (\d+) s \(over 60 s\)", workers["detail"])
    assert silent is not None, workers["detail"]
    assert 300 <= int(silent[1]) < 400
    worker_status.record_heartbeat(redis_connection(), "new-worker")
    assert ready(migrated).status_code == 200


def test_an_smtp_report_nobody_refreshed_is_stale(migrated):
    worker_status.record_heartbeat(redis_connection(), "worker")
    worker_status.record_smtp(redis_connection(), None, now=time.time() - 1000)
    smtp = status_of(migrated, "smtp")
    assert smtp["status"] == "fail"
    stale = re.fullmatch(r"not checked for (\d+) s \(workers down\?\)", smtp["detail"])
    assert stale is not None, smtp["detail"]
    assert 1000 <= int(stale[1]) < 1100  # 1000 s, or a little more on a slow machine


def test_a_schema_not_at_head_is_not_ready(app, runner):
    init_migrations(app)  # the web app never binds Flask-Migrate (service/schema.py)
    forget_migrations()
    worker_status.record_heartbeat(redis_connection(), "worker")
    worker_status.record_smtp(redis_connection(), None)
    migrations = status_of(app, "migrations")  # tables made without Alembic: no version
    assert migrations["status"] == "fail"
    assert migrations["detail"].startswith("schema at none (run `zpravodaj db upgrade`)")
    assert migrations["current"] == []

    scripts = ScriptDirectory(app.extensions["migrate"].directory)
    head = scripts.get_current_head()
    before = scripts.get_revision(head).down_revision
    stamp(revision=before)
    migrations = status_of(app, "migrations")
    assert migrations == {
        "status": "fail",
        "detail": f"schema at {before}, head is {head}",
        "current": [before],
        "head": [head],
    }
    assert "  migrations  FAIL  schema at" in runner.invoke(args=["status"]).output
    stamp()
    assert ready(app).status_code == 200
    forget_migrations()


@pytest.mark.parametrize("kind", ["postgresql", "through-a-file"])
def test_the_database_down_is_not_ready_and_says_so(build_app, redis_url, tmp_path, kind):  # noqa: F811
    app = build_app(database_down_url(kind, tmp_path), redis_url)
    response = ready(app)
    assert response.status_code == 503
    checks = response.json["checks"]
    assert checks["database"] == {"status": "fail", "detail": "down: OperationalError"}
    assert checks["migrations"] == {"status": "fail", "detail": "database unreachable"}


def test_redis_down_is_not_ready_and_says_so(build_app, tmp_path):  # noqa: F811
    app = build_app(
        f"sqlite:///{tmp_path / 'zpravodaj.sqlite3'}", f"redis://127.0.0.1:{nobody_listens()}/0"
    )
    response = ready(app)
    assert response.status_code == 503
    checks = response.json["checks"]
    assert checks["redis"] == {"status": "fail", "detail": "down: ConnectionError"}
    assert checks["workers"] == checks["smtp"] == {"status": "fail", "detail": "Redis unreachable"}
    result = app.test_cli_runner().invoke(args=["status"])
    assert result.exit_code == 1
    assert "  redis       FAIL  down: ConnectionError" in result.output
