"""The command line's language: Czech or English, chosen from the environment.

`ZPRAVODAJ_LANGUAGE` (`cs` or `en`) when set; else the locale the shell
speaks for messages (the first of `LC_ALL`, `LC_MESSAGES`, `LANG` that is
set) when it is a Czech or an English one (`cs_CZ.UTF-8`, `en_GB.UTF-8`…);
else Czech, as for the rest of the service (`C.UTF-8`, `de_DE.UTF-8`…).

Inside an app context the CLI forces Flask-Babel's locale to it
(`speak_in`, called by cli.py as a command's app is pushed), so the texts
the commands share with the web (account and import errors, group fields)
follow it too. The commands' own texts go through `gettext` and
`lazy_gettext` here, which also work before any app exists: the help of
every command without settings, `zpravodaj dev`, `zpravodaj dkim keygen`.
Click's own words ("Usage:", "Options:", its parsing errors) stay English.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

import click
import flask_babel
from babel.support import NullTranslations, Translations
from flask import has_app_context
from flask_babel import force_locale
from flask_babel.speaklater import LazyString

from .i18n import DEFAULT_LANGUAGE, DOMAIN, LANGUAGES, TRANSLATIONS_DIR, compile_catalogues

LANGUAGE_VARIABLE = "ZPRAVODAJ_LANGUAGE"
# POSIX: LC_ALL overrides LC_MESSAGES, which overrides LANG.
LOCALE_VARIABLES = ("LC_ALL", "LC_MESSAGES", "LANG")


def language_of_locale(value: str) -> str | None:
    """ "cs" or "en" for a language or locale name (`en`, `cs_CZ.UTF-8`, `en-GB`), else None."""
    code = value.strip().split(".", 1)[0].split("@", 1)[0].replace("-", "_").split("_", 1)[0]
    return code.lower() if code.lower() in LANGUAGES else None


def cli_language(environ: Mapping[str, str] | None = None) -> str:
    """The language the command line speaks in this environment (see the module's docstring)."""
    environ = os.environ if environ is None else environ
    chosen = environ.get(LANGUAGE_VARIABLE, "").strip()
    if chosen:
        return language_of_locale(chosen) or DEFAULT_LANGUAGE
    for name in LOCALE_VARIABLES:
        value = environ.get(name, "").strip()
        if value:
            return language_of_locale(value) or DEFAULT_LANGUAGE
    return DEFAULT_LANGUAGE


@functools.cache
def _catalogue(language: str) -> NullTranslations:
    """The compiled catalogue of `language`, read without an app (a checkout compiles it first)."""
    if os.access(TRANSLATIONS_DIR, os.W_OK):
        compile_catalogues()
    return Translations.load(str(TRANSLATIONS_DIR), [language], DOMAIN)


def gettext(message: str, **variables: Any) -> str:
    """`message` (Czech, the msgid) in the CLI's language, `%(name)s` filled from `variables`.

    In an app context, Flask-Babel's (whose locale the CLI forces); before an
    app exists, the catalogue of the environment's language.
    """
    if has_app_context():
        return flask_babel.gettext(message, **variables)
    text = _catalogue(cli_language()).gettext(message)
    return text % variables if variables else text


def ngettext(singular: str, plural: str, num: int, **variables: Any) -> str:
    """The plural form for `num` (Czech has three, in the cs catalogue); `%(num)d` is `num`."""
    if has_app_context():
        return flask_babel.ngettext(singular, plural, num, **variables)
    variables.setdefault("num", num)
    return _catalogue(cli_language()).ngettext(singular, plural, num) % variables


def lazy_gettext(message: str, **variables: Any) -> LazyString:
    """`gettext` when shown: for help texts, which are defined at import."""
    return LazyString(gettext, message, **variables)


def speak_in(ctx: click.Context) -> None:
    """Force the current app context's locale to the CLI's language until `ctx` closes."""
    if has_app_context():
        ctx.with_resource(force_locale(cli_language()))


class Option(click.Option):
    """An option whose help is translated when shown (click cleans a help text up as the
    option is made, at import, which would fix a lazy text in the default language)."""

    def __init__(self, *args: Any, help: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._help = help

    @property
    def help(self) -> str | None:
        return None if self._help is None else str(self._help)

    @help.setter
    def help(self, value: str | None) -> None:
        self._help = value


def option(*param_decls: str, **attrs: Any) -> Any:
    """`click.option` with a help text translated when shown (pass `lazy_gettext(…)`)."""
    return click.option(*param_decls, cls=Option, **attrs)
