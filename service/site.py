"""What every page shares: the Jinja filters and globals, `/` (the sign-up form), and
pages that are the same for every request rendered once."""

from __future__ import annotations

from flask import Flask, current_app, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l

from .czech import group_in_sentence, names_a_group, plural
from .i18n import current_language
from .links import external_url
from .lookalikes import address_filter
from .request_values import bound
from .stored_messages import shown

# More keys than a page could ever have (two languages, one path each): a bound, not a size.
_CONSTANT_PAGES_MAX = 64


def init_app(app: Flask) -> None:
    """Register the template filters and globals and the home URL on `app`."""
    init_templates(app)

    @app.get("/")
    def index():
        return redirect(url_for("subscriptions.subscribe_page"))


def init_templates(app: Flask) -> None:
    """The template filters and globals, of pages and of mails (the worker's app too)."""
    app.jinja_env.filters["plural"] = plural
    # Czech declines the group's name inside a sentence; English says it as it is.
    app.jinja_env.filters["group_genitive"] = group_in_sentence
    app.jinja_env.filters["names_a_group"] = names_a_group
    # Every address the admin shows goes through it (look-alike domains in ASCII).
    app.jinja_env.filters["address"] = address_filter
    # A message stored in Czech (an import's skipped line) in the reader's language.
    app.jinja_env.filters["translated"] = shown
    app.jinja_env.globals["site_name"] = _l("Sociální bydlení v ČR")
    # Absolute on BASE_URL, so that mails built by workers link the privacy notice.
    app.jinja_env.globals["privacy_url"] = lambda: external_url("privacy.notice")


def render_constant_page(template: str) -> str:
    """`render_template(template)` for a page whose text depends on nothing but the
    language and the path it answers (no form values, no account, no token): rendered once
    per process for each of those and then answered as the same text (issue 14: rendering
    the sign-up's "check your mailbox" page was a sixth of the request's CPU).

    Not while Flask reloads edited templates (development), where a cached page would
    hide the edit.
    """
    app = bound(current_app)  # each read through the proxy looks the app up again
    if app.jinja_env.auto_reload:
        return render_template(template)
    current = bound(request)
    key = (template, current_language(), current.script_root, current.path)
    pages: dict[tuple[str, str, str, str], str] = app.extensions.setdefault(
        "zpravodaj_constant_pages", {}
    )
    page = pages.get(key)
    if page is None:
        if len(pages) >= _CONSTANT_PAGES_MAX:
            pages.clear()
        page = pages[key] = render_template(template)
    return page
