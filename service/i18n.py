"""Czech and English: which language a request speaks, and the gettext catalogues.

Czech is the source of truth for wording: every message is written in Czech in
the code and the templates (the gettext msgid), `service/translations/en` holds
the English translations and `service/translations/cs` only Czech's three
plural forms (CLDR: 1 zpráva, 2–4 zprávy, 5+ zpráv), which a Czech msgid with a
single plural cannot carry. Flask-Babel picks the catalogue per request, Babel
formats dates and numbers from CLDR.

The language of a request (DESIGN.md §5.4): `?lang=cs|en`, then the person's
stored choice (a subscriber's `language` on their personal pages, else the
`lang` cookie a `?lang=` leaves behind), then `Accept-Language`, then Czech.
The JSON API reads and sets no cookie: each call says its language itself.
Mails take the recipient's stored language (`mail_language`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from babel import Locale
from flask import (
    Flask,
    Request,
    Response,
    current_app,
    g,
    has_app_context,
    has_request_context,
    request,
)
from flask_babel import Babel, force_locale, get_locale, refresh
from markupsafe import Markup

from .headers import vary_on
from .paths import PACKAGE_ROOT
from .request_values import bound, first

LANGUAGES = ("cs", "en")
DEFAULT_LANGUAGE = "cs"
TRANSLATIONS_DIR = PACKAGE_ROOT / "translations"
DOMAIN = "messages"
# The visitor's choice made with ?lang=, kept for the pages that follow.
LANGUAGE_COOKIE = "lang"
LANGUAGE_COOKIE_MAX_AGE = 365 * 24 * 3600
# What the language choice is called in each language (for the switcher and forms).
LANGUAGE_NAMES = {"cs": "Čeština", "en": "English"}

babel = Babel()

# One Locale per language, shared by every request and mail: Flask-Babel parsed the
# selector's answer into a new one each time, and `current_language` then built its
# identifier again on every call (three per sign-up; issue 14, bench/README.md, eighth
# round). A Locale is never changed once made.
_LOCALES = {language: Locale.parse(language) for language in LANGUAGES}


def valid_language(value: object) -> str | None:
    """`value` when it names a language of the service ("cs", "en"), else None."""
    if isinstance(value, str) and value.strip().lower() in LANGUAGES:
        return value.strip().lower()
    return None


def requested_language() -> str | None:
    """The language named by ?lang= (or the form field `lang`), if any and valid."""
    current = bound(request)
    named = valid_language(first(current.args, "lang"))
    if named is None and current.method == "POST" and current.mimetype in _FORM_TYPES:
        # Reading the form may fail (too large, malformed): the error page still needs a language.
        try:
            named = valid_language(first(current.form, "lang"))
        except Exception:
            named = None
    return named


# Only the plain forms (the sign-up form carries `lang`): a multipart upload is
# left for its own view to read, under its own size limit.
_FORM_TYPES = frozenset({"application/x-www-form-urlencoded"})


def select_language() -> str:
    """The language of this request (Flask-Babel's locale selector)."""
    if not has_request_context():
        return getattr(g, "person_language", None) or DEFAULT_LANGUAGE
    current = bound(request)
    return (
        requested_language()
        or vars(bound(g)).get("person_language")
        or (None if _in_api(current) else valid_language(first(current.cookies, LANGUAGE_COOKIE)))
        or current.accept_languages.best_match(LANGUAGES)
        or DEFAULT_LANGUAGE
    )


def _in_api(current: Request) -> bool:
    """Whether the request is for the JSON API, whose clients keep no cookies (its answer
    follows ?lang= and Accept-Language alone)."""
    return current.path.startswith("/api/")


def use_person_language(language: str | None) -> None:
    """A view that knows whose page it shows: their stored language unless ?lang= says otherwise."""
    stored = valid_language(language)
    if stored is not None:
        g.person_language = stored
        refresh()  # Flask-Babel caches the locale of a request once asked


def current_language() -> str:
    """ "cs" or "en": the language pages and mails of this context are rendered in."""
    # The locale Flask-Babel keeps for this context once chosen, read without its
    # look-ups of `g` through the proxy (seven per call; a sign-up asks three times).
    kept = vars(bound(g)).get("_flask_babel") if has_app_context() else None
    locale = getattr(kept, "babel_locale", None) or get_locale()
    for language, shared in _LOCALES.items():
        if locale is shared:
            return language
    return str(locale or DEFAULT_LANGUAGE)


def _selected_locale() -> Locale | str:
    """Flask-Babel's locale selector: the shared Locale of `select_language`'s answer."""
    language = select_language()
    return _LOCALES.get(language) or language


def content_lang(content_language: str = DEFAULT_LANGUAGE) -> Markup:
    """` lang="cs"` on an element holding content written in Czech (an issue) when the page
    around it speaks another language; nothing on a Czech page."""
    if current_language() == content_language:
        return Markup("")
    return Markup(' lang="{}"').format(content_language)


def mail_language(language: str | None) -> str:
    """The language a mail to someone with this stored language is written in."""
    return valid_language(language) or DEFAULT_LANGUAGE


@contextmanager
def in_language(language: str | None) -> Iterator[None]:
    """Render (templates, gettext, dates) in `language` inside the block; Czech when unknown."""
    with force_locale(_LOCALES[mail_language(language)]):
        yield


def _choose_afresh(endpoint: str | None, values: dict | None) -> None:
    """Each request chooses its language anew.

    Flask-Babel keeps the choice on `g`, which belongs to the app context; a
    request inside an app context that is already pushed (a test, a CLI
    command calling the app) shares it with the requests before it.
    """
    request_globals = vars(bound(g))
    # A request of its own (under gunicorn, always) starts with a fresh `g`: nothing to forget.
    if "person_language" in request_globals or "_flask_babel" in request_globals:
        request_globals.pop("person_language", None)
        refresh()


def _remember_choice(response: Response) -> Response:
    """A ?lang= choice is remembered in a cookie, so the next pages keep the language."""
    current = bound(request)
    in_api = _in_api(current)
    named = valid_language(first(current.args, "lang"))
    if named is not None and first(current.cookies, LANGUAGE_COOKIE) != named and not in_api:
        response.set_cookie(
            LANGUAGE_COOKIE,
            named,
            max_age=LANGUAGE_COOKIE_MAX_AGE,
            secure=current_app.config["SESSION_COOKIE_SECURE"],
            httponly=True,
            samesite="Lax",
        )
    # The same URL answers in another language by these.
    vary_on(response, ("Accept-Language",) if in_api else ("Accept-Language", "Cookie"))
    return response


def compile_catalogues(folder: Path = TRANSLATIONS_DIR) -> list[Path]:
    """Compile every stale `<lang>/LC_MESSAGES/messages.po` under `folder` to its `.mo`.

    A checkout compiles them (bootstrap, the tests, `create_app`), the wheel's
    build hook too; the `.mo` files are not kept in git. Each is written to a
    temporary file and renamed, so processes compiling at once never read half
    a file. Returns the catalogues written.
    """
    written = []
    for po_path in sorted(folder.glob(f"*/LC_MESSAGES/{DOMAIN}.po")):
        mo_path = po_path.with_suffix(".mo")
        if mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
            continue
        # Here: Babel's catalogue tools are needed only when one is stale, which in a
        # web or worker process (issue 14: their memory) is almost never.
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        with po_path.open("rb") as po_file:
            catalog = read_po(po_file, locale=po_path.parent.parent.name)
        handle, temporary = tempfile.mkstemp(dir=mo_path.parent, suffix=".mo.tmp")
        try:
            with os.fdopen(handle, "wb") as mo_file:
                write_mo(mo_file, catalog, use_fuzzy=False)
            os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide it from the service's user
            os.replace(temporary, mo_path)
        except BaseException:
            os.unlink(temporary)
            raise
        written.append(mo_path)
    return written


def init_app(app: Flask) -> None:
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LANGUAGE)
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", app.config.get("TIMEZONE", "Europe/Prague"))
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(TRANSLATIONS_DIR)
    if os.access(TRANSLATIONS_DIR, os.W_OK):
        # A checkout (or an editable install): catalogues edited since the last
        # compile are compiled now, so a page never shows a stale translation.
        compile_catalogues()
    babel.init_app(app, locale_selector=_selected_locale)
    # A URL value preprocessor runs first in every request, routed or not.
    app.url_value_preprocessor(_choose_afresh)
    app.after_request(_remember_choice)
    app.jinja_env.globals["current_language"] = current_language
    app.jinja_env.globals["content_lang"] = content_lang
    app.jinja_env.globals["LANGUAGE_NAMES"] = LANGUAGE_NAMES
