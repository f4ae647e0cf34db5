"""Fixtures for the browser tests: the app on a real HTTP server, a second
"website" server on another origin, and Debian's Chromium driven by Playwright.

The browser is started once per session (it takes about a second); every test
gets a fresh browser context, so no cookies or cache leak between tests.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html import escape

import pytest
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from tests.conftest import PASSWORD, missing_part

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# How long a wait on a page's state may last before the test fails. The state
# usually arrives in milliseconds; on a loaded CI machine Chromium alone can
# stall for seconds, and a deadline is not what these tests measure.
TIMEOUT_MS = 30_000


def chromium_path() -> str | None:
    """CHROMIUM_PATH, else chromium on PATH, else Debian's /usr/bin/chromium."""
    candidates = [os.environ.get("CHROMIUM_PATH"), shutil.which("chromium"), "/usr/bin/chromium"]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


@dataclass
class LiveServer:
    """A WSGI app served on 127.0.0.1 from a background thread."""

    server: BaseWSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return self.server.server_port

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve(wsgi_app: Callable) -> LiveServer:
    """Serve `wsgi_app` on a free port of 127.0.0.1 until stop()."""
    server = make_server("127.0.0.1", 0, wsgi_app, threaded=True)
    thread = threading.Thread(
        # A short poll interval so that stop() (shutdown) returns at once.
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name=f"live-server-{server.server_port}",
        daemon=True,
    )
    thread.start()
    return LiveServer(server, thread)


@dataclass
class AppServer:
    live: LiveServer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.live.port}"


@pytest.fixture
def live_server(app) -> Iterator[AppServer]:
    """The app (with its database, Redis and SMTP sink) on http://127.0.0.1:<port>."""
    live = serve(app)
    server = AppServer(live)
    app.config["BASE_URL"] = server.url
    yield server
    live.stop()


@dataclass
class Website:
    """The programme's website: another origin, whose page frames the sign-up form."""

    live: LiveServer

    @property
    def origin(self) -> str:
        # localhost vs the app's 127.0.0.1: another host, so another origin and another site.
        return f"http://localhost:{self.live.port}"

    @property
    def url(self) -> str:
        return self.origin + "/"


def website_page(embed_url: str) -> str:
    return f"""<!doctype html>
<html lang="cs">
<head><meta charset="utf-8"><title>Sociální bydlení v ČR</title></head>
<body>
<h1>Sociální bydlení v ČR</h1>
<p>Odebírejte náš zpravodaj:</p>
<iframe src="{escape(embed_url)}" title="Přihlášení k odběru" width="640" height="900"></iframe>
</body>
</html>
"""


@pytest.fixture
def website(live_server: AppServer) -> Iterator[Website]:
    """A page on http://localhost:<other port>/ embedding <app>/embed/subscribe in an iframe."""
    html = website_page(f"{live_server.url}/embed/subscribe")

    @Request.application
    def site(request: Request) -> Response:
        if request.path != "/":
            return Response("Nenalezeno", status=404)
        return Response(html, content_type="text/html; charset=utf-8")

    live = serve(site)
    yield Website(live)
    live.stop()


@pytest.fixture(scope="session")
def browser():
    path = chromium_path()
    if path is None:
        missing_part(
            "no Chromium found (set CHROMIUM_PATH, or install Debian's chromium package); "
            "Playwright's own browsers are not used"
        )
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)

    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()


@pytest.fixture
def page(browser):
    """A fresh page in a fresh browser context (no shared cookies or cache)."""
    context = browser.new_context(locale="cs-CZ")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()


def sign_in(page, base_url: str, email: str, lang: str | None = None) -> None:
    """Through the admin's sign-in form, as a person does (in `lang` when given, which the
    pages after it remember), and on to the dashboard."""
    page.goto(f"{base_url}/admin/login" + (f"?lang={lang}" if lang else ""))
    page.locator("input[name=email]").fill(email)
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("form button[type=submit]").click()
    page.wait_for_url(re.compile(r".*/admin/$"))
