"""Zpravodaj: the mailing-list and newsletter service of the social-housing programme."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, cast

from flask import Flask, Request, Response
from flask.ctx import RequestContext
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

from .headers import vary_on
from .paths import PROJECT_ROOT, instance_path, resource_dir
from .request_values import first

__all__ = ["PROJECT_ROOT", "__version__", "create_app", "create_command_app", "create_worker_app"]

try:
    # The installed distribution's version (pyproject.toml): `zpravodaj --version`, /readyz.
    __version__ = version("zpravodaj")
except PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0+unknown"


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app from the environment; `test_config` overrides it (tests, dev command)."""
    # The app's parts are imported here, not at the top: every `import service.x`
    # (a worker, a migration, the CLI before it needs an app) runs this package
    # first, and must not load every blueprint of the web app with it.
    from . import commands, errors, health, http_guards, input_guard, jobs, metrics, privacy, site
    from .admin import auth as admin_auth
    from .api import errors as api_errors
    from .issues import attachments
    from .web_extensions import limiter

    app = _app_with_settings(test_config)
    # Request hooks run in the order they are registered; these three come first.
    api_errors.init_app(app)  # unknown /api/v1 paths: the API's 404/405, before anything else
    attachments.init_app(app)  # uploads: their own size limit, before the guard reads the form
    input_guard.init_app(app)  # only usable text reaches the rate limiter and the views
    limiter.init_app(app)
    jobs.init_app(app)
    errors.init_app(app)
    http_guards.init_app(app)
    site.init_app(app)
    admin_auth.init_app(app)
    _register_blueprints(app)
    health.init_app(app)
    metrics.init_app(app)
    app.register_blueprint(privacy.bp)
    commands.init_app(app)
    return app


def create_worker_app(test_config: dict[str, Any] | None = None) -> Flask:
    """The app `zpravodaj worker` runs its jobs in: the web app's settings, database,
    Redis, languages, template filters and URL map (mails link to its pages), without
    its pages.

    Its URL rules come from `url_rules.RULES` (a test keeps them the web app's), so a
    worker imports no view, form, rate limiter, admin sign-in or CLI command: about
    13 MB less in every worker and work horse (issue 14, bench/README.md).
    """
    from . import jobs

    app = _app_without_pages(test_config)
    jobs.init_app(app)
    return app


def create_command_app(test_config: dict[str, Any] | None = None) -> Flask:
    """The app the `zpravodaj` commands of the app (lists, subscribers, users…) run in:
    the worker's app with those commands, connecting to Redis when one first needs it.

    A command reads and writes the database, queues jobs and builds the mails' links,
    as a worker does, and serves no page: without the web's views, forms, rate limiter
    and admin sign-in, and without Redis's client and RQ until a command queues a job,
    `zpravodaj subscribers export` of a million subscribers stays under 80 MB (issue 14,
    bench/README.md). `run`, `routes` and `shell` keep the web app (service/cli.py).
    """
    from . import commands

    app = _app_without_pages(test_config)
    commands.init_app(app)
    return app


def _app_without_pages(test_config: dict[str, Any] | None) -> Flask:
    """The worker's and the commands' app: the settings, the mails' templates, the event
    metrics and the URL map (build-only), without the web's pages."""
    from . import metrics, site, url_rules

    app = _app_with_settings(test_config)
    site.init_templates(app)
    metrics.configure(app)
    url_rules.add_to(app)
    return app


class CookieSession(SecureCookieSessionInterface):
    """Flask's signed-cookie session, which builds its signer only for a request that
    carries a session cookie or an answer that sets one.

    Flask made the signing serializer (itsdangerous, which serialises an empty dict to
    learn what it produces) when opening every request's session, and read seven cookie
    settings when saving it, before it found there was no cookie to read or write: about
    a tenth of a sign-up's instructions (issue 14, bench/README.md, seventh round). The
    answers are the same: an empty new session, `Vary: Cookie` when it was looked at.
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.secret_key and not first(request.cookies, self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not session and not session.modified:  # nothing to write or delete
            if session.accessed:
                vary_on(response, ("Cookie",))
            return
        super().save_session(app, session, response)


def _limit_from_app(attribute: str, key: str) -> Any:
    """A size limit of `AppRequest`: the one set on the request, else the app's `key`
    setting, else (no app known) Flask's own answer."""
    flasks = cast(property, getattr(Request, attribute)).fget
    assert flasks is not None  # Flask's limits are read-write properties
    own = "_" + attribute

    def read(self: AppRequest) -> int | None:
        set_here = getattr(self, own)
        if set_here is not None or self.app_config is None:
            return cast(int | None, flasks(self))
        return cast(int | None, self.app_config[key])

    def write(self: AppRequest, value: int | None) -> None:
        setattr(self, own, value)

    return property(read, write)


class AppRequest(Request):
    """Flask's request, reading its size limits from the configuration of the app it was
    made for (`App.request_context`). Flask's read `current_app` through its proxy twice
    on each read of a limit, and parsing a form reads them eight times (issue 14,
    bench/README.md, thirteenth round). A limit set on the request (a view allowing a
    larger upload) still wins, as in Flask. A request read after its context ended keeps
    its app's limits (Flask's fell back to Werkzeug's defaults there)."""

    app_config: Mapping[str, Any] | None = None

    max_content_length = _limit_from_app("max_content_length", "MAX_CONTENT_LENGTH")
    max_form_memory_size = _limit_from_app("max_form_memory_size", "MAX_FORM_MEMORY_SIZE")
    max_form_parts = _limit_from_app("max_form_parts", "MAX_FORM_PARTS")


class App(Flask):
    """Flask, remembering which of the app's functions are coroutines.

    Flask calls `ensure_sync` for every hook, view and teardown of every request (about
    20 for a sign-up), and each call asked `inspect.iscoroutinefunction`, which unwraps
    methods and partials: about a tenth of a sign-up's instructions (issue 14,
    bench/README.md, seventh round). A function stays what it is, so the answer is
    kept per function (the app's functions are a fixed set; bound methods of one object
    and function are equal, so each is kept once).
    """

    session_interface = CookieSession()
    request_class = AppRequest

    def request_context(self, environ: WSGIEnvironment) -> RequestContext:
        context = super().request_context(environ)
        cast(AppRequest, context.request).app_config = self.config
        return context

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync_functions: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        try:
            return self._sync_functions[func]
        except KeyError:
            synchronous = self._sync_functions[func] = super().ensure_sync(func)
            return synchronous
        except TypeError:  # an unhashable callable: asked every time, as Flask does
            return super().ensure_sync(func)


def _app_with_settings(test_config: dict[str, Any] | None) -> Flask:
    """The part the web app and the worker's share: settings, logging, languages, database."""
    from . import database, i18n, logging_setup
    from .config import check_required, load_config

    app = App(
        __name__,
        instance_path=str(instance_path()),
        template_folder=str(resource_dir("templates")),
        static_folder=str(resource_dir("static")),
    )
    app.config.update(load_config(os.environ, app.instance_path))
    if test_config:
        app.config.update(test_config)
    check_required(app.config)
    os.makedirs(app.instance_path, exist_ok=True)
    _derive_extension_config(app)
    logging_setup.init_app(app)
    i18n.init_app(app)
    database.init_app(app)
    return app


def _register_blueprints(app: Flask) -> None:
    """The app's pages and the API, each flow's blueprint from its `routes.py`
    (the dev outbox only in development)."""
    # Imported here for the reason given in create_app: importing `service`
    # must not load the web app's blueprints.
    from .admin.routes import bp as admin_bp
    from .api.routes import bp as api_bp
    from .archive.routes import bp as archive_bp
    from .groups.routes import bp as groups_bp
    from .meetings.routes import bp as meetings_bp
    from .meetings.routes import rsvp_bp
    from .subscriptions.routes import bp as subscriptions_bp

    app.register_blueprint(subscriptions_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(archive_bp)
    app.register_blueprint(groups_bp)
    app.register_blueprint(meetings_bp)
    app.register_blueprint(rsvp_bp)
    app.register_blueprint(api_bp)
    if app.config.get("DEV_OUTBOX_DIR"):
        # Only then imported: its index is an SQLite file, and importing it loads
        # sqlite3 and libsqlite3 (~1 MB) into every process, on PostgreSQL too.
        from .dev.outbox import bp as outbox_bp

        app.register_blueprint(outbox_bp)


def _derive_extension_config(app: Flask) -> None:
    """Translate the service's settings into what Flask's extensions read."""
    config = app.config
    url = config["DATABASE_URL"]
    # psycopg 3 is the PostgreSQL driver; accept the plain URLs operators write.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix) :]
    config["SQLALCHEMY_DATABASE_URI"] = url
    # A pooled connection is tested before use (a `SELECT 1`), so one a restarted
    # PostgreSQL dropped is replaced instead of failing a request. An SQLite connection
    # is an open file that nothing drops: no test, one statement less per request.
    config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"pool_pre_ping": not url.startswith("sqlite")})
    # No form of this service needs more; larger bodies get a Czech 413. (Attachment
    # uploads raise it for their own requests: service/issues/attachments.py.)
    if config.get("MAX_CONTENT_LENGTH") is None:
        config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    config["RATELIMIT_ENABLED"] = config["RATE_LIMITS"]
    # The rate limiter's storage (the `limits` library) names a Redis socket redis+unix://.
    redis_url = config["REDIS_URL"]
    if redis_url.startswith("unix://"):
        redis_url = "redis+" + redis_url
    config["RATELIMIT_STORAGE_URI"] = redis_url
    config["RATELIMIT_STORAGE_OPTIONS"] = {"socket_connect_timeout": 2, "socket_timeout": 2}
    config["RATELIMIT_KEY_PREFIX"] = "zpravodaj-limits"
    config["RATELIMIT_HEADERS_ENABLED"] = True
    # A Redis outage must not stop sign-ups: the database is the source of truth.
    config["RATELIMIT_SWALLOW_ERRORS"] = True
    config["RATELIMIT_IN_MEMORY_FALLBACK_ENABLED"] = True
    config["PREFERRED_URL_SCHEME"] = "https" if config["BASE_URL"].startswith("https") else "http"
    config["SESSION_COOKIE_SECURE"] = config["PREFERRED_URL_SCHEME"] == "https"
    config["SESSION_COOKIE_HTTPONLY"] = True
    config["SESSION_COOKIE_SAMESITE"] = "Lax"
    config["REMEMBER_COOKIE_SECURE"] = config["SESSION_COOKIE_SECURE"]
    config["REMEMBER_COOKIE_HTTPONLY"] = True
    config["REMEMBER_COOKIE_SAMESITE"] = "Lax"
    # CSRF is checked by the admin blueprint itself (see service/admin/auth.py).
    config["WTF_CSRF_CHECK_DEFAULT"] = False
    config["WTF_CSRF_TIME_LIMIT"] = None  # tied to the session instead of an hour
    # WTForms' own translations (Czech among them), not Flask-Babel's.
    config["WTF_I18N_ENABLED"] = False
    # Admin sessions end after this long without a request (Flask's default is
    # 31 days). Flask checks it from the cookie's signed timestamp, which
    # every request renews: see service/admin/auth.py.
    config["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=config["ADMIN_SESSION_HOURS"])
