"""Security headers on every page the app serves, found by walking its URL map.

Each GET route is opened with realistic arguments (valid signed links, an
existing list, an issue in the archive, a signed-in admin for /admin), over
http and over https, and every answer must carry the same protections: a CSP
that forbids framing (the embeddable form allows exactly the website's
origins), nosniff, a Referrer-Policy, and HSTS only over https.
"""

from __future__ import annotations

import pytest
from flask import url_for
from sqlalchemy import select

from service import create_app
from service.accounts import create_token
from service.extensions import db
from service.models import ConsentEvent
from tests.conftest import log_in, make_config, process_signups
from tests.security.conftest import get_rules, is_admin_page

EMBED_ORIGIN = "https://www.socialnibydleni.example"


def frame_ancestors(response) -> str:
    policy = response.headers.get("Content-Security-Policy")
    assert policy, f"no CSP on {response.request.path}"
    directives = {}
    for part in policy.split(";"):
        name, _, value = part.strip().partition(" ")
        directives[name] = value
    assert "frame-ancestors" in directives, policy
    return directives["frame-ancestors"].strip()


def check_headers(
    response, *, https: bool, embeddable: bool = False, framed_by_self: bool = False
) -> None:
    path = response.request.path
    ancestors = frame_ancestors(response)
    if framed_by_self:
        assert ancestors == "'self'", path
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "script-src" not in policy, path
    elif embeddable:
        assert ancestors.split() == ["'self'", EMBED_ORIGIN], path
        assert "X-Frame-Options" not in response.headers, path
    else:
        assert ancestors == "'none'", path
    assert response.headers.get("X-Content-Type-Options") == "nosniff", path
    assert response.headers.get("Referrer-Policy"), path
    if https:
        assert response.headers.get("Strict-Transport-Security", "").startswith("max-age="), path
    else:
        assert "Strict-Transport-Security" not in response.headers, path


def get_urls(app, world, accounts) -> list[tuple[str, str, bool]]:
    """(endpoint, URL, behind sign-in) of every GET route, with arguments from the world."""
    urls = []
    with app.test_request_context():
        for rule in get_rules(app, "GET"):
            values = world.values_for(rule.endpoint, set(rule.arguments))
            if "user_id" in values:
                values["user_id"] = accounts.editor.id
            values.update(QUERY.get(rule.endpoint, {}))
            urls.append((rule.endpoint, url_for(rule.endpoint, **values), is_admin_page(rule)))
    return urls


# Query arguments a page needs to be its normal self.
QUERY = {
    "admin.issue_new": {"list": "zpravodaj"},
    "admin.subscribers_export": {"list": "zpravodaj"},
    "subscriptions.subscribe_page": {"list": "novinky"},
    "subscriptions.subscribe_embed": {"list": "novinky"},
}
# Routes whose normal answer is not 200 (a redirect to the form).
REDIRECTS = {"index"}
# Readiness answers 503 here: no worker runs beside this test, and it says so.
NOT_READY = {"health.readyz"}
# The issue preview's HTML part is framed by the admin's own preview page (and runs nothing).
FRAMED_BY_SELF = {"admin.issue_preview_html"}


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_every_get_route_carries_the_security_headers(app, world, accounts, scheme):
    public = app.test_client()
    admin = app.test_client()
    log_in(admin, "admin@socialnibydleni.example")
    bearer = {"Authorization": f"Bearer {create_token(accounts.editor)}"}
    db.session.commit()
    base_url = f"{scheme}://localhost"  # the host the admin's session cookie is for
    statuses = {}
    for endpoint, url, signed_in in get_urls(app, world, accounts):
        client = admin if signed_in else public
        headers = bearer if endpoint.startswith("api.") else {}
        response = client.get(url, base_url=base_url, headers=headers)
        statuses[endpoint] = response.status_code
        expected = 302 if endpoint in REDIRECTS else 503 if endpoint in NOT_READY else 200
        assert response.status_code == expected, (url, response)
        check_headers(
            response,
            https=scheme == "https",
            embeddable=endpoint == "subscriptions.subscribe_embed",
            framed_by_self=endpoint in FRAMED_BY_SELF,
        )
    # The walk really covered the app: public pages, signed links, archive, admin, API.
    assert len(statuses) >= 35
    assert {"groups.member_page", "archive.feed", "admin.issue", "api.openapi_document"} <= set(
        statuses
    )


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/neexistuje", 404),
        ("PUT", "/subscribe", 405),
        ("GET", "/unsubscribe/padelek", 400),
        ("GET", "/api/v1/lists", 401),
        ("GET", "/api/v1/issues/999", 401),
        ("GET", "/archive/neexistuje/feed.xml", 404),
        ("GET", "/admin/", 302),
    ],
)
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_error_answers_carry_the_security_headers_too(client, method, path, status, scheme):
    response = client.open(path, method=method, base_url=f"{scheme}://zpravodaj.test")
    assert response.status_code == status
    check_headers(response, https=scheme == "https")


def test_json_api_and_atom_feed_are_nosniff_and_not_frameable(client, world):
    for path, mimetype in [
        ("/api/v1/openapi.json", "application/json"),
        ("/api/v1/lists", "application/json"),  # 401, still JSON
        ("/archive/zpravodaj/feed.xml", "application/atom+xml"),
        (f"/meetings/{world.meeting.uid}.ics", "text/calendar"),
        (f"/preferences/{world.token_for('subscriptions.preferences_export')}/export", None),
    ]:
        response = client.get(path)
        if mimetype:
            assert response.mimetype == mimetype, path
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
        assert frame_ancestors(response) == "'none'", path


def test_embedded_form_post_stays_frameable_for_the_website_only(client):
    response = client.post(
        "/subscribe", data={"email": "x", "form": "embed"}, base_url="https://zpravodaj.test"
    )
    assert response.status_code == 422
    check_headers(response, https=True, embeddable=True)
    plain = client.post("/subscribe", data={"email": "x"})
    check_headers(plain, https=False)


def test_signed_link_pages_send_no_referrer_and_are_not_cached(client, world):
    for endpoint in ("subscriptions.confirm", "subscriptions.preferences", "groups.invitation"):
        with client.application.test_request_context():
            path = url_for(endpoint, token=world.token_for(endpoint))
        response = client.get(path)
        assert response.status_code == 200
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["Cache-Control"] == "no-store"


# --- https: cookies and HSTS -------------------------------------------------------


@pytest.mark.parametrize("app_config", ["https"], indirect=True)
def test_admin_cookies_are_secure_http_only_and_same_site_behind_https(app, accounts):
    client = app.test_client()
    response = log_in(client, "admin@socialnibydleni.example")
    assert response.status_code == 302
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert cookies
    for cookie in cookies:
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert {"secure", "httponly", "samesite"} <= attributes, cookie
        assert "SameSite=Lax" in cookie


@pytest.mark.parametrize("app_config", ["https"], indirect=True)
def test_remember_cookie_would_be_secure_http_only_and_same_site(app, accounts):
    """No view sets "remember me" today; if one ever does, its cookie is as safe."""
    from flask_login import login_user

    from service.models import User

    user_id = accounts.admin.id

    @app.get("/_test/remember")
    def _remember():
        login_user(db.session.get(User, user_id), remember=True)
        return "ok"

    response = app.test_client().get("/_test/remember", base_url="https://zpravodaj.test")
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("remember_"))
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"secure", "httponly", "samesite"} <= attributes, cookie


@pytest.fixture
def app_config(app_config, request):
    """`https`: BASE_URL on https; `proxy`: one trusted proxy in front (PROXY_FIX=1)."""
    param = getattr(request, "param", None)
    if param == "https":
        return {**app_config, "BASE_URL": "https://zpravodaj.test"}
    if param == "proxy":
        return {**app_config, "PROXY_FIX": 1}
    if param == "proxy-limited":
        return {**app_config, "PROXY_FIX": 1, "RATE_LIMITS": True}
    if param == "limited":
        return {**app_config, "RATE_LIMITS": True}
    return app_config


# --- PROXY_FIX ------------------------------------------------------------------------

FORWARDED = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}


@pytest.mark.parametrize("app_config", ["proxy"], indirect=True)
def test_behind_a_trusted_proxy_the_forwarded_client_and_https_are_seen(app, client):
    response = client.post("/subscribe", json={"email": "jana@seznam.cz"}, headers=FORWARDED)
    assert response.status_code == 202
    process_signups()
    assert db.session.scalar(select(ConsentEvent.ip)) == "203.0.113.7"
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_without_proxy_fix_forwarded_headers_are_ignored(app, client):
    response = client.post("/subscribe", json={"email": "jana@seznam.cz"}, headers=FORWARDED)
    assert response.status_code == 202
    process_signups()
    assert db.session.scalar(select(ConsentEvent.ip)) == "127.0.0.1"
    assert "Strict-Transport-Security" not in response.headers


def _sign_ups_from(client, forwarded_for: list[str]) -> list[int]:
    statuses = []
    for n, ip in enumerate(forwarded_for):
        response = client.post(
            "/subscribe",
            json={"email": f"ctenar{n}@seznam.cz"},
            headers={"X-Forwarded-For": ip},
        )
        statuses.append(response.status_code)
    return statuses


@pytest.mark.parametrize("app_config", ["proxy-limited"], indirect=True)
def test_rate_limit_counts_the_forwarded_client_behind_a_trusted_proxy(app, client):
    app.config["RATE_LIMIT_SUBSCRIBE_IP"] = "2 per minute"
    ips = ["198.51.100.1", "198.51.100.1", "198.51.100.1", "198.51.100.2", "198.51.100.3"]
    assert _sign_ups_from(client, ips) == [202, 202, 429, 202, 202]


@pytest.mark.parametrize("app_config", ["limited"], indirect=True)
def test_rate_limit_ignores_forged_forwarded_headers_without_proxy_fix(app, client):
    app.config["RATE_LIMIT_SUBSCRIBE_IP"] = "2 per minute"
    ips = ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
    assert _sign_ups_from(client, ips) == [202, 202, 429]


def test_proxy_fix_trusts_only_as_many_hops_as_configured(database_url, redis_url, outbox):
    """With one proxy, the client cannot forge an address by prepending its own."""
    app = create_app(make_config(database_url, redis_url, outbox.url, PROXY_FIX=1))

    @app.get("/_test/remote")
    def _remote():
        from flask import request

        return request.remote_addr or ""

    response = app.test_client().get(
        "/_test/remote", headers={"X-Forwarded-For": "10.0.0.66, 203.0.113.7"}
    )
    assert response.get_data(as_text=True) == "203.0.113.7"


@pytest.mark.parametrize(
    "existing",
    [None, "", "Origin", "origin, Accept-Language", "Cookie,Origin", "*", '"x, y", Origin'],
)
@pytest.mark.parametrize("names", [("Origin",), ("Accept-Language", "Cookie"), ("cookie",)])
def test_vary_on_writes_what_werkzeugs_vary_update_writes(existing, names):
    """service.headers.vary_on, used by the hooks instead of `response.vary.update`."""
    from flask import Response

    from service.headers import add_missing, vary_on

    ours, theirs = Response(), Response()
    if existing is not None:
        ours.headers["Vary"] = theirs.headers["Vary"] = existing
    vary_on(ours, names)
    theirs.vary.update(names)
    assert ours.headers.getlist("Vary") == theirs.headers.getlist("Vary")

    defaults = [("X-Frame-Options", "DENY"), ("vary", "Other"), ("X-Frame-Options", "SAMEORIGIN")]
    add_missing(ours.headers, defaults)
    for name, value in defaults:
        theirs.headers.setdefault(name, value)
    assert ours.headers.to_wsgi_list() == theirs.headers.to_wsgi_list()
