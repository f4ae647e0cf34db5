"""Refuse request text no person can type: NUL characters and lone surrogates.

PostgreSQL cannot store NUL in text, and a lone surrogate cannot be encoded
at all; both would otherwise surface deep inside a view as a 500. Checked
once, before any view, for the query string, form fields and JSON body.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Flask, abort, request

_UNUSABLE = re.compile(r"[\x00\ud800-\udfff]")


def _has_unusable_text(value: Any, depth: int = 0) -> bool:
    if depth > 50:
        return True  # deeper than any form of ours: refuse rather than recurse
    if isinstance(value, str):
        return bool(_UNUSABLE.search(value))
    if isinstance(value, list):
        return any(_has_unusable_text(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return any(
            _has_unusable_text(key, depth + 1) or _has_unusable_text(item, depth + 1)
            for key, item in value.items()
        )
    return False


def init_app(app: Flask) -> None:
    @app.before_request
    def _refuse_unusable_text() -> None:
        values: list[Any] = list(request.args.listvalues())
        if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            values += list(request.form.listvalues())
        if request.is_json:
            try:
                values.append(request.get_json(silent=True))
            except RecursionError:
                abort(400)  # absurdly nested JSON
        if _has_unusable_text(values):
            abort(400)
