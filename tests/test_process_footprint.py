"""What the web and worker processes load: no Alembic, no scrypt at import, none of the
libraries only some commands or some issues need (issue 14).

Each check runs in a fresh interpreter, since the test process itself has
imported everything long ago. No figure of memory is asserted (it depends on
the machine); what is asserted is which modules are loaded, so a heavy import
added at start-up fails here, and bench/worker_memory.py says what it weighs.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

from service.paths import PROJECT_ROOT

# What gunicorn (wsgi.py) and `zpravodaj worker` (service.cli, workers.app_worker) import.
PROBE = """
import json, sys
from wsgi import app
import service.cli, workers.app_worker, workers.signup
import service.accounts
print(json.dumps({
    "migration_modules": sorted(
        m for m in sys.modules if m.split(".")[0] in ("alembic", "flask_migrate")
    ),
    "dummy_hashes_made": service.accounts._dummy_hash.cache_info().currsize,
    "on_use_libraries": sorted(
        ({m.split(".")[0] for m in sys.modules} | set(sys.modules)) & set(sys.argv[1:])
    ),
}))
"""
# Imported where they are used (DKIM signing, the doctor's DNS, the bounce receiver,
# the IMAP poller, the dev mail catcher, meeting calendars, Markdown rendering, the
# look-alike badge): each process that never does those things saves their memory.
ON_USE_LIBRARIES = (
    "aiosmtpd", "confusable_homoglyphs", "css_inline", "dateutil", "dkim", "dns", "flufl",
    "icalendar", "imapclient", "markdown_it", "nh3",
    # Flask-Limiter's `limiter` command (a `flask.commands` plug-in) and the rich it draws:
    # loaded only when `zpravodaj limiter` runs, not for `zpravodaj worker`.
    "rich",
    # The archive's Atom feed.
    "xml",
)  # fmt: skip
# The service's own modules that only one page or command needs; the dev outbox (whose
# index is an SQLite file: sqlite3 and libsqlite3 in every process on PostgreSQL) only
# in development, where DEV_OUTBOX_DIR is set.
ON_USE_MODULES = (
    "flask_limiter.commands", "service.api.openapi", "babel.messages.pofile",
    "service.dev.outbox", "service.dev.outbox_index",
)  # fmt: skip
# What only the web app's pages use, which a worker's app (`create_worker_app`) never
# loads (issue 14: about 7 MB of a worker's 89 on PostgreSQL).
WEB_ONLY_LIBRARIES = ("flask_limiter", "limits", "flask_login", "flask_wtf", "wtforms")
WEB_ONLY_MODULES = (
    "service.web_extensions", "service.commands", "service.admin", "service.api",
    "service.http_guards", "service.input_guard", "service.privacy", "service.health",
    "service.subscriptions.routes", "service.groups.routes", "service.archive.routes",
    "service.meetings.routes", "flask.testing",
)  # fmt: skip

# A `zpravodaj` command as an operator or a service runs it, with the modules it loaded
# written down when it exits (for `worker --burst`: start-up, registration, one round of
# periodic work).
CLI_PROBE = """
import atexit, json, sys
out = sys.argv[1]
def write():
    with open(out, "w") as file:
        json.dump(sorted(sys.modules), file)
atexit.register(write)
sys.argv = ["zpravodaj", *sys.argv[2:]]
from service.cli import main
main()
"""


def service_env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE", "REDIS", "SMTP"))}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'probe.sqlite3'}",
        REDIS_URL="redis://127.0.0.1:9/0",  # never connected to by these commands
        SMTP_URL="smtp://127.0.0.1:9",
        SECRET_KEY="probe",
        INSTANCE_PATH=str(tmp_path),
    )
    return env


def test_web_and_worker_processes_import_no_alembic_and_hash_no_password(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *ON_USE_LIBRARIES, *ON_USE_MODULES],
        env=service_env(tmp_path),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == {"migration_modules": [], "dummy_hashes_made": 0, "on_use_libraries": []}


def test_a_started_worker_loads_no_heavy_module_it_does_not_use(app, tmp_path):
    """The real start-up of a worker: the CLI finding `worker`, the app, RQ's registration
    and a round of periodic work; then none of what only other commands or pages need."""
    env = service_env(tmp_path)
    env.update(
        DATABASE_URL=app.config["DATABASE_URL"],
        REDIS_URL=app.config["REDIS_URL"],
    )
    out = tmp_path / "modules.json"
    result = subprocess.run(
        [sys.executable, "-c", CLI_PROBE, str(out), "worker", "--burst"],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    modules = set(json.loads(out.read_text()))
    assert {"workers.cli", "workers.app_worker", "rq.worker"} <= modules  # it did start
    top_level = {name.split(".")[0] for name in modules}
    assert top_level & {"alembic", "flask_migrate", *ON_USE_LIBRARIES} == set()
    assert modules & set(ON_USE_MODULES) == set()
    # Only its own database's SQLAlchemy dialect (models.partial_index says how the other
    # one came in: ~2.5 MB of PostgreSQL dialect in every process on SQLite).
    other = "sqlite" if app.config["DATABASE_URL"].startswith("postgres") else "postgresql"
    assert f"sqlalchemy.dialects.{other}" not in modules
    # The worker's app has the web app's URL map as data (service/url_rules.py), not its
    # pages: no view, form, rate limiter, admin sign-in or CLI command of the web app.
    assert top_level & set(WEB_ONLY_LIBRARIES) == set()
    assert {m for m in modules if m.startswith(WEB_ONLY_MODULES)} == set()
    if app.config["DATABASE_URL"].startswith("sqlite"):
        # psycopg and the libraries its wheel bundles (workers/pg_claims.py imports it)
        assert "workers.delivery" in modules
        assert "psycopg" not in top_level


def cli_modules(tmp_path, *command: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    out = tmp_path / "modules.json"
    result = subprocess.run(
        [sys.executable, "-c", CLI_PROBE, str(out), *command], env=service_env(tmp_path),
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return result, set(json.loads(out.read_text()))


def test_the_apps_commands_load_no_plug_in_commands(tmp_path):
    """`subscribers export` and the like are the app's: Flask-Limiter's `limiter` plug-in
    (with rich, 3.9 MB) is loaded only for a name the app does not have."""
    assert subprocess.run(
        [sys.executable, "-m", "service", "db", "upgrade"], env=service_env(tmp_path),
        cwd=PROJECT_ROOT, capture_output=True, timeout=120,
    ).returncode == 0  # fmt: skip
    result, modules = cli_modules(tmp_path, "lists", "show")
    assert result.returncode == 0, result.stderr
    assert "service.commands" in modules  # it ran the app's command
    assert {"rich", "flask_limiter.commands"} & modules == set()
    # The plug-in is still there when asked for, and runs in the web app, whose rate
    # limiter it reads (the app's commands have an app without one).
    result, modules = cli_modules(tmp_path, "limiter", "--help")
    assert result.returncode == 0 and "Usage:" in result.stdout, result.stderr
    assert "flask_limiter.commands" in modules
    result, modules = cli_modules(tmp_path, "limiter", "config")
    assert result.returncode == 0, result.stderr
    assert "'zpravodaj-limits'" in result.stdout and "No Flask-Limiter" not in result.stdout


# The web's pages, which the commands' app (`create_command_app`) never loads.
WEB_PAGE_MODULES = tuple(
    name for name in WEB_ONLY_MODULES if name not in ("service.commands", "service.health")
)


def test_the_apps_commands_run_without_the_web_pages_the_workers_or_rq(tmp_path):
    """An export or `lists show` runs in the commands' app, which has no page, and does
    not load the workers' `worker` command nor Redis's client and RQ, which it never
    uses: issue 14's 80 MB for an export of a million subscribers."""
    env = service_env(tmp_path)
    for command in (["db", "upgrade"], ["lists", "create", "zpravodaj", "--name", "Zpravodaj"]):
        done = subprocess.run(
            [sys.executable, "-m", "service", *command], env=env, cwd=PROJECT_ROOT,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    for command in (["lists", "show"], ["subscribers", "export", "--list", "zpravodaj"]):
        result, modules = cli_modules(tmp_path, *command)
        assert result.returncode == 0, result.stderr
        assert "service.commands" in modules  # it ran the app's command
        top_level = {name.split(".")[0] for name in modules}
        assert top_level & {*WEB_ONLY_LIBRARIES, "workers", "redis", "rq"} == set(), command
        assert {m for m in modules if m.startswith(WEB_PAGE_MODULES)} == set(), command
    assert result.stdout.splitlines() == [
        "email,name,status,subscribed_at,confirmed_at,unsubscribed_at"
    ]
    # `worker` is still listed and found when asked for.
    result, modules = cli_modules(tmp_path, "--help")
    assert result.returncode == 0 and "  worker " in result.stdout, result.stderr
    result, modules = cli_modules(tmp_path, "worker", "--help")
    assert result.returncode == 0 and "--burst" in result.stdout, result.stderr
    assert "workers.cli" in modules


def test_db_upgrade_still_migrates(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "service", "db", "upgrade"],
        env=service_env(tmp_path),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(tmp_path / "probe.sqlite3") as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"alembic_version", "signup_request", "subscriber"} <= tables
