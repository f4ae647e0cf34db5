"""Refuse request text no person can type: NUL characters, lone surrogates, broken UTF-8.

PostgreSQL cannot store NUL in text, and a lone surrogate cannot be encoded
at all; both would otherwise surface deep inside a view as a 500 (a NUL in a
path segment reached a query: `GET /meetings/%00.ics`). Checked once, as the
first hook of every request and before any view, extension hook or query, for
every part a request can carry into the service: the path (and the values the
URL map read from it), the query string, form fields and file names, the JSON
body, header values (User-Agent and Origin are stored with consent) and
cookies (whose quoted values may spell a NUL as an octal escape).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_to_bytes

from flask import Flask, Request, abort, request

from .request_values import bound

_UNUSABLE = re.compile(r"[\x00\ud800-\udfff]")
# No path of this service holds a control character; such a path is an attack or a typo.
_UNUSABLE_IN_PATH = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def _has_unusable_text(value: Any, depth: int = 0) -> bool:
    if depth > 50:
        return True  # deeper than any form of ours: refuse rather than recurse
    if isinstance(value, str):
        return bool(_UNUSABLE.search(value))
    if isinstance(value, list | tuple):
        return any(_has_unusable_text(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return any(
            _has_unusable_text(key, depth + 1) or _has_unusable_text(item, depth + 1)
            for key, item in value.items()
        )
    return False


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _unusable_url(current: Request) -> bool:
    """A path or query string that is not clean UTF-8 text.

    Werkzeug decodes both with errors="replace", so broken UTF-8 would reach
    the views as U+FFFD; the raw bytes are checked instead.
    """
    environ = current.environ
    # PATH_INFO holds the percent-decoded bytes of the path as latin-1 (PEP 3333).
    raw_path = environ.get("PATH_INFO", "").encode("latin-1", "replace")
    if not _is_utf8(raw_path) or _UNUSABLE_IN_PATH.search(current.path):
        return True
    raw_query = environ.get("QUERY_STRING", "").encode("latin-1", "replace")
    if not _is_utf8(unquote_to_bytes(raw_query.replace(b"+", b" "))):
        return True
    return _has_unusable_text(list((current.view_args or {}).values()))


def unusable_request() -> bool:
    """Whether any part of the request holds text the service must not process."""
    current = bound(request)  # read once, not through the proxy for each part
    if _unusable_url(current):
        return True
    texts = [value for _, value in current.args.items(multi=True)]
    texts += _header_values(current.environ)
    cookies = current.cookies
    texts += cookies.keys()
    texts += [value for _, value in cookies.items(multi=True)]
    if current.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        texts += [value for _, value in current.form.items(multi=True)]
        texts += [upload.filename or "" for upload in current.files.values()]
    # One search over all of them: the pattern matches single characters, so joining
    # the texts finds exactly what searching each would (issue 14: a search and a few
    # calls per value were an eighth of a sign-up's instructions).
    if _UNUSABLE.search("\n".join(texts)):
        return True
    if current.is_json:
        try:
            return _has_unusable_text(current.get_json(silent=True))
        except RecursionError:
            return True  # absurdly nested JSON
    return False


# What Werkzeug's `request.headers` holds, read from the WSGI environ directly: the
# values of the HTTP_* keys (except these two, which it ignores), and CONTENT_TYPE and
# CONTENT_LENGTH when not empty.
_NOT_HEADERS = frozenset({"HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"})
_BODY_HEADERS = frozenset({"CONTENT_TYPE", "CONTENT_LENGTH"})


def _header_values(environ: dict[str, Any]) -> list[str]:
    return [
        value
        for key, value in environ.items()
        if (key.startswith("HTTP_") and key not in _NOT_HEADERS) or (key in _BODY_HEADERS and value)
    ]


def init_app(app: Flask) -> None:
    """Refuse (400) a request carrying unusable text.

    `create_app` registers this before the rate limiter's hook (only the
    API's answer for unknown /api/v1 paths, which reads nothing, and the
    upload size limit come first), so the rate limiter, the sign-in check and
    every view only ever see usable text.
    """

    @app.before_request
    def _refuse_unusable_text() -> None:
        if unusable_request():
            abort(400)
