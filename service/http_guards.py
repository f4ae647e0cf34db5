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
        embeddable = request.endpoint == "subscriptions.subscribe_embed" or (
            request.endpoint == "subscriptions.subscribe" and embedded_form_post()
        )
        if embeddable:
            ancestors = " ".join(["'self'", *app.config["EMBED_ORIGINS"]])
        else:
            ancestors = "'none'"
            response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; "
            f"object-src 'none'; base-uri 'none'; frame-ancestors {ancestors}",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        # Links carrying a token must not leak it to other sites through Referer.
        if request.view_args and "token" in request.view_args:
            response.headers["Referrer-Policy"] = "no-referrer"
            response.headers["Cache-Control"] = "no-store"
        else:
            response.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
        if request.is_secure:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response
