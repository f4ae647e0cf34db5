"""What every page shares: the Jinja filters and globals, and `/` (the sign-up form)."""

from __future__ import annotations

from flask import Flask, redirect, url_for
from flask_babel import lazy_gettext as _l

from .czech import group_in_sentence, plural
from .lookalikes import address_filter
from .stored_messages import shown


def init_app(app: Flask) -> None:
    """Register the template filters and globals and the home URL on `app`."""
    app.jinja_env.filters["plural"] = plural
    # Czech declines the group's name inside a sentence; English says it as it is.
    app.jinja_env.filters["group_genitive"] = group_in_sentence
    # Every address the admin shows goes through it (look-alike domains in ASCII).
    app.jinja_env.filters["address"] = address_filter
    # A message stored in Czech (an import's skipped line) in the reader's language.
    app.jinja_env.filters["translated"] = shown
    app.jinja_env.globals["site_name"] = _l("Sociální bydlení v ČR")

    @app.get("/")
    def index():
        return redirect(url_for("subscriptions.subscribe_page"))
