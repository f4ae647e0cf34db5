"""What guards every HTTP request and response: proxy headers, CSRF refusals, security headers.

The template filters and the home URL are in `site.py`.
"""

from __future__ import annotations

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from werkzeug.middleware.proxy_fix import ProxyFix

from .errors import embedded_form_post, error_page, wants_json
from .headers import add_missing
from .request_values import bound

# An admin form posted without its CSRF token, with a wrong one, or from a lost session.
CSRF_MESSAGE = _l("Platnost formuláře vypršela. Načtěte stránku znovu a odešlete ho ještě jednou.")


def init_app(app: Flask) -> None:
    """Trust the configured proxies, translate CSRF refusals, add security headers."""
    if app.config["PROXY_FIX"]:
        # Behind N reverse proxies: trust their X-Forwarded-* so rate limits
        # and consent records see the real client.
        hops = app.config["PROXY_FIX"]
        # (Flask's documented way to wrap the app in WSGI middleware, which its
        # type hints, seeing a method, do not allow.)
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops
        )

    @app.errorhandler(CSRFError)
    def _csrf_refused(error: CSRFError) -> ResponseReturnValue:
        if wants_json():
            return jsonify(errors={"request": CSRF_MESSAGE}, codes={"request": "csrf_expired"}), 400
        return error_page(400, str(CSRF_MESSAGE)), 400

    @app.after_request
    def _security_headers(response):
        current = bound(request)  # read once, not through the proxy each time
        endpoint = current.endpoint
        embeddable = endpoint == "subscriptions.subscribe_embed" or (
            endpoint == "subscriptions.subscribe" and embedded_form_post()
        )
        if embeddable:
            ancestors = " ".join(["'self'", *app.config["EMBED_ORIGINS"]])
            defaults = [("Content-Security-Policy", CSP_START + ancestors)]
        else:
            defaults = [("X-Frame-Options", "DENY"), ("Content-Security-Policy", CSP_NOT_FRAMED)]
        defaults.append(("X-Content-Type-Options", "nosniff"))
        # Links carrying a token must not leak it to other sites through Referer.
        view_args = current.view_args
        if view_args and "token" in view_args:
            add_missing(response.headers, defaults)
            response.headers["Referrer-Policy"] = "no-referrer"
            response.headers["Cache-Control"] = "no-store"
            defaults = []
        else:
            defaults.append(("Referrer-Policy", "strict-origin-when-cross-origin"))
        if current.is_secure:
            defaults.append(("Strict-Transport-Security", "max-age=31536000"))
        add_missing(response.headers, defaults)
        return response


CSP_START = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
CSP_START += "frame-ancestors "
CSP_NOT_FRAMED = CSP_START + "'none'"
