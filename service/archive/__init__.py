"""The public archive of sent newsletter issues and its Atom feed (DESIGN.md §5.4)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("archive", __name__, url_prefix="/archive")

from . import routes  # noqa: E402,F401
