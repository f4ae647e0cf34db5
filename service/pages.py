"""Cross-cutting page concerns: template filters, security headers, proxy awareness."""

from __future__ import annotations

from flask import Flask, jsonify, redirect, request, url_for
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from werkzeug.middleware.proxy_fix import ProxyFix

from .czech import group_genitive, plural
from .errors import embedded_form_post, error_page, wants_json
from .i18n import current_language
from .lookalikes import address_filter

# An admin form posted without its CSRF token, with a wrong one, or from a lost session.
CSRF_MESSAGE = _l("Platnost formuláře vypršela. Načtěte stránku znovu a odešlete ho ještě jednou.")


def init_app(app: Flask) -> None:
    if app.config["PROXY_FIX"]:
        # Behind N reverse proxies: trust their X-Forwarded-* so rate limits
        # and consent records see the real client.
        hops = app.config["PROXY_FIX"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    app.jinja_env.filters["plural"] = plural
    # Czech declines the group's name inside a sentence; English says it as it is.
    app.jinja_env.filters["group_genitive"] = lambda name: (
        group_genitive(name) if current_language() == "cs" else name
    )
    # Every address the admin shows goes through it (look-alike domains in ASCII).
    app.jinja_env.filters["address"] = address_filter
    app.jinja_env.globals["site_name"] = _l("Sociální bydlení v ČR")

    @app.get("/")
    def index():
        return redirect(url_for("subscriptions.subscribe_page"))

    @app.errorhandler(CSRFError)
    def _csrf_refused(error: CSRFError):
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
